"""The user's own data: image folders and tables (CSV / JSONL / Parquet), with the bad inputs a user makes."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from matryoshka.data import CorruptDataError, DataNotFoundError, ImageFileSplit, Preprocess, load_data
from matryoshka.data.images import augment_batch, decode_image
from matryoshka.errors import InputError
from matryoshka.runs import TrainedRun
from matryoshka.train import ConfigError, Trainer, load_model, parse_config

CLASSES = ("left", "right", "top")
MODES = ("RGB", "L", "RGBA", "P")


def _image(label: int, rng: np.random.Generator, size: int = 12) -> np.ndarray:
    """A noisy picture whose bright half says its class: left, right or top half."""
    a = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    half = size // 2
    region = [(slice(None), slice(0, half)), (slice(None), slice(half, None)), (slice(0, half), slice(None))][label]
    a[region] = rng.integers(190, 255, a[region].shape, dtype=np.uint8)
    return a


def make_image_folder(root, per_class=16, seed=0, splits=False):
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        for i in range(per_class):
            split = ("train", "train", "train", "val", "test")[i % 5] if splits else None
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            img = Image.fromarray(_image(label, rng)).convert(MODES[i % len(MODES)])
            img.save(folder / f"{i:03d}.{'png' if i % 3 else 'bmp'}")
    return root


def _config(tmp_path, data, **model):
    return parse_config(
        {
            "data": data,
            "model": {"backbone": "cnn", "embed_dim": 16, "width": 8, "min_dim": 4, **model},
            "optim": {"lr": 0.01},
            "train": {"epochs": 3, "batch_size": 8, "out_dir": str(tmp_path / "run")},
        }
    )


def test_image_folder_trains_and_the_run_records_its_preprocessing(tmp_path):
    folder = make_image_folder(tmp_path / "pics")
    cfg = _config(tmp_path, {"name": "imagefolder", "path": str(folder), "image_size": 12, "channels": 3})
    data = load_data(cfg.data)
    assert data.class_names == list(sorted(CLASSES)) and isinstance(data.train, ImageFileSplit)
    assert len(data.train) + len(data.val) + len(data.test) == 48 and data.input_shape == (3, 12, 12)
    result = Trainer(cfg, data=data, progress=False).fit()
    info = json.loads((result.run_dir / "config.json").read_text())
    pre = Preprocess.from_dict(info["preprocess"])
    assert pre == data.preprocess and info["class_names"] == data.class_names
    # A raw file through the stored preprocessing gives the tensor the model was trained on.
    x = pre.load_image(data.val.paths[0])
    assert torch.allclose(x, data.val.x[0])
    model, _ = load_model(result.run_dir)
    assert model.encode(x[None]).shape == (1, 16)
    assert result.val_accuracy[16] >= 0.6, result.val_accuracy


def test_image_folder_with_split_folders_uses_them(tmp_path):
    folder = make_image_folder(tmp_path / "pics", per_class=10, splits=True)
    data = load_data(_config(tmp_path, {"name": "imagefolder", "path": str(folder), "channels": 1}).data)
    assert (len(data.train), len(data.val), len(data.test)) == (18, 6, 6)
    assert data.input_shape == (1, 32, 32) and data.val.x.shape == (6, 1, 32, 32)


def test_workers_decode_the_same_batches(tmp_path):
    folder = make_image_folder(tmp_path / "pics", per_class=4)
    data = load_data(_config(tmp_path, {"name": "imagefolder", "path": str(folder), "workers": 2}).data)
    rows = torch.arange(len(data.train)).view(-1, 1)[:4]
    with_workers = torch.cat([x for x, _ in data.train.batches(rows)])
    data.train.workers = 0
    assert torch.equal(with_workers, torch.cat([x for x, _ in data.train.batches(rows)]))


def _one_class(root):
    make_image_folder(root)
    for name in CLASSES[1:]:
        shutil.rmtree(root / name)


def _with_file(name, data):
    def make(root):
        make_image_folder(root)
        (root / "left" / name).write_bytes(data)

    return make


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root.mkdir(), "holds no images"),
        (lambda root: (make_image_folder(root), (root / "empty").mkdir()), "class folder .*empty holds no images"),
        (_one_class, "only one class"),
        (_with_file("bad.png", b"\x89PNG\r\n\x1a\nxx"), "cannot read image .*bad.png"),
        (_with_file("notes.txt", b"x"), "unsupported file type .txt"),
    ],
)
def test_bad_image_folders_give_one_clear_error(tmp_path, make, message):
    root = tmp_path / "pics"
    make(root)
    with pytest.raises(CorruptDataError, match=message):
        load_data(_config(tmp_path, {"name": "imagefolder", "path": str(root)}).data)


def test_missing_folder_and_missing_path(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_data(_config(tmp_path, {"name": "imagefolder", "path": str(tmp_path / "nope")}).data)
    with pytest.raises(ConfigError, match="needs data.path"):
        _config(tmp_path, {"name": "imagefolder"})
    with pytest.raises(ConfigError, match="unknown data source 'imgfolder'"):
        _config(tmp_path, {"name": "imgfolder", "path": "x"})


def _table_rows(n=60, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 4)) + 3 * np.eye(3, 4)[labels]
    return [{"a": r[0], "b": r[1], "c": r[2], "d": r[3], "kind": CLASSES[y]} for r, y in zip(x, labels, strict=True)]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_tables_of_features_train_with_string_labels(tmp_path, fmt):
    import pandas as pd

    frame = pd.DataFrame(_table_rows(300))
    path = tmp_path / f"rows.{fmt}"
    {
        "csv": lambda: frame.to_csv(path, index=False),
        "jsonl": lambda: frame.to_json(path, orient="records", lines=True),
        "parquet": lambda: frame.to_parquet(path),
    }[fmt]()
    data_cfg = {"name": "table", "path": str(path), "label_column": "kind", "feature_columns": ["a", "b", "c", "d"]}
    cfg = _config(tmp_path, data_cfg, backbone="mlp")
    result = Trainer(cfg, progress=False).fit()
    info = json.loads((result.run_dir / "config.json").read_text())
    assert info["class_names"] == sorted(CLASSES) and info["preprocess"]["columns"] == ["a", "b", "c", "d"]
    assert info["input_shape"] == [4]
    assert result.val_accuracy[16] >= 0.6


def test_table_errors_name_the_file_and_the_column_or_row(tmp_path):
    import pandas as pd

    frame = pd.DataFrame(_table_rows(20))
    frame.loc[7, "c"] = float("nan")
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    base = {"name": "table", "path": str(path), "label_column": "kind"}
    with pytest.raises(CorruptDataError, match=r"rows.csv: row 9, column 'c': NaN"):
        load_data(_config(tmp_path, base).data)
    with pytest.raises(CorruptDataError, match="no column 'klass'"):
        load_data(_config(tmp_path, {**base, "label_column": "klass"}).data)
    (tmp_path / "rows.xlsx").write_text("x")
    with pytest.raises(CorruptDataError, match="unsupported table format"):
        load_data(_config(tmp_path, {**base, "path": str(tmp_path / "rows.xlsx")}).data)


def test_table_with_an_image_column(tmp_path):
    import pandas as pd

    folder = make_image_folder(tmp_path / "pics", per_class=6)
    rows = [{"file": str(p.relative_to(tmp_path)), "label": p.parent.name} for p in sorted(folder.rglob("*.*"))]
    pd.DataFrame(rows).to_csv(tmp_path / "images.csv", index=False)
    data_cfg = {"name": "table", "path": str(tmp_path / "images.csv"), "image_column": "file", "image_size": 8}
    data = load_data(_config(tmp_path, data_cfg).data)
    assert data.input_shape == (3, 8, 8) and len(data.train) + len(data.val) + len(data.test) == 18


def test_decode_converts_modes_and_resizes(tmp_path):
    rgba = Image.fromarray(np.full((5, 7, 4), 200, dtype=np.uint8), "RGBA")
    rgba.save(tmp_path / "a.png")
    assert decode_image(tmp_path / "a.png", 3, (4, 6)).shape == (3, 4, 6)
    assert decode_image((tmp_path / "a.png").read_bytes(), 1, (5, 7)).shape == (1, 5, 7)


def test_augmentation_keeps_shape_and_is_seeded():
    x = torch.randn(6, 3, 12, 12)
    a = augment_batch(x, torch.Generator().manual_seed(1))
    b = augment_batch(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)


def test_a_run_folder_alone_encodes_raw_images_in_a_fresh_process(tmp_path):
    """Train on a folder, delete the folder's other copies, then encode in another process from the run alone."""
    import subprocess
    import sys

    folder = make_image_folder(tmp_path / "pics", per_class=8)
    cfg = _config(tmp_path, {"name": "imagefolder", "path": str(folder), "image_size": 12})
    data = load_data(cfg.data)
    Trainer(cfg, data=data, progress=False).fit()
    run = TrainedRun.load(tmp_path / "run")
    # Raw bytes through the stored preprocessing give the embedding of the training pipeline's tensor.
    raw = run.encode_images([Path(data.test.paths[0]).read_bytes()], dim=8)[0]
    want = torch.nn.functional.normalize(run.encode_tensor(data.test.x[:1])[0, :8], dim=0).numpy()
    np.testing.assert_allclose(raw, want, atol=1e-5)
    new = shutil.copytree(folder / "left", tmp_path / "new")  # the run must not need the training folder
    shutil.rmtree(folder)
    script = (
        "import sys, numpy as np\n"
        "from matryoshka.runs import TrainedRun\n"
        "z, names = TrainedRun.load(sys.argv[1]).encode_path(sys.argv[2], dim=8)\n"
        "np.save(sys.argv[3], z)\n"
        "print('\\n'.join(names))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "run"), str(new), str(tmp_path / "z.npy")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    names = out.stdout.split()
    assert names == sorted(str(p) for p in new.iterdir())
    here, _ = run.encode_path(new, dim=8)
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), here, atol=1e-5)


