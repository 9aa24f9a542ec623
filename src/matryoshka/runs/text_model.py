"""A finished text run's model, read back: the SentenceTransformer folder ``model/``, or any text model by name.

A fast-path run (``model.frozen_base: true``) keeps its fitted adaptor inside ``model/`` as sentence-transformers
modules, so the folder alone gives the run's embeddings. Runs saved before that kept it beside the folder
(``adaptor.safetensors``); they load through :class:`AdaptedTextModel`, base and adaptor together.

Example::

    from matryoshka.runs.text_model import load_text_model
    model = load_text_model(Path("runs/my_pairs"))      # .encode(texts) like a SentenceTransformer
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from matryoshka.nn.text_encoder import MINILM_NAMES, load_sentence_transformer

ADAPTOR_FILE = "adaptor.safetensors"  # the adaptor of a fast-path run saved before it went into model/


class AdaptedTextModel:
    """A SentenceTransformer followed by a fitted adaptor; ``encode`` answers like the model's own ``encode``."""

    def __init__(self, base: Any, adaptor: Any) -> None:
        self.base, self.adaptor = base, adaptor

    def encode(
        self, texts: list[str], batch_size: int = 256, show_progress_bar: bool = False, **_: Any
    ) -> torch.Tensor:
        z = self.base.encode(
            texts,
            batch_size=batch_size,
            convert_to_tensor=True,
            show_progress_bar=show_progress_bar,
            normalize_embeddings=False,
        )
        return torch.from_numpy(self.adaptor.transform(z.float().cpu(), normalize=False))

    def get_embedding_dimension(self) -> int:
        return int(self.adaptor.dim_)


def model_folder(run_dir: Path) -> Path:
    """The SentenceTransformer folder of a text run (``model/``), or the folder itself when it is one."""
    return run_dir / "model" if (run_dir / "model").is_dir() else run_dir


def is_text_run(path: Path) -> bool:
    """Whether ``path`` is a text run (a SentenceTransformer folder in ``model/``, or one itself)."""
    return (path / "model" / "modules.json").exists() or (path / "modules.json").exists()


def is_text_model_name(path: Path) -> bool:
    """Whether ``path`` names a base text model rather than a run: the packaged MiniLM's names, or a transformers
    folder (a ``config.json`` with a ``model_type``; an image run's ``config.json`` has none)."""
    if not path.exists():
        return str(path).lower() in MINILM_NAMES
    config = path / "config.json"
    if not config.is_file() or is_text_run(path):
        return False
    try:
        return "model_type" in json.loads(config.read_text())
    except (OSError, json.JSONDecodeError):
        return False


def load_text_model(path: Path, device: str | torch.device = "cpu") -> Any:
    """The model of a text run, a SentenceTransformer folder or a text model name (``all-MiniLM-L6-v2``)."""
    if is_text_model_name(path):
        return load_sentence_transformer(str(path), device)
    base = load_sentence_transformer(str(model_folder(path)), device)
    file = path / ADAPTOR_FILE
    if not file.exists():
        return base
    from matryoshka.posthoc import MatryoshkaAdaptor

    return AdaptedTextModel(base, MatryoshkaAdaptor.load(file))


def loading_hint(run_dir: Path) -> str:
    """How to load a finished text run outside ``mrl``: true of the folder as it is on disk."""
    if (run_dir / ADAPTOR_FILE).exists():  # the older layout: the model folder alone would lose the adaptor
        return f"load it with matryoshka.TrainedRun.load({str(run_dir)!r}) (base model and {ADAPTOR_FILE})"
    return f"load it with SentenceTransformer({str(model_folder(run_dir))!r}, truncate_dim=m)"
