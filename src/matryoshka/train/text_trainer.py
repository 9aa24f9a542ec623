"""Fine-tune a SentenceTransformer with a Matryoshka in-batch-negatives loss on query -> document pairs.

The encoder runs once per batch on each tower; :class:`~matryoshka.MatryoshkaLoss` slices both embeddings at every
nesting dim, re-normalises them and sums an InfoNCE (multiple-negatives ranking) loss per dim. With
``model.matryoshka: false`` the same loop trains at the full dim only: the baseline a Matryoshka model must beat at
small dims. ``model.distill`` adds :class:`~matryoshka.nn.distillation.PrefixDistillationLoss` (each prefix learns
the full dim's in-batch ranking); ``model.memory`` keeps the documents of the last batches as extra candidates
(:class:`~matryoshka.nn.memory.CandidateMemory`); ``model.mine_negatives`` adds a hard negative per pair, mined with
the starting weights (:mod:`matryoshka.train.mined_negatives`). Like the image :class:`~matryoshka.train.Trainer`
it is seeded, checkpoints every ``train.checkpoint_every`` steps (atomically, with checksums) and resumes where it
stopped.

Output (``train.out_dir``)::

    model/            a SentenceTransformer folder: SentenceTransformer(path, truncate_dim=m) loads it
    results.json      per-dim test metrics (mAP@k, recall@k, top-1, MRR) of the trained and the base model
    metrics.jsonl     loss and validation metrics per epoch
    checkpoints/      step-NNNNNNNN/ (weights, optimizer, RNG), latest

Example::

    from matryoshka.train import load_config
    from matryoshka.train.text_trainer import TextTrainer
    result = TextTrainer(load_config("configs/wordnet_minilm_quick.yaml")).fit()
    print(result.test["48"])        # {"map@10": ..., "r@10": ..., "top1": ..., "mrr": ...}
"""

from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from matryoshka.data.pairs import PairsData
from matryoshka.data.text_sources import load_text_data
from matryoshka.data.wordnet import WordNetData
from matryoshka.errors import InputError
from matryoshka.evaluate.text import evaluate_text_retrieval
from matryoshka.index.basis import fit_basis
from matryoshka.io import atomic_write_json
from matryoshka.nn.distillation import PrefixDistillationLoss
from matryoshka.nn.losses import InfoNCELoss, MatryoshkaLoss
from matryoshka.nn.memory import CandidateMemory
from matryoshka.nn.text_encoder import (
    embedding_dimension,
    encode_texts,
    load_sentence_transformer,
    save_sentence_transformer,
)
from matryoshka.posthoc.st_modules import normalize_module, rotation_module
from matryoshka.runs.text_model import ADAPTOR_FILE
from matryoshka.train.frozen_base import fit_frozen_base
from matryoshka.train.loop import TrainingLoop, decay_groups, lambda_schedule
from matryoshka.train.mined_negatives import mine_negatives
from matryoshka.train.text_config import TextExperimentConfig

SVD_TEXTS = 8192  # training texts the projection's basis is fitted on


@dataclass
class TextTrainResult:
    run_dir: Path
    nesting: list[int]
    test: dict[str, dict[str, float]]  # dim -> metrics of the trained model
    base: dict[str, dict[str, float]] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def model_path(self) -> Path:
        return self.run_dir / "model"


