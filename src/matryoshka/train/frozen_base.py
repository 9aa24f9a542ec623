"""The CPU fast path for text pairs: a frozen base model and a Matryoshka projection fitted on cached embeddings.

Fine-tuning a transformer on a CPU costs seconds per step (all-MiniLM-L6-v2 on 2 cores: ~5 s at batch 8, ~15 s at
batch 32, so hours per epoch for a few thousand pairs). With ``model.frozen_base: true`` the base model encodes the
training texts once (the cost of one forward pass, no backward), then a :class:`~matryoshka.MatryoshkaAdaptor`
is fitted on those embeddings with the in-batch-negatives ranking loss at every nesting dim (the supervised
adaptor; Yoon et al., "Matryoshka-Adaptor", arXiv 2407.20243). The run's ``model/`` folder holds the base model
followed by the adaptor as stock sentence-transformers modules (``matryoshka.posthoc.st_modules``), so
``SentenceTransformer("RUN/model", truncate_dim=m)``, ``mrl encode``, ``mrl eval`` and ``mrl serve`` all give the
adapted embeddings: it is used exactly like a fine-tuned run.

Example::

    mrl train -c configs/own/pairs.yaml --set model.frozen_base=true
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from matryoshka.nn.text_encoder import (
    embedding_dimension,
    encode_texts,
    load_sentence_transformer,
    save_sentence_transformer,
)
from matryoshka.posthoc import MatryoshkaAdaptor
from matryoshka.posthoc.st_modules import adaptor_modules, normalize_module
from matryoshka.runs.text_model import ADAPTOR_FILE, AdaptedTextModel


def fit_frozen_base(trainer: Any) -> Any:
    """Encode the training pairs with the frozen base, fit the adaptor, save and score the run like a fine-tuned one.

    ``trainer`` is the :class:`~matryoshka.train.text_trainer.TextTrainer` (its config, data and run folder)."""
    cfg, run_dir = trainer.config, trainer.run_dir
    torch.manual_seed(cfg.train.seed)
    base = load_sentence_transformer(cfg.model.base, trainer.device)
    base.max_seq_length = cfg.model.max_seq_length
    d = embedding_dimension(base)
    m = cfg.model
    nesting = m.resolved_nesting(d)
    run_dir.mkdir(parents=True, exist_ok=True)
    trained = nesting if m.matryoshka else [d]
    weights = m.resolved_loss_weights(trained)  # a bad list is refused here, before the minutes of encoding
    t0 = time.perf_counter()
    z, q, doc = _encode_pairs(base, trainer.pairs, trainer.progress, cfg.model.base)
    encode_seconds = time.perf_counter() - t0
    adaptor = MatryoshkaAdaptor(
        nesting=trained,
        dim_weights=weights,
        steps=cfg.train.adaptor_steps,
        lr=cfg.optim.adaptor_lr,
        batch_size=min(1024, len(trainer.pairs)),
        seed=cfg.train.seed,
        progress=trainer.progress,
        log_every=cfg.train.log_every,  # the same step lines as fine-tuning prints
    ).fit(z, pairs=(q, doc))
    save_adapted(base, adaptor, run_dir / "model")
    seconds = {"train_seconds": time.perf_counter() - t0, "encode_seconds": encode_seconds}
    model = AdaptedTextModel(base, adaptor)
    extra = {"frozen_base": True, "loss_weights": adaptor.dim_weights_}
    return trainer.score_and_save(model, nesting, seconds, base=base, **extra)


def _encode_pairs(base: Any, pairs: list, progress: bool, name: str) -> tuple[torch.Tensor, ...]:
    """(embeddings of the distinct texts, of each pair's query, of each pair's document), encoded once."""
    texts = sorted({p.query for p in pairs} | {p.document for p in pairs})
    row = {t: i for i, t in enumerate(texts)}
    if progress:
        print(f"encoding {len(texts)} distinct training texts once with the frozen base ({name})")
    z = encode_texts(base, texts, progress=progress)
    return z, z[[row[p.query] for p in pairs]], z[[row[p.document] for p in pairs]]


def save_adapted(base: Any, adaptor: MatryoshkaAdaptor, path: Path) -> None:
    """Save ``base`` followed by the adaptor (and a last ``Normalize`` where the base ends with one) as one
    SentenceTransformer folder. The adaptor was fitted on the base's output, so it goes after all of the base."""
    extra = adaptor_modules(adaptor)
    if type(base[-1]).__name__ == "Normalize":  # unit vectors at the full dim, as the base gave
        extra.append(normalize_module())
    # A run folder of the older layout holds the adaptor beside model/: it would be applied twice.
    (path.parent / ADAPTOR_FILE).unlink(missing_ok=True)
    with _appended(base, [m.to(base.device) for m in extra]):
        save_sentence_transformer(base, path)


@contextmanager
def _appended(model: Any, modules: list[torch.nn.Module]) -> Iterator[Any]:
    """``model`` with ``modules`` appended for the block, then as it was (the base keeps its own settings: prompts,
    similarity function, which a new SentenceTransformer built from the modules would drop)."""
    size = len(model)
    for module in modules:
        model.append(module)
    try:
        yield model
    finally:
        while len(model) > size:
            del model[len(model) - 1]