def test_encoding_a_feature_table_and_the_errors(tmp_path):
    import pandas as pd

    frame = pd.DataFrame(_table_rows(120))
    frame.to_csv(tmp_path / "rows.csv", index=False)
    cfg = _config(
        tmp_path, {"name": "table", "path": str(tmp_path / "rows.csv"), "label_column": "kind"}, backbone="mlp"
    )
    Trainer(cfg, progress=False).fit()
    run = TrainedRun.load(tmp_path / "run")
    z, names = run.encode_path(tmp_path / "rows.csv", dim=4)
    assert z.shape == (120, 4) and names[:2] == ["0", "1"]
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    with pytest.raises(InputError, match="dim must be in"):
        run.encode_path(tmp_path / "rows.csv", dim=99)
    frame.drop(columns=["b"]).to_csv(tmp_path / "fewer.csv", index=False)
    with pytest.raises(CorruptDataError, match="no column 'b'"):
        run.encode_path(tmp_path / "fewer.csv")
    (tmp_path / "notes.md").write_text("x")
    with pytest.raises(CorruptDataError, match="cannot encode .md"):
        run.encode_path(tmp_path / "notes.md")


def test_served_embeddings_of_raw_images_equal_the_encoded_ones(tmp_path):
    import base64

    from fastapi.testclient import TestClient

    from matryoshka.index import MatryoshkaIndex
    from matryoshka.service import create_app

    folder = make_image_folder(tmp_path / "pics", per_class=6)
    Trainer(_config(tmp_path, {"name": "imagefolder", "path": str(folder), "image_size": 12}), progress=False).fit()
    run = TrainedRun.load(tmp_path / "run")
    z, names = run.encode_path(folder)
    for dim in (6, 8):
        index = MatryoshkaIndex(dim, [4])
        index.add(np.ascontiguousarray(z[:, :dim]))
        index.save(tmp_path / f"ix{dim}")
    # A 16-dim model on a 6-dim index (not one of its nesting dims, 4/8/16) is refused at start-up, in one line
    # naming both dims, unless asked for; on an 8-dim index it serves its 8-dim prefix.
    with pytest.raises(InputError, match=r"gives 16 dims but the index .* holds 6; 6 is not one of .* --model-prefix"):
        create_app(tmp_path / "ix6", model_path=tmp_path / "run")
    prefix = TestClient(create_app(tmp_path / "ix6", model_path=tmp_path / "run", model_prefix=True))
    assert prefix.post("/embed", json={"inputs": [[0.0] * 432]}).json()["dim"] == 6
    client = TestClient(create_app(tmp_path / "ix8", model_path=tmp_path / "run"))
    images = [base64.b64encode(Path(n).read_bytes()).decode() for n in names[:3]]
    served = client.post("/embed", json={"images": images})
    assert served.status_code == 200 and served.json()["dim"] == 8, served.text
    cut = z[:3, :8] / np.linalg.norm(z[:3, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(np.array(served.json()["embeddings"]), cut, atol=1e-5)
    full = client.post("/embed", json={"images": images, "dim": 16}).json()["embeddings"]
    np.testing.assert_allclose(np.array(full), z[:3], atol=1e-5)
    hits = client.post("/search", json={"images": images, "k": 1}).json()["ids"]
    assert [h[0] for h in hits] == [0, 1, 2]  # each image finds itself in the 8-dim index
    bad = client.post("/embed", json={"images": ["not base64!"]})
    assert bad.status_code == 422 and "base64" in bad.text
    assert client.post("/embed", json={"texts": ["hello"]}).status_code == 422


def test_decoded_cache_is_built_once_and_equals_fresh_decoding(tmp_path):
    folder = make_image_folder(tmp_path / "pics", per_class=6)
    section = {"name": "imagefolder", "path": str(folder), "image_size": 12, "cache_dir": str(tmp_path / "cache")}
    cached = load_data(_config(tmp_path, section).data)
    fresh = load_data(_config(tmp_path, {**section, "cache": False}).data)
    assert torch.equal(cached.train.x, fresh.train.x)
    files = list((tmp_path / "cache").glob("*.npy"))
    assert len(files) == 1 and not list((tmp_path / "cache").glob(".*"))  # the train split, on first use; no temp
    rows = torch.arange(len(cached.train)).view(-1, 2)
    for (a, ya), (b, yb) in zip(cached.train.batches(rows), fresh.train.batches(rows), strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)
    # A changed file changes the key: the cache is never stale.
    first, old_key = Path(cached.train.paths[0]), cached.train.cache_key()
    Image.fromarray(np.zeros((12, 12, 3), dtype=np.uint8)).save(
        first, format="PNG" if first.suffix == ".png" else "BMP"
    )
    again = load_data(_config(tmp_path, section).data)
    assert again.train.cache_key() != old_key
    assert not torch.equal(again.train.x[0], cached.train.x[0])


def test_a_data_source_from_the_users_own_module(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    cfg = _config(tmp_path, {"name": "backbone_helpers:digits_as_own_source"})
    assert load_data(cfg.data).num_classes == 10
    with pytest.raises(InputError, match="returned str, not an ImageData"):
        load_data(_config(tmp_path, {"name": "backbone_helpers:not_data"}).data)
    with pytest.raises(InputError, match="cannot import no_such_module"):
        load_data(_config(tmp_path, {"name": "no_such_module:load"}).data)


def _alpha_shape(label: int, rng: np.random.Generator, mode: str, size: int = 16) -> Image.Image:
    """A black picture whose class is drawn only in its transparency (like a symbolic icon), as RGBA, LA or a
    palette image whose colour 0 is transparent."""
    visible = np.zeros((size, size), dtype=bool)
    half = size // 2
    visible[[(slice(None), slice(0, half)), (slice(None), slice(half, None)), (slice(0, half), slice(None))][label]] = 1
    visible &= rng.random((size, size)) > 0.15
    if mode == "P":
        img = Image.fromarray(visible.astype(np.uint8), "P")
        img.putpalette([0, 0, 0] * 256)
        img.info["transparency"] = 0
        return img
    rgba = np.zeros((size, size, 4), dtype=np.uint8)
    rgba[..., 3] = visible * 255
    return Image.fromarray(rgba, "RGBA").convert(mode)


def test_alpha_only_shapes_are_composited_and_separate_their_classes(tmp_path):
    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        (tmp_path / "icons" / name).mkdir(parents=True)
        for i in range(20):
            _alpha_shape(label, rng, ("RGBA", "LA", "P")[i % 3]).save(tmp_path / "icons" / name / f"{i:03d}.png")
    for i in range(3):
        file = tmp_path / "icons" / "left" / f"{i:03d}.png"
        white = decode_image(file, 1, (16, 16))
        assert white[0, :, :8].float().mean() < 60 and white[0, :, 8:].min() == 255, file  # black shape on white
        assert decode_image(file, 1, (16, 16), background=None).max() == 0  # what dropping alpha used to give
    cfg = _config(tmp_path, {"name": "imagefolder", "path": str(tmp_path / "icons"), "image_size": 16, "channels": 1})
    data = load_data(cfg.data)
    assert data.preprocess.background == (255, 255, 255)
    result = Trainer(cfg, data=data, progress=False).fit()
    run = TrainedRun.load(result.run_dir)
    assert run.preprocess.background == (255, 255, 255)
    left, right = run.encode_images([tmp_path / "icons" / c / "000.png" for c in ("left", "right")])
    assert float(left @ right) < 0.99
    from matryoshka.evaluate.per_dim import evaluate_model

    assert evaluate_model(result.model, data)["knn1"][str(result.model.nesting[-1])] > 0.8


def test_background_mean_and_runs_saved_before_backgrounds(tmp_path):
    from matryoshka.data.images import resolve_background

    paths = []
    for i in range(3):
        a = np.zeros((8, 8, 4), dtype=np.uint8)
        a[..., 0], a[:4, :, 3] = 200, 255  # red top half, transparent bottom half
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(a, "RGBA").save(paths[-1])
    assert resolve_background("mean", paths) == (200, 0, 0)
    assert resolve_background("black") == (0, 0, 0)
    old = Preprocess.from_dict({"kind": "image", "shape": [3, 8, 8], "mean": [0, 0, 0], "std": [1, 1, 1]})
    assert old.background is None and old.decode(paths[0])[:, 6, 0].tolist() == [200, 0, 0]
    assert Preprocess.from_dict(old.to_dict()).background is None
    with pytest.raises(ConfigError, match="background"):
        parse_config({"data": {"name": "imagefolder", "path": str(tmp_path), "background": "pink"}})