class TextTrainer(TrainingLoop):
    """Train the text model a :class:`TextExperimentConfig` describes; ``fit()`` returns a :class:`TextTrainResult`.

    Example::

        import tempfile
        from matryoshka import TextTrainer
        from matryoshka.train import parse_config

        config = parse_config({
            "data": {"name": "wordnet", "train_size": 256, "val_size": 50, "test_size": 100},
            "model": {"frozen_base": True},                      # the CPU fast path: frozen base + Matryoshka adaptor
            "train": {"adaptor_steps": 20, "evaluate_base": False, "out_dir": tempfile.mkdtemp()},
        })
        result = TextTrainer(config, progress=False).fit()
        print(result.test["48"])                                 # test retrieval metrics at 48 dims
    """

    checkpoint_unit = "step"
    validation_key = "val_map"
    allow_distributed = False

    def __init__(
        self,
        config: TextExperimentConfig,
        data: WordNetData | PairsData | None = None,
        progress: bool = True,
        resume: bool = True,
    ) -> None:
        super().__init__(config.train, progress, resume)
        self.config = config
        d = config.data
        self.data = data or load_text_data(d)
        self.pairs = self.data.train
        if len(self.pairs) < config.train.batch_size:
            raise InputError(f"{len(self.pairs)} training pairs are fewer than one batch of {config.train.batch_size}")

    def fit(self) -> TextTrainResult:
        if self.config.model.frozen_base:
            return fit_frozen_base(self)
        return super().fit()

    def build(self) -> None:
        cfg = self.config
        torch.manual_seed(cfg.train.seed)
        self.model = load_sentence_transformer(cfg.model.base, self.device)
        self.model.max_seq_length = cfg.model.max_seq_length
        d = embedding_dimension(self.model)
        m = cfg.model
        if m.mine_negatives:  # with the starting weights: a resumed run mines the same negatives again
            self.pairs = mine_negatives(self.model, self.data.train, m.mine_margin, verbose=self.progress)
        if m.resolved_projection() == "svd":
            self._append_svd_projection()
        self.nesting = m.resolved_nesting(d)
        trained = self.nesting if m.matryoshka else [d]
        weights = m.resolved_loss_weights(trained)
        self.criterion = MatryoshkaLoss(InfoNCELoss(m.scale, m.symmetric), trained, weights)
        self.distillation = PrefixDistillationLoss(trained, m.scale) if m.matryoshka and m.distill > 0 else None
        self.memory = None
        if m.memory and m.matryoshka:
            self.memory = CandidateMemory(m.memory, d, self.device, key_columns=2)
            # Each pair's query and document text as integers: remembered rows sharing either are never its negatives.
            ids: tuple[dict[str, int], dict[str, int]] = ({}, {})
            self.pair_keys = torch.tensor(
                [
                    [ids[0].setdefault(p.query, len(ids[0])), ids[1].setdefault(p.document, len(ids[1]))]
                    for p in self.pairs
                ]
            )
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(decay_groups(self.model, o.weight_decay), lr=o.lr)
        self.steps_per_epoch = len(self.pairs) // cfg.train.batch_size
        total = self.total_steps
        warmup = int(o.warmup_ratio * total)

        def lr_factor(step: int) -> float:  # linear warm-up, then linear decay (the usual BERT fine-tuning schedule)
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (total - step) / max(1, total - warmup))

        self.scheduler = lambda_schedule(self.optimizer, lr_factor)

    def _append_svd_projection(self) -> None:
        """A rotation into the SVD basis of the base's embeddings of (a sample of) the training texts, then a
        Normalize where the base ends with one: trained with the encoder, saved with it as stock modules."""
        texts = sorted({p.query for p in self.pairs} | {p.document for p in self.pairs})
        if len(texts) > SVD_TEXTS:  # the Gram matrix of a larger sample barely moves
            texts = random.Random(self.config.train.seed).sample(texts, SVD_TEXTS)
        basis = fit_basis(encode_texts(self.model, texts).numpy())
        ends_normalized = type(self.model[-1]).__name__ == "Normalize"
        self.model.append(rotation_module(basis).to(self.device))
        if ends_normalized:  # the rotation keeps unit length only until training moves it
            self.model.append(normalize_module().to(self.device))

    def comparable_config(self) -> dict[str, Any]:
        cfg = self.config.model_dump()
        for key in (
            "device",
            "out_dir",
            "checkpoint_every",
            "checkpoint_minutes",
            "log_every",
            "keep_checkpoints",
            "evaluate_base",
        ):
            cfg["train"].pop(key)
        cfg["model"].pop("frozen_base")  # settings of the fast path, which never resumes from checkpoints
        cfg["optim"].pop("adaptor_lr")
        cfg["train"].pop("adaptor_steps")
        if not cfg["model"]["matryoshka"]:  # settings a full-dim-only run ignores do not make it another run
            for key in ("loss_weights", "distill", "memory", "memory_use"):
                cfg["model"].pop(key)
        return cfg

    def batches(self, epoch: int, start: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.config.train.seed * 1_000_003 + epoch)
        b = self.config.train.batch_size
        order = torch.randperm(len(self.pairs), generator=g)[: self.steps_per_epoch * b]
        return order.view(self.steps_per_epoch, b)[start:]

    def _embed(self, texts: list[str]) -> torch.Tensor:
        # sentence-transformers >= 6 calls it preprocess; older releases, tokenize.
        prepare = getattr(self.model, "preprocess", None) or self.model.tokenize
        features = prepare(texts)
        features = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        return self.model(features)["sentence_embedding"]

    def train_step(self, batch: torch.Tensor) -> torch.Tensor:
        pairs = [self.pairs[i] for i in batch.tolist()]
        # Hard negatives (when the data has them) join the candidates after the batch's own documents.
        negatives = [n for p in pairs if (n := getattr(p, "negative", None)) is not None]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            queries = self._embed([p.query for p in pairs])
            documents = self._embed([p.document for p in pairs] + negatives)
        queries, documents = queries.float(), documents.float()
        loss = self._ranking_loss(queries, documents, batch)
        if self.memory is not None:  # after the loss: a batch never counts its own documents twice
            self.memory.add(documents[: len(pairs)], self.pair_keys[batch])
        self.optimizer_step(loss, self.config.optim.grad_clip)
        return loss.detach()

    def _ranking_loss(self, queries: torch.Tensor, documents: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """The Matryoshka loss (and distillation) over the batch's documents, its hard negatives and, with
        ``model.memory``, the documents of the last batches."""
        m, memory = self.config.model, self.memory
        remembered = memory is not None and len(memory) > 0
        with_memory = torch.cat([documents, memory.rows()]) if remembered else documents
        if remembered and m.memory_use in ("both", "negatives"):
            own = memory.mask_for(self.pair_keys[batch])
            hard = own.new_zeros(len(queries), len(documents) - len(queries))
            loss = self.criterion(queries, with_memory, exclude=torch.cat([hard, own], 1))
        else:
            loss = self.criterion(queries, documents)
        if self.distillation is not None:
            distilled = remembered and m.memory_use in ("both", "distillation")
            loss = loss + m.distill * self.distillation(queries, with_memory if distilled else documents)
        return loss

    def extra_state(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict()} if self.memory is not None else {}

    def restore_extra_state(self, state: dict[str, Any]) -> None:
        if self.memory is not None:
            self.memory.load_state_dict(state["memory"])

    def validate(self) -> dict[str, float]:
        """Validation mAP@k per nesting dim (the model is put back in training mode afterwards)."""
        queries, corpus, relevant = self.data.retrieval_set("val")
        self.model.eval()
        scores = evaluate_text_retrieval(self.model, queries, corpus, relevant, self.nesting, self.config.train.eval_k)
        self.model.train()
        return {str(m): v[f"map@{self.config.train.eval_k}"] for m, v in scores.items()}

    # -- output ---------------------------------------------------------------------------------------------
    def finish(self, train_seconds: float) -> TextTrainResult:
        self.model.eval()
        (self.run_dir / ADAPTOR_FILE).unlink(missing_ok=True)  # a fast-path run's, from an older layout: not ours
        save_sentence_transformer(self.model, self.run_dir / "model")
        weights = self.criterion.weights.tolist()
        return self.score_and_save(self.model, self.nesting, {"train_seconds": train_seconds}, loss_weights=weights)

    def score_and_save(
        self, model: Any, nesting: list[int], seconds: dict[str, float], base: Any = None, **extra: Any
    ) -> TextTrainResult:
        """Test metrics per dim of ``model`` and, with ``train.evaluate_base``, of the base model (loaded here
        unless given), written to ``results.json`` with the config, ``seconds`` and ``extra``."""
        queries, corpus, relevant = self.data.retrieval_set("test")
        k = self.config.train.eval_k

        def scores(encoder: Any) -> dict[str, Any]:
            return {
                str(m): v for m, v in evaluate_text_retrieval(encoder, queries, corpus, relevant, nesting, k).items()
            }

        test = scores(model)
        base_scores = None
        if self.config.train.evaluate_base:
            if base is None:
                base = load_sentence_transformer(self.config.model.base, self.device)
                base.max_seq_length = self.config.model.max_seq_length
            base_scores = scores(base)
        results = {
            "config": self.config.to_dict(),
            "nesting": nesting,
            **extra,
            "test": test,
            "base": base_scores,
            "history": self.history,
            "test_queries": len(queries),
            "test_corpus": len(corpus),
            "train_pairs": len(self.pairs),
            "train_negatives": sum(getattr(p, "negative", None) is not None for p in self.pairs),
            **seconds,
            "machine": system_info(self.device),
        }
        atomic_write_json(self.run_dir / "results.json", results)
        return TextTrainResult(self.run_dir, nesting, test, base_scores, self.history)


def system_info(device: torch.device) -> dict[str, Any]:
    return {"device": str(device), "cpus": os.cpu_count(), "torch": torch.__version__, "platform": platform.platform()}
