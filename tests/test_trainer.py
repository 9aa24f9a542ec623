import copy
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from matryoshka.train import CheckpointError, Trainer, TrainingDivergedError, load_model, parse_config
from matryoshka.train.checkpoint import latest_checkpoint, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _weights(run_dir):
    model, _ = load_model(run_dir)
    return model.state_dict()


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_training_learns_digits_at_every_dim(digits, digits_config):
    result = Trainer(digits_config(epochs=4), data=digits, progress=False).fit()
    acc = result.val_accuracy
    assert list(acc) == [8, 16, 32]
    assert min(acc.values()) > 0.85, acc
    info = json.loads((result.run_dir / "config.json").read_text())
    assert info["nesting"] == [8, 16, 32] and info["world_size"] == 1
    assert len((result.run_dir / "metrics.jsonl").read_text().splitlines()) == 4


def test_reruns_are_bit_identical(digits, digits_config, tmp_path):
    a = Trainer(digits_config(out_dir=str(tmp_path / "a")), data=digits, progress=False).fit()
    b = Trainer(digits_config(out_dir=str(tmp_path / "b")), data=digits, progress=False).fit()
    _assert_same_weights(_weights(a.run_dir), _weights(b.run_dir))


def test_resume_equals_uninterrupted_run(digits, digits_config, tmp_path):
    full = Trainer(digits_config(epochs=3, out_dir=str(tmp_path / "full")), data=digits, progress=False).fit()
    part_dir = tmp_path / "part"
    Trainer(digits_config(epochs=3, out_dir=str(part_dir)), data=digits, progress=False).fit()
    # Pretend the run died after epoch 2: drop the last checkpoint and the final model.
    shutil.rmtree(part_dir / "checkpoints" / "epoch-0003")
    (part_dir / "checkpoints" / "latest").write_text("epoch-0002")
    (part_dir / "model.safetensors").unlink()
    resumed = Trainer(digits_config(epochs=3, out_dir=str(part_dir)), data=digits, progress=False).fit()
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    _assert_same_weights(_weights(full.run_dir), _weights(part_dir))


def test_resume_refuses_a_different_config(digits, digits_config):
    Trainer(digits_config(epochs=1), data=digits, progress=False).fit()
    with pytest.raises(CheckpointError, match="different config"):
        Trainer(digits_config(epochs=1, batch_size=32), data=digits, progress=False).fit()
    Trainer(digits_config(epochs=1, batch_size=32), data=digits, progress=False, resume=False).fit()


class _PoisonAtEpoch3(Trainer):
    def batches(self, epoch, start):
        if epoch == 3:
            self.train_split.x = torch.full_like(self.train_split.x, float("nan"))
        return super().batches(epoch, start)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(digits, digits_config):
    cfg = digits_config(epochs=4)
    with pytest.raises(TrainingDivergedError, match="loss became nan at epoch 3"):
        _PoisonAtEpoch3(cfg, data=copy.deepcopy(digits), progress=False).fit()
    run_dir = Path(cfg.train.out_dir)
    ckpt = latest_checkpoint(run_dir)
    assert ckpt.name == "epoch-0002"
    weights, _ = load_checkpoint(ckpt)
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())
    assert not (run_dir / "model.safetensors").exists()


