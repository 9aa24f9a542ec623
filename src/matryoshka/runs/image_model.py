"""A finished image run's model, read back: ``config.json`` (the experiment config, shapes, checksum) and
``model.safetensors``, checked against the recorded checksum and rebuilt without the training code.

Example::

    from matryoshka.runs.image_model import load_model
    model, info = load_model("runs/fashion_mnist_mrl")      # a MatryoshkaClassifier in eval mode, config.json
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from matryoshka.errors import MatryoshkaError
from matryoshka.io import sha256_file
from matryoshka.nn.model import MatryoshkaClassifier, build_classifier


class CheckpointError(MatryoshkaError, RuntimeError):
    """A checkpoint that is missing, truncated, corrupt, or does not fit the model."""


def load_weights(path: Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load a safetensors file, checking its checksum when one is known."""
    if not path.exists():
        raise CheckpointError(f"checkpoint weights {path} do not exist")
    if expected_sha256 is not None and sha256_file(path) != expected_sha256:
        raise CheckpointError(f"{path} does not match its recorded checksum: the file is corrupt or was replaced")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from e


def missing_model_message(run_dir: Path) -> str:
    """Why a folder holds no trained model: it does not exist, its run did not finish, or it is not a run."""
    if not run_dir.exists():
        return (
            f"no such run folder: {run_dir} (nor a text model: all-MiniLM-L6-v2, or a local SentenceTransformer or "
            "transformers folder; nothing is downloaded)"
        )
    if (run_dir / "checkpoints").is_dir():
        return (
            f"{run_dir} is an unfinished run (checkpoints, no final model): run the same `mrl train` again to resume "
            "it, or evaluate once it finishes"
        )
    return f"{run_dir} holds no trained model (no config.json, no model/ folder, no checkpoints)"


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[MatryoshkaClassifier, dict]:
    """Rebuild a trained model from a run folder (or its ``model.safetensors``); returns (model, config.json)."""
    path = Path(path)
    run_dir = path.parent if path.suffix == ".safetensors" else path
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise CheckpointError(missing_model_message(run_dir))
    try:
        info = json.loads(config_path.read_text())
        m = info["config"]["model"]
        model = build_classifier(
            m["backbone"],
            m["embed_dim"],
            m["head"],
            info["nesting"],
            tuple(info["input_shape"]),
            info["num_classes"],
            m.get("width"),
            run_dir=run_dir,
            bias=m.get("head_bias", True),  # runs saved before the option had heads with a bias
            logit_scale=m.get("logit_scale", False),  # and heads without a learned scale
        )
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{config_path} is not a valid model config: {e}") from e
    weights = load_weights(run_dir / "model.safetensors", info.get("model_sha256"))
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"weights in {run_dir} do not fit the model described by its config: {e}") from e
    return model.to(map_location).eval(), info
