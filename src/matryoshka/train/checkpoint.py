"""Crash-safe checkpoints: model weights in safetensors, a JSON manifest, and the optimiser state for resuming.

Layout of a run folder::

    run/
      config.json            the experiment config, data shape and the final model's checksum
      model.safetensors      final weights (written when training ends)
      backbone/config.json   for an hf: backbone, its transformers config (rebuilt without the original folder)
      metrics.jsonl          one line per validated epoch
      checkpoints/
        latest               name of the newest complete checkpoint (replaced atomically)
        epoch-0003/          model.safetensors, trainer_state.pt, manifest.json

Every file is written to a temporary name, fsynced and renamed, and a checkpoint folder is renamed into
place only when complete, so a process killed at any moment leaves the previous checkpoint loadable.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from matryoshka.io import (
    DIR_MODE,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_with,
    fsync_dir,
    fsync_file,
    sha256_file,
)
from matryoshka.runs.image_model import CheckpointError, load_model, load_weights, missing_model_message

__all__ = [
    "CheckpointError",
    "latest_checkpoint",
    "load_checkpoint",
    "load_model",
    "load_weights",
    "missing_model_message",
    "restore_training",
    "save_checkpoint",
    "save_model",
    "save_training",
]


def _state_dict_cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}


def _save_weights(model: torch.nn.Module, path: Path) -> str:
    atomic_write_with(path, lambda tmp: save_file(_state_dict_cpu(model), tmp))
    return sha256_file(path)


def save_checkpoint(
    run_dir: Path,
    epoch: int,
    model: torch.nn.Module,
    trainer_state: dict[str, Any],
    keep: int = 2,
    unit: str = "epoch",
) -> Path:
    """Write ``checkpoints/<unit>-NNNNNNN`` whole, then point ``checkpoints/latest`` at it; keep the newest ``keep``.

    ``epoch`` is the epoch number, or the step number with ``unit="step"``.
    """
    ckpt_root = run_dir / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    name = f"{unit}-{epoch:04d}" if unit == "epoch" else f"{unit}-{epoch:08d}"
    tmp = Path(tempfile.mkdtemp(dir=ckpt_root, prefix=f".{name}."))
    try:
        os.chmod(tmp, DIR_MODE)
        digest = _save_weights(model, tmp / "model.safetensors")
        buf = tmp / "trainer_state.pt"
        torch.save(trainer_state, buf)
        fsync_file(buf)
        atomic_write_json(
            tmp / "manifest.json", {"epoch": epoch, "model_sha256": digest, "trainer_state_sha256": sha256_file(buf)}
        )
        final = ckpt_root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(ckpt_root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_bytes(ckpt_root / "latest", name.encode())
    old = sorted(p for p in ckpt_root.glob(f"{unit}-*") if p.is_dir())[:-keep]
    for p in old:
        shutil.rmtree(p, ignore_errors=True)
    for p in ckpt_root.glob(f".{unit}-*"):  # leftovers of a killed save
        shutil.rmtree(p, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder of a run, or None when it has none."""
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    path = run_dir / "checkpoints" / pointer.read_text().strip()
    if not (path / "manifest.json").exists():
        raise CheckpointError(f"{pointer} names {path.name}, which is missing or incomplete")
    return path


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and trainer state of a checkpoint folder, both verified against the manifest."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read the manifest of checkpoint {path}: {e}") from e
    weights = load_weights(path / "model.safetensors", manifest["model_sha256"])
    state_path = path / "trainer_state.pt"
    if not state_path.exists() or sha256_file(state_path) != manifest["trainer_state_sha256"]:
        raise CheckpointError(f"{state_path} is missing or does not match its recorded checksum")
    state = torch.load(state_path, map_location="cpu", weights_only=False)
    return weights, state


def save_training(
    run_dir: Path,
    number: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    device: torch.device,
    config: dict[str, Any],
    history: list[dict[str, Any]],
    keep: int = 2,
    unit: str = "epoch",
    **extra: Any,
) -> Path:
    """Checkpoint a training run (weights, optimizer, scheduler, RNGs, config, history and ``extra`` under the key
    ``unit``) and rewrite ``metrics.jsonl`` from the history; the counterpart of :func:`restore_training`."""
    state = {
        unit: number,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "config": config,
        "history": history,
        **extra,
    }
    path = save_checkpoint(run_dir, number, model, state, keep=keep, unit=unit)
    atomic_write_bytes(run_dir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history).encode())
    return path


def restore_training(
    run_dir: Path,
    config: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    device: torch.device,
) -> dict[str, Any] | None:
    """Load the newest checkpoint of ``run_dir`` into model, optimizer, scheduler and RNGs; returns its trainer state
    (None when there is none). Refuses a checkpoint written under another config."""
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        return None
    weights, state = load_checkpoint(ckpt)
    if state.get("config") != config:
        raise CheckpointError(
            f"{run_dir} holds a checkpoint of a different config; start over with --no-resume "
            "(mrl train) or --fresh (mrl demo), or choose another out_dir"
        )
    model.load_state_dict(weights)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng_cpu"])
    if torch.cuda.is_available() and state.get("rng_cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["rng_cuda"], device)
    return state


def save_model(run_dir: Path, model: torch.nn.Module, info: dict[str, Any]) -> None:
    """Write the final ``model.safetensors`` and ``config.json`` (with the weights' checksum)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    digest = _save_weights(model, run_dir / "model.safetensors")
    atomic_write_json(run_dir / "config.json", {**info, "model_sha256": digest})
