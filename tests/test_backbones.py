import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import matryoshka
from matryoshka.errors import MatryoshkaError
from matryoshka.inference import encode_and_classify
from matryoshka.nn.backbones import (
    BackboneError,
    ProjectedBackbone,
    build_backbone,
    create_backbone,
    load_init_weights,
    parse_backbone_spec,
    register_backbone,
    registered_backbones,
)
from matryoshka.nn.backbones import registry as backbone_registry
from matryoshka.nn.model import build_model
from matryoshka.train import ConfigError, Trainer, load_model, parse_config

TESTS = Path(__file__).resolve().parent
SHAPE = (1, 8, 8)  # sklearn digits


@pytest.fixture(autouse=True)
def _helpers_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))  # backbone_helpers:NAME


def _config(tmp_path, name="run", epochs=1, **model):
    return parse_config(
        {
            "data": {"name": "digits"},
            "model": {"embed_dim": 16, "head": "mrl", **model},
            "optim": {"lr": 0.003},
            "train": {"epochs": epochs, "batch_size": 64, "out_dir": str(tmp_path / name)},
        }
    )


def _tiny_vit(folder):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(
        image_size=8,
        patch_size=4,
        num_channels=1,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    ViTModel(config).save_pretrained(folder)
    return folder


# -- registry ---------------------------------------------------------------------------------------------------------


def test_registry_round_trip_and_config(monkeypatch, tmp_path):
    monkeypatch.setattr(backbone_registry.BACKBONES, "_items", dict(backbone_registry.BACKBONES._items))
    calls = []

    @register_backbone("tiny_flat")
    def tiny_flat(embed_dim, input_shape, width=None):
        calls.append((embed_dim, input_shape, width))
        return nn.Sequential(nn.Flatten(), nn.Linear(64, embed_dim))

    assert "tiny_flat" in registered_backbones()
    z = create_backbone("tiny_flat", 16, [1, 8, 8], width=3)(torch.zeros(2, *SHAPE))
    assert z.shape == (2, 16) and calls == [(16, SHAPE, 3)]
    assert parse_backbone_spec("tiny_flat").kind == "name"
    assert _config(tmp_path, backbone="tiny_flat").model.backbone == "tiny_flat"
    with pytest.raises(BackboneError, match="registered already"):
        register_backbone("tiny_flat")(lambda d, s, w: nn.Identity())
    register_backbone("tiny_flat", overwrite=True)(lambda d, s, w: nn.Identity())
    with pytest.raises(BackboneError, match="no ':'"):
        register_backbone("a:b")


def test_unknown_backbones_name_the_registered_ones(tmp_path):
    with pytest.raises(
        BackboneError, match=r"unknown backbone 'resnet9000' \(did you mean resnet\?\); registered: cnn, mlp, resnet,"
    ):
        create_backbone("resnet9000", 16, SHAPE)
    assert issubclass(BackboneError, MatryoshkaError) and issubclass(BackboneError, ValueError)
    with pytest.raises(ConfigError, match=r"model.backbone: .*unknown backbone 'resnet9000'.*cnn, mlp, resnet, vit"):
        _config(tmp_path, backbone="resnet9000")
    with pytest.raises(ConfigError, match="is not a registered name"):
        _config(tmp_path, backbone="my-pkg:factory")
    with pytest.raises(ConfigError, match="names nothing after hf:"):
        _config(tmp_path, backbone="hf:")
    with pytest.raises(ConfigError, match="width applies to registered backbones"):
        _config(tmp_path, backbone="timm:resnet18", width=8)
    # external specs are only checked for syntax when the config is read: the folder may be on another machine
    assert _config(tmp_path, backbone="hf:/no/such/folder").model.backbone == "hf:/no/such/folder"
    assert parse_backbone_spec("pkg.mod:make.backbone").attribute == "make.backbone"


def test_builtins_keep_their_weights_layout():
    assert build_backbone is create_backbone
    cnn = list(create_backbone("cnn", 16, SHAPE, 4).state_dict())
    assert cnn[:3] == ["features.0.0.weight", "features.0.1.weight", "features.0.1.bias"]
    assert cnn[-2:] == ["project.3.weight", "project.3.bias"] and len(cnn) == 21
    assert list(create_backbone("vit", 16, SHAPE, 4).state_dict())[:3] == ["cls", "position", "patches.weight"]
    assert list(create_backbone("mlp", 16, SHAPE, 4).state_dict())[-1] == "net.7.bias"
    assert list(create_backbone("resnet", 16, SHAPE, 4).state_dict())[-1] == "features.6.body.2.num_batches_tracked"
    assert create_backbone("mlp", 16, (20,))(torch.zeros(2, 20)).shape == (2, 16)  # tables: any input shape
    with pytest.raises(BackboneError, match="needs image inputs"):
        create_backbone("cnn", 16, (20,))


# -- external backbones -----------------------------------------------------------------------------------------------

_LOAD_AND_ENCODE = """
import sys, torch
from matryoshka.train import load_model
x = torch.load(sys.argv[1])
out = {}
for run in sys.argv[3:]:
    model, _ = load_model(run)
    with torch.no_grad():
        out[run] = model.encode(x)
torch.save(out, sys.argv[2])
"""


def test_hf_and_module_backbones_train_and_reload_in_a_fresh_process(digits, tmp_path):
    hf_dir = _tiny_vit(tmp_path / "vit")
    runs = {
        "hf": Trainer(_config(tmp_path, "hf", backbone=f"hf:{hf_dir}"), data=digits, progress=False).fit(),
        "module": Trainer(
            _config(tmp_path, "module", backbone="backbone_helpers:tiny_convnet"), data=digits, progress=False
        ).fit(),
    }
    assert isinstance(runs["hf"].model.backbone, ProjectedBackbone) and runs["hf"].model.backbone.feature_dim == 32
    assert runs["module"].model.backbone.feature_dim == 8
    assert json.loads((runs["hf"].run_dir / "backbone" / "config.json").read_text())["model_type"] == "vit"
    assert not (runs["module"].run_dir / "backbone").exists()
    x = digits.val.x[:50]
    expected = {str(r.run_dir): encode_and_classify(r.model, x, with_logits=False)[0] for r in runs.values()}
    shutil.rmtree(hf_dir)  # the run folder alone must rebuild the model

    torch.save(x, tmp_path / "x.pt")
    src = str(Path(matryoshka.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, str(TESTS), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_AND_ENCODE, str(tmp_path / "x.pt"), str(tmp_path / "z.pt"), *expected],
        env={**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "2"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = torch.load(tmp_path / "z.pt")
    for run, z in expected.items():
        assert z.shape == (50, 16)
        torch.testing.assert_close(got[run], z, atol=1e-5, rtol=1e-5)

    # a module backbone needs its module where the run is loaded
    info_path = runs["module"].run_dir / "config.json"
    info = json.loads(info_path.read_text())
    info["config"]["model"]["backbone"] = "no_such_backbone_module:tiny_convnet"
    info_path.write_text(json.dumps(info))
    with pytest.raises(BackboneError, match="cannot import module 'no_such_backbone_module'.*PYTHONPATH"):
        load_model(runs["module"].run_dir)


def test_module_factory_forms_and_errors(tmp_path, monkeypatch):
    flat = create_backbone("backbone_helpers:flat_linear", 16, SHAPE)  # called without arguments
    assert isinstance(flat, ProjectedBackbone) and flat.feature_dim == 12
    assert flat(torch.zeros(3, *SHAPE)).shape == (3, 16)
    (tmp_path / "broken_backbone.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(BackboneError, match="cannot import module 'no_such_module_here'"):
        create_backbone("no_such_module_here:factory", 16, SHAPE)
    with pytest.raises(BackboneError, match="cannot import module 'broken_backbone'.*boom at import"):
        create_backbone("broken_backbone:factory", 16, SHAPE)
    with pytest.raises(BackboneError, match="has no attribute 'missing'"):
        create_backbone("backbone_helpers:missing", 16, SHAPE)
    with pytest.raises(BackboneError, match=r"not_a_module\(\) returned a str, not an nn.Module"):
        create_backbone("backbone_helpers:not_a_module", 16, SHAPE)
    with pytest.raises(BackboneError, match="fails on inputs of shape"):
        create_backbone("backbone_helpers:flat_linear", 16, (1, 4, 4))


def test_hf_backbone_checks(tmp_path):
    hf_dir = _tiny_vit(tmp_path / "vit")
    backbone = create_backbone(f"hf:{hf_dir}", 16, SHAPE)  # the pooler_output of a ViTModel: 32 features
    assert backbone.feature_dim == 32 and backbone(torch.zeros(2, *SHAPE)).shape == (2, 16)
    with pytest.raises(BackboneError, match="takes 1-channel images .* the data has 3 channel"):
        create_backbone(f"hf:{hf_dir}", 16, (3, 8, 8))
    with pytest.raises(BackboneError, match="holds no config.json"):
        create_backbone(f"hf:{tmp_path / 'nowhere'}", 16, SHAPE)
    with pytest.raises(BackboneError, match="doesn't match model"):
        create_backbone(f"hf:{hf_dir}", 16, (1, 16, 16))


def _timm_importable():
    try:
        import timm  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.skipif(not _timm_importable(), reason="timm does not import next to this torch")
def test_timm_backbone():
    backbone = create_backbone("timm:resnet18", 16, (1, 32, 32))
    assert backbone(torch.zeros(2, 1, 32, 32)).shape == (2, 16)


def test_timm_not_importable_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    with pytest.raises(BackboneError, match="timm:resnet18: timm is not importable here"):
        create_backbone("timm:resnet18", 16, SHAPE)


# -- init_from and freeze_backbone ------------------------------------------------------------------------------------


def test_init_from_backbone_whole_model_or_feature_extractor(digits, tmp_path):
    torch.manual_seed(1)
    donor = create_backbone("cnn", 16, SHAPE, 4)
    save_file(donor.state_dict(), tmp_path / "backbone.safetensors")
    cfg = _config(tmp_path, backbone="cnn", width=4, init_from=str(tmp_path / "backbone.safetensors"))
    trainer = Trainer(cfg, data=digits, progress=False)
    trainer.build()
    torch.manual_seed(cfg.train.seed)
    plain = build_model(_config(tmp_path, backbone="cnn", width=4).model, [8, 16], SHAPE, 10)
    for key, value in donor.state_dict().items():
        assert torch.equal(trainer.model.backbone.state_dict()[key], value), key
    assert not torch.equal(plain.backbone.features[0][0].weight, donor.features[0][0].weight)

    torch.save(plain.state_dict(), tmp_path / "whole.pt")
    model = build_model(cfg.model, [8, 16], SHAPE, 10)
    assert load_init_weights(model, tmp_path / "whole.pt") == "model"
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in plain.state_dict().items())

    extractor = create_backbone("backbone_helpers:tiny_convnet", 16, SHAPE).features
    torch.save({"state_dict": extractor.state_dict()}, tmp_path / "extractor.pth")
    user = build_model(_config(tmp_path, backbone="backbone_helpers:tiny_convnet").model, [8, 16], SHAPE, 10)
    assert load_init_weights(user, tmp_path / "extractor.pth") == "feature extractor"
    assert torch.equal(user.backbone.features[0].weight, extractor[0].weight)


def test_init_from_that_does_not_fit_names_the_keys(tmp_path):
    state = create_backbone("cnn", 16, SHAPE, 4).state_dict()
    state["extra.weight"] = state.pop("project.3.weight")
    save_file(state, tmp_path / "wrong.safetensors")
    cfg = _config(tmp_path, backbone="cnn", width=4, init_from=str(tmp_path / "wrong.safetensors"))
    fits_badly = r"the backbone, has 20 of its 21 keys there; missing: project.3.weight; unexpected: extra.weight"
    with pytest.raises(BackboneError, match=fits_badly):
        build_model(cfg.model, [8, 16], SHAPE, 10)
    model = build_model(_config(tmp_path, backbone="cnn", width=4).model, [8, 16], SHAPE, 10)
    save_file(create_backbone("cnn", 16, SHAPE, 8).state_dict(), tmp_path / "wider.safetensors")
    with pytest.raises(BackboneError, match=r"shapes differ .*features.0.0.weight \(8, 1, 3, 3\) vs \(4, 1, 3, 3\)"):
        load_init_weights(model, tmp_path / "wider.safetensors")
    with pytest.raises(BackboneError, match="does not exist"):
        load_init_weights(model, tmp_path / "nothing.pt")


@pytest.mark.parametrize("backbone", ["cnn", "backbone_helpers:tiny_convnet"])
def test_freeze_backbone_trains_only_projection_and_heads(digits, tmp_path, backbone):
    cfg = _config(tmp_path, backbone=backbone, freeze_backbone=True, width=4 if backbone == "cnn" else None)
    torch.manual_seed(cfg.train.seed)
    before = {k: v.clone() for k, v in build_model(cfg.model, [8, 16], SHAPE, 10).state_dict().items()}
    result = Trainer(cfg, data=digits, progress=False).fit()
    after = result.model.state_dict()
    features = [k for k in before if k.startswith("backbone.features.")]
    assert any("running_mean" in k for k in features)  # BatchNorm statistics stay as they were too
    for key in features:
        assert torch.equal(before[key], after[key]), key
    for key in [k for k in before if k.startswith(("backbone.project.", "head.")) and k.endswith("weight")]:
        assert not torch.equal(before[key], after[key]), key
    assert not any(p.requires_grad for p in result.model.backbone.features.parameters())
    assert result.model.training and not result.model.backbone.features.training
    assert result.model.backbone.project.training


def test_data_sources_follow_the_same_registry_rules(monkeypatch):
    from matryoshka.data import register_data
    from matryoshka.data.registry import SOURCES
    from matryoshka.errors import InputError

    monkeypatch.setattr(SOURCES, "_items", dict(SOURCES._items))

    @register_data("my_scans")
    def first(cfg):
        return None

    with pytest.raises(InputError, match="registered already"):
        register_data("my_scans")(lambda cfg: None)  # used to replace it silently
    register_data("my_scans", overwrite=True)(lambda cfg: None)
    with pytest.raises(InputError, match=r"unknown data source 'my_scan' \(did you mean my_scans\?\)"):
        SOURCES.get("my_scan")
    with pytest.raises(InputError, match="no ':'"):
        register_data("a:b")
