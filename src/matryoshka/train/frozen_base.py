"""The CPU fast path for text pairs: a frozen base model and a Matryoshka projection fitted on cached embeddings.

Fine-tuning a transformer on a CPU costs seconds per step (all-MiniLM-L6-v2 on 2 cores: ~5 s at batch 8, ~15 s at
batch 32, so hours per epoch for a few thousand pairs). With ``model.frozen_base: true`` the base model encodes the
training texts once (the cost of one forward pass, no backward), then a :class:`~matryoshka.MatryoshkaAdaptor`
is fitted on those embeddings with the in-batch-negatives ranking loss at every nesting dim (the supervised
adaptor; Yoon et al., "Matryoshka-Adaptor", arXiv 2407.20243). The run folder holds the base model and the adaptor;
``mrl encode`` / ``mrl eval`` / ``mrl serve`` apply both, so it is used exactly like a fine-tuned run.

Example::

    mrl train -c configs/own/pairs.yaml --set model.frozen_base=true
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

ADAPTOR_FILE = "adaptor.safetensors"


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


def load_adapted(run_dir: Path, base: Any) -> Any:
    """The run's text model: the base alone, or base + adaptor when the run used the fast path."""
    file = run_dir / ADAPTOR_FILE
    if not file.exists():
        return base
    from matryoshka.posthoc import MatryoshkaAdaptor

    return AdaptedTextModel(base, MatryoshkaAdaptor.load(file))


def fit_frozen_base(trainer: Any) -> Any:
    """Encode the training pairs with the frozen base, fit the adaptor, save and score the run like a fine-tuned one.

    ``trainer`` is the :class:`~matryoshka.train.text_trainer.TextTrainer` (its config, data and run folder)."""
    from matryoshka.nn.text_encoder import embedding_dimension, load_sentence_transformer
    from matryoshka.posthoc import MatryoshkaAdaptor
    from matryoshka.train.text_trainer import save_sentence_transformer

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
    ).fit(z, pairs=(q, doc))
    adaptor.save(run_dir / ADAPTOR_FILE)
    save_sentence_transformer(base, run_dir / "model")
    seconds = {"train_seconds": time.perf_counter() - t0, "encode_seconds": encode_seconds}
    model = AdaptedTextModel(base, adaptor)
    extra = {"frozen_base": True, "loss_weights": adaptor.dim_weights_}
    return trainer.score_and_save(model, nesting, seconds, base=base, **extra)


def _encode_pairs(base: Any, pairs: list, progress: bool, name: str) -> tuple[torch.Tensor, ...]:
    """(embeddings of the distinct texts, of each pair's query, of each pair's document), encoded once."""
    from matryoshka.nn.text_encoder import encode_texts

    texts = sorted({p.query for p in pairs} | {p.document for p in pairs})
    row = {t: i for i, t in enumerate(texts)}
    if progress:
        print(f"encoding {len(texts)} distinct training texts once with the frozen base ({name})")
    z = encode_texts(base, texts, progress=progress)
    return z, z[[row[p.query] for p in pairs]], z[[row[p.document] for p in pairs]]
