"""Fine-tune a SentenceTransformer with a Matryoshka in-batch-negatives loss on query -> document pairs.

The encoder runs once per batch on each tower; :class:`~matryoshka.MatryoshkaLoss` slices both embeddings at every
nesting dim, re-normalises them and sums an InfoNCE (multiple-negatives ranking) loss per dim. With
``model.matryoshka: false`` the same loop trains at the full dim only: the baseline a Matryoshka model must beat at
small dims. Like the image :class:`~matryoshka.train.Trainer` it is seeded, checkpoints every
``train.checkpoint_every`` steps (atomically, with checksums) and resumes where it stopped.

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

import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from matryoshka.data.wordnet import WordNetData, load_wordnet
from matryoshka.evaluate.text import evaluate_text_retrieval
from matryoshka.inference import resolve_device
from matryoshka.io import atomic_replace_dir, atomic_write_json
from matryoshka.nesting import halving_nesting, validate_nesting
from matryoshka.nn.losses import InfoNCELoss, MatryoshkaLoss
from matryoshka.nn.text_encoder import load_sentence_transformer
from matryoshka.train.checkpoint import restore_training, save_training
from matryoshka.train.config import TextExperimentConfig
from matryoshka.train.trainer import CHECK_EVERY, TrainingDivergedError


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


class TextTrainer:
    """Train the text model a :class:`TextExperimentConfig` describes; ``fit()`` returns a :class:`TextTrainResult`."""

    def __init__(
        self,
        config: TextExperimentConfig,
        data: WordNetData | None = None,
        progress: bool = True,
        resume: bool = True,
    ) -> None:
        self.config = config
        self.device = resolve_device(config.train.device)
        precision = config.train.precision
        self.bf16 = precision == "bf16" or (precision == "auto" and self.device.type == "cuda")
        self.progress = progress
        self.resume = resume
        self.run_dir = Path(config.train.out_dir)
        d = config.data
        self.data = data or load_wordnet(d.root, d.val_size, d.test_size, d.train_size, d.seed, d.query_style)
        self.pairs = self.data.train
        if len(self.pairs) < config.train.batch_size:
            raise ValueError(f"{len(self.pairs)} training pairs are fewer than one batch of {config.train.batch_size}")

    # -- set-up ---------------------------------------------------------------------------------------------
    def _build(self) -> None:
        cfg = self.config
        torch.manual_seed(cfg.train.seed)
        self.model = load_sentence_transformer(cfg.model.base, self.device)
        self.model.max_seq_length = cfg.model.max_seq_length
        d = (getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension)()
        m = cfg.model
        self.nesting = validate_nesting(m.nesting, d) if m.nesting is not None else halving_nesting(d, m.min_dim)
        trained = self.nesting if m.matryoshka else [d]
        weights = m.loss_weights if m.matryoshka else None
        self.criterion = MatryoshkaLoss(InfoNCELoss(m.scale, m.symmetric), trained, weights)
        decay = [p for p in self.model.parameters() if p.ndim > 1]
        no_decay = [p for p in self.model.parameters() if p.ndim <= 1]
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=o.lr
        )
        self.steps_per_epoch = len(self.pairs) // cfg.train.batch_size
        self.total_steps = self.steps_per_epoch * cfg.train.epochs
        warmup = int(o.warmup_ratio * self.total_steps)

        def lr_factor(step: int) -> float:  # linear warm-up, then linear decay (the usual BERT fine-tuning schedule)
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (self.total_steps - step) / max(1, self.total_steps - warmup))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor)

    def _comparable_config(self) -> dict[str, Any]:
        cfg = self.config.model_dump()
        for key in ("device", "out_dir", "checkpoint_every", "keep_checkpoints", "evaluate_base"):
            cfg["train"].pop(key)
        return cfg

    def _try_resume(self) -> int:
        if not self.resume:
            return 0
        args = (self.model, self.optimizer, self.scheduler, self.device)
        state = restore_training(self.run_dir, self._comparable_config(), *args)
        if state is None:
            return 0
        self.history, self.running = state["history"], state["running"]
        return int(state["step"])

    # -- loop -----------------------------------------------------------------------------------------------
    def _epoch_order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.config.train.seed * 1_000_003 + epoch)
        b = self.config.train.batch_size
        return torch.randperm(len(self.pairs), generator=g)[: self.steps_per_epoch * b].view(self.steps_per_epoch, b)

    def _embed(self, texts: list[str]) -> torch.Tensor:
        # sentence-transformers >= 6 calls it preprocess; older releases, tokenize.
        prepare = getattr(self.model, "preprocess", None) or self.model.tokenize
        features = prepare(texts)
        features = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        return self.model(features)["sentence_embedding"]

    def _step(self, idx: torch.Tensor) -> torch.Tensor:
        batch = [self.pairs[i] for i in idx.tolist()]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            queries = self._embed([p.query for p in batch])
            documents = self._embed([p.document for p in batch])
        loss = self.criterion(queries.float(), documents.float())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.optim.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def validate(self) -> dict[str, float]:
        """Validation mAP@k per nesting dim (the model is put back in training mode afterwards)."""
        queries, corpus, relevant = self.data.retrieval_set("val")
        self.model.eval()
        scores = evaluate_text_retrieval(self.model, queries, corpus, relevant, self.nesting, self.config.train.eval_k)
        self.model.train()
        return {str(m): v[f"map@{self.config.train.eval_k}"] for m, v in scores.items()}

    def fit(self) -> TextTrainResult:
        self._build()
        self.history: list[dict[str, Any]] = []
        self.running: list[float] = [0.0, 0]  # loss sum and step count of the current epoch
        step = self._try_resume()
        cfg = self.config.train
        if step:
            print(f"resuming {self.run_dir} after step {step}/{self.total_steps}")
        t_start = time.perf_counter()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.model.train()
        with Progress(*columns, TimeRemainingColumn(), disable=not self.progress) as progress:
            task = progress.add_task("training", total=self.total_steps, completed=step)
            while step < self.total_steps:
                epoch, in_epoch = divmod(step, self.steps_per_epoch)
                order = self._epoch_order(epoch + 1)
                pending, pending_steps = torch.zeros((), device=self.device), 0
                for idx in order[in_epoch:]:
                    pending += self._step(idx)
                    pending_steps += 1
                    step += 1
                    end_of_epoch = step % self.steps_per_epoch == 0
                    if step % CHECK_EVERY == 0 or end_of_epoch or step % cfg.checkpoint_every == 0:
                        self.running[0] += pending.item()  # waits for the device, hence only every few steps
                        self.running[1] += pending_steps
                        pending, pending_steps = torch.zeros((), device=self.device), 0
                        self._check_finite(step)
                    if end_of_epoch:
                        self._end_epoch(epoch + 1, step, progress)
                    elif step % cfg.checkpoint_every == 0:
                        self._save_step(step)
                    progress.update(task, completed=step, description=f"epoch {epoch + 1}/{cfg.epochs}")
        train_seconds = time.perf_counter() - t_start
        return self._finish(train_seconds)

    def _check_finite(self, step: int) -> None:
        mean = self.running[0] / max(1, self.running[1])
        if not math.isfinite(mean):
            raise TrainingDivergedError(
                f"loss became {mean} at step {step}; try a lower optim.lr. "
                f"The last good checkpoint in {self.run_dir / 'checkpoints'} is kept."
            )

    def _end_epoch(self, epoch: int, step: int, progress: Progress) -> None:
        record = {
            "epoch": epoch,
            "step": step,
            "train_loss": self.running[0] / max(1, self.running[1]),
            "lr": self.scheduler.get_last_lr()[0],
            "val_map": self.validate(),
        }
        self.history.append(record)
        self.running = [0.0, 0]
        self._save_step(step)
        maps = " ".join(f"{m}:{v:.3f}" for m, v in record["val_map"].items())
        if self.progress:
            k = self.config.train.eval_k
            progress.console.print(f"epoch {epoch}: loss {record['train_loss']:.4f}  val mAP@{k} {maps}")

    def _save_step(self, step: int) -> None:
        args = (self.model, self.optimizer, self.scheduler, self.device, self._comparable_config(), self.history)
        keep = self.config.train.keep_checkpoints
        save_training(self.run_dir, step, *args, keep=keep, unit="step", running=self.running)

    # -- output ---------------------------------------------------------------------------------------------
    def _finish(self, train_seconds: float) -> TextTrainResult:
        self.model.eval()
        save_sentence_transformer(self.model, self.run_dir / "model")
        queries, corpus, relevant = self.data.retrieval_set("test")
        k = self.config.train.eval_k
        test = evaluate_text_retrieval(self.model, queries, corpus, relevant, self.nesting, k)
        base = None
        if self.config.train.evaluate_base:
            base_model = load_sentence_transformer(self.config.model.base, self.device)
            base_model.max_seq_length = self.config.model.max_seq_length
            base = evaluate_text_retrieval(base_model, queries, corpus, relevant, self.nesting, k)
        as_str = {str(m): v for m, v in test.items()}
        base_str = {str(m): v for m, v in base.items()} if base else None
        atomic_write_json(
            self.run_dir / "results.json",
            {
                "config": self.config.model_dump(),
                "nesting": self.nesting,
                "test": as_str,
                "base": base_str,
                "history": self.history,
                "test_queries": len(queries),
                "test_corpus": len(corpus),
                "train_pairs": len(self.pairs),
                "train_seconds": train_seconds,
                "machine": {
                    "device": str(self.device),
                    "cpus": os.cpu_count(),
                    "torch": torch.__version__,
                    "platform": platform.platform(),
                },
            },
        )
        return TextTrainResult(self.run_dir, self.nesting, as_str, base_str, self.history)


def save_sentence_transformer(model: Any, path: Path) -> None:
    """Save a SentenceTransformer folder whole or not at all: written beside ``path``, then renamed over it."""
    atomic_replace_dir(path, lambda tmp: model.save(str(tmp)))