def test_corrupt_and_missing_checkpoints_give_clear_errors(digits, digits_config, tmp_path):
    result = Trainer(digits_config(epochs=1), data=digits, progress=False).fit()
    with pytest.raises(CheckpointError, match="no such run folder"):
        load_model(tmp_path / "nowhere")
    weights = result.run_dir / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="checksum"):
        load_model(result.run_dir)
    ckpt = latest_checkpoint(result.run_dir)
    (ckpt / "trainer_state.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(ckpt)
    (result.run_dir / "checkpoints" / "latest").write_text("epoch-0042")
    with pytest.raises(CheckpointError, match="missing or incomplete"):
        latest_checkpoint(result.run_dir)


def test_truncated_safetensors_without_checksum(tmp_path, digits, digits_config):
    result = Trainer(digits_config(epochs=1), data=digits, progress=False).fit()
    info = json.loads((result.run_dir / "config.json").read_text())
    info.pop("model_sha256")
    (result.run_dir / "config.json").write_text(json.dumps(info))
    weights = result.run_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(result.run_dir)


def _train_command(config_path, out_dir):
    return [
        sys.executable,
        "-m",
        "matryoshka.cli",
        "train",
        "-c",
        str(config_path),
        "--out",
        str(out_dir),
        "--no-progress",
    ]


def _write_config(tmp_path, epochs, device="auto"):
    path = tmp_path / "digits.yaml"
    path.write_text(
        "data: {name: digits}\n"
        "model: {backbone: cnn, embed_dim: 32, width: 8}\n"
        "optim: {lr: 0.003}\n"
        f"train: {{epochs: {epochs}, batch_size: 16, device: {device}}}\n"
    )
    return path


def test_kill_9_mid_training_then_resume_matches_uninterrupted(tmp_path):
    config = _write_config(tmp_path, epochs=6)
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    subprocess.run(_train_command(config, ref_dir), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(
        _train_command(config, run_dir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "checkpoints" / "epoch-0002").exists():
        time.sleep(0.02)
    time.sleep(0.3)  # somewhere inside epoch 3 (or in the middle of its save)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "model.safetensors").exists(), "the run finished before it could be killed"
    ckpt = latest_checkpoint(run_dir)
    load_checkpoint(ckpt)  # the last checkpoint is intact
    done = subprocess.run(_train_command(config, run_dir), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"resuming {run_dir} after epoch" in done.stdout
    _assert_same_weights(_weights(ref_dir), _weights(run_dir))


def test_torchrun_ddp_two_cpu_processes(tmp_path):
    config = _write_config(tmp_path, epochs=2, device="cpu")
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "matryoshka.cli",
        "train",
        "-c",
        str(config),
        "--out",
        str(out),
        "--no-progress",
    ]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((out / "config.json").read_text())
    assert info["world_size"] == 2
    assert min(info["val_acc"].values()) > 0.8, info["val_acc"]


def test_loss_weights_ramp_from_equal_to_their_values(digits, digits_config, tmp_path):
    """The default schedule: c_m = 1 at the first step, the configured c_m at the last; constant keeps them."""

    class Recording(Trainer):
        def train_step(self, batch):
            loss = super().train_step(batch)
            self.seen.append(self.criterion.weights.tolist())
            return loss

    assert digits_config().model.loss_weights_schedule == "linear"
    runs = {}
    for schedule in ("linear", "quadratic", "constant"):
        cfg = digits_config(out_dir=str(tmp_path / schedule))
        cfg.model.loss_weights_schedule = schedule
        trainer = Recording(cfg, data=digits, progress=False)
        trainer.seen = []
        runs[schedule] = (trainer, trainer.fit())
    linear, constant = runs["linear"][0].seen, runs["constant"][0].seen
    assert linear[0] == [1.0, 1.0, 1.0] and linear[-1] == [2.0, 1.0, 1.0]  # small_dims on 8, 16, 32
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(linear))
    assert constant[0] == constant[-1] == [2.0, 1.0, 1.0]
    quadratic = runs["quadratic"][0].seen
    middle = len(linear) // 2
    assert quadratic[-1] == [2.0, 1.0, 1.0] and linear[middle][0] > quadratic[middle][0]  # t > t^2 before the end
    info = json.loads((runs["linear"][1].run_dir / "config.json").read_text())
    assert info["loss_weights"] == [2.0, 1.0, 1.0] and info["loss_weights_schedule"] == "linear"


def test_former_schedule_name_ramp_reads_as_quadratic():
    raw = {"data": {"name": "digits"}, "model": {"loss_weights_schedule": "ramp"}}
    assert parse_config(raw).model.loss_weights_schedule == "quadratic"


def test_heads_learn_their_logit_scale(digits, digits_config):
    """By default each head learns a temperature, saved with the run; weights with scales under a config without
    them are refused (a run saved before the option reloads with plain heads: the test below)."""
    run = Trainer(digits_config(), data=digits, progress=False).fit().run_dir
    model, info = load_model(run)
    assert info["config"]["model"]["logit_scale"] is True
    assert model.head.log_scales.abs().min() > 0  # trained: every head's scale moved from its start at 1
    info["config"]["model"].pop("logit_scale")
    (run / "config.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="do not fit the model"):  # the weights have scales, the config not
        load_model(run)


def test_heads_without_bias_decide_by_direction_and_runs_reload(digits, digits_config, tmp_path):
    """By default the classifiers have no bias, so scaling a prefix scales its logits (the decision depends on its
    direction alone); a run saved before the options existed (biased heads, no scales) reloads as it was trained."""
    for head in ("mrl", "ff"):
        cfg = digits_config(out_dir=str(tmp_path / head))
        cfg.model.head = head
        result = Trainer(cfg, data=digits, progress=False).fit()
        model, info = load_model(result.run_dir)
        assert info["config"]["model"]["head_bias"] is False
        assert not any(name.endswith("bias") for name, _ in model.head.named_parameters())
        z = model.encode(digits.test.x[:16])
        for small, large in zip(model.head(z), model.head(3 * z), strict=True):
            torch.testing.assert_close(3 * small, large)
    cfg = digits_config(out_dir=str(tmp_path / "biased"))
    cfg.model.head_bias, cfg.model.logit_scale = True, False
    biased = Trainer(cfg, data=digits, progress=False).fit().run_dir
    info = json.loads((biased / "config.json").read_text())
    del info["config"]["model"]["head_bias"], info["config"]["model"]["logit_scale"]
    (biased / "config.json").write_text(json.dumps(info))
    model, _ = load_model(biased)
    assert all(clf.bias is not None for clf in model.head.classifiers) and model.head.log_scales is None
