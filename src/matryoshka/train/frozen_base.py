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

from matryoshka.io import atomic_write_json

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
    from matryoshka.evaluate.text import evaluate_text_retrieval
    from matryoshka.nesting import halving_nesting, validate_nesting
    from matryoshka.nn.text_encoder import embedding_dimension, encode_texts, load_sentence_transformer
    from matryoshka.posthoc import MatryoshkaAdaptor
    from matryoshka.train.text_trainer import TextTrainResult, save_sentence_transformer, system_info

    cfg, pairs, run_dir = trainer.config, trainer.pairs, trainer.run_dir
    torch.manual_seed(cfg.train.seed)
    base = load_sentence_transformer(cfg.model.base, trainer.device)
    base.max_seq_length = cfg.model.max_seq_length
    d = embedding_dimension(base)
    m = cfg.model
    nesting = validate_nesting(m.nesting, d) if m.nesting is not None else halving_nesting(d, m.min_dim)
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    texts = sorted({p.query for p in pairs} | {p.document for p in pairs})
    row = {t: i for i, t in enumerate(texts)}
    if trainer.progress:
        print(f"encoding {len(texts)} distinct training texts once with the frozen base ({cfg.model.base})")
    z = encode_texts(base, texts, progress=trainer.progress)
    q = z[[row[p.query] for p in pairs]]
    doc = z[[row[p.document] for p in pairs]]
    encode_seconds = time.perf_counter() - t0
    adaptor = MatryoshkaAdaptor(
        nesting=nesting if m.matryoshka else [d],
        steps=cfg.train.adaptor_steps,
        lr=cfg.optim.adaptor_lr,
        batch_size=min(1024, len(pairs)),
        seed=cfg.train.seed,
        progress=trainer.progress,
    ).fit(z, pairs=(q, doc))
    adaptor.save(run_dir / ADAPTOR_FILE)
    save_sentence_transformer(base, run_dir / "model")
    train_seconds = time.perf_counter() - t0
    model = AdaptedTextModel(base, adaptor)
    queries, corpus, relevant = trainer.data.retrieval_set("test")
    k = cfg.train.eval_k
    test = {str(m): v for m, v in evaluate_text_retrieval(model, queries, corpus, relevant, nesting, k).items()}
    base_scores = None
    if cfg.train.evaluate_base:
        base_scores = {
            str(m): v for m, v in evaluate_text_retrieval(base, queries, corpus, relevant, nesting, k).items()
        }
    atomic_write_json(
        run_dir / "results.json",
        {
            "config": cfg.to_dict(),
            "nesting": nesting,
            "frozen_base": True,
            "test": test,
            "base": base_scores,
            "history": [],
            "test_queries": len(queries),
            "test_corpus": len(corpus),
            "train_pairs": len(pairs),
            "train_seconds": train_seconds,
            "encode_seconds": encode_seconds,
            "machine": system_info(trainer.device),
        },
    )
    if trainer.progress:
        print(
            f"fitted in {train_seconds:.0f} s ({encode_seconds:.0f} s encoding); test mAP@{k} per dim: "
            + " ".join(f"{m}:{v[f'map@{k}']:.3f}" for m, v in test.items())
        )
    return TextTrainResult(run_dir, nesting, test, base_scores, [])
