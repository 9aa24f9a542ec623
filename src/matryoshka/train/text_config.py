"""The text experiment config: fine-tune a SentenceTransformer (or fit the fast path's adaptor) on text pairs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from matryoshka.data.config import StrictModel, TextDataConfig
from matryoshka.nesting import NestingError, halving_nesting, nesting_weights, small_dim_weights, validate_nesting

TEXT_SMALL_DIM_FACTOR = 4  # text small_dims: the smallest prefix weighs 4 (measured on the fast path, benchmarks.md)


class TextModelConfig(StrictModel):
    base: str = Field("all-MiniLM-L6-v2", description="'all-MiniLM-L6-v2' or a SentenceTransformer folder")
    matryoshka: bool = Field(True, description="false: the same fine-tuning with the loss at the full dim only")
    nesting: list[int] | None = Field(None, description="default: d, d/2, d/4, ... down to min_dim")
    min_dim: int = Field(12, ge=1)
    loss_weights: list[float] | Literal["uniform", "small_dims"] | None = Field(
        None,
        description="c_m per nesting dim: a list, uniform, or small_dims (max(1, 4 m_1 / m): 4 at the smallest dim, "
        "halving per doubling down to 1); default: small_dims with frozen_base, uniform for full fine-tuning",
    )
    distill: float = Field(
        0.0, ge=0, description="weight of the full-dim -> prefix ranking distillation (PrefixDistillationLoss); 0: off"
    )
    memory: int = Field(
        0,
        ge=0,
        description="documents of the last batches kept as extra candidates of the next ones (CandidateMemory: their "
        "embeddings from the step that trained them, no gradient, no extra encoding); 0: off",
    )
    memory_use: Literal["both", "negatives", "distillation"] = Field(
        "both",
        description="what the memory's documents are: negatives of the Matryoshka loss at every dim (a query's own "
        "relevant documents left out), candidates of the distillation (model.distill), or both",
    )
    mine_negatives: bool = Field(
        False,
        description="one hard negative per training pair, mined before the first step with the model being trained "
        "(its starting weights): the best-ranked training document that is no positive of the query and scores at "
        "most (1 - mine_margin) x the positive; it joins the batch's candidates (matryoshka.train.mined_negatives)",
    )
    mine_margin: float = Field(
        0.05, ge=0, lt=1, description="relative margin below the positive's cosine a mined negative must keep"
    )
    scale: float = Field(20.0, gt=0, description="inverse temperature of the in-batch-negatives loss")
    symmetric: bool = Field(True, description="also rank queries for each document")
    max_seq_length: int = Field(
        64, ge=8, description="tokens kept per text (longer texts are cut); step time grows with it"
    )
    projection: Literal["auto", "none", "svd"] = Field(
        "auto",
        description="svd: a d x d linear map after the base's output, initialised with the right singular vectors "
        "of the base's embeddings of the training texts (a rotation: every full-dim cosine starts unchanged, the "
        "prefixes start from the SVD ordering) and fine-tuned with the rest; saved as a stock Dense module. auto "
        "(default): svd for full fine-tuning, none with frozen_base (its adaptor starts from that rotation)",
    )
    frozen_base: bool = Field(
        False,
        description="CPU fast path: keep the base frozen, encode the pairs once and fit a Matryoshka projection "
        "(the supervised adaptor) on the cached embeddings; minutes instead of hours on a CPU",
    )

    @model_validator(mode="after")
    def _check(self) -> TextModelConfig:
        if self.nesting is not None:
            validate_nesting(self.nesting)
        if self.memory and self.memory_use == "distillation" and self.distill == 0:
            raise ValueError(
                "model.memory_use: distillation needs model.distill > 0 (e.g. model.distill=1.0), or memory_use: both"
            )
        if self.memory and self.frozen_base:
            raise ValueError(
                "model.memory goes with full fine-tuning; the frozen base's adaptor already sees 1,024 pairs per step "
                "(drop model.memory, or model.frozen_base)"
            )
        if self.mine_negatives and self.frozen_base:
            raise ValueError(
                "model.mine_negatives goes with full fine-tuning; the frozen base's adaptor ranks each pair against "
                "the 1,024 pairs of its step (drop model.mine_negatives, or model.frozen_base)"
            )
        if self.projection == "svd" and self.frozen_base:
            raise ValueError(
                "projection: svd goes with full fine-tuning; the frozen base's adaptor already starts from that "
                "rotation (drop model.projection, or model.frozen_base)"
            )
        return self

    def resolved_projection(self) -> str:
        """The projection trained: ``projection``, with auto read as svd for full fine-tuning, none on the fast
        path."""
        if self.projection == "auto":
            return "none" if self.frozen_base else "svd"
        return self.projection

    def resolved_nesting(self, d: int) -> list[int]:
        """The dims trained for a base model of width ``d``: ``nesting``, or d, d/2, ... down to ``min_dim``."""
        return validate_nesting(self.nesting, d) if self.nesting is not None else halving_nesting(d, self.min_dim)

    def resolved_loss_weights(self, nesting: list[int]) -> list[float] | None:
        """The c_m of the trained dims (None: equal; a full-dim-only run has one term)."""
        choice = self.loss_weights
        if choice is None:
            choice = "small_dims" if self.frozen_base else "uniform"
        if not self.matryoshka or choice == "uniform":
            return None
        if choice == "small_dims":
            return small_dim_weights(nesting, pivot=TEXT_SMALL_DIM_FACTOR * nesting[0]) if len(nesting) > 1 else None
        try:
            return nesting_weights(nesting, choice)
        except NestingError as e:
            raise NestingError(f"model.loss_weights: {e}") from e


class TextOptimConfig(StrictModel):
    lr: float = Field(5e-5, gt=0)
    adaptor_lr: float = Field(1e-3, gt=0, description="frozen_base: the adaptor's learning rate")
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0)


class TextTrainConfig(StrictModel):
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(64, ge=2, description="in-batch negatives: batch_size - 1 per query")
    seed: int = 0
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    out_dir: str = "runs/wordnet_minilm"
    checkpoint_every: int = Field(200, ge=1, description="steps between checkpoints (and at each epoch's end)")
    checkpoint_minutes: float | None = Field(
        10.0, gt=0, description="also checkpoint when this many minutes passed since the last one (slow CPU runs)"
    )
    log_every: int = Field(25, ge=0, description="a progress line (loss, rate, time left) every N steps; 0: none")
    keep_checkpoints: int = Field(2, ge=1)
    eval_k: int = Field(10, ge=1)
    adaptor_steps: int = Field(
        500, ge=1, description="frozen_base: optimizer steps of the adaptor (the best held-out state is kept)"
    )
    evaluate_base: bool = Field(True, description="also score the untouched base model on the test split")


class TextExperimentConfig(StrictModel):
    """Fine-tune a SentenceTransformer with a (Matryoshka) in-batch-negatives loss on query -> document pairs."""

    data: TextDataConfig = TextDataConfig()
    model: TextModelConfig = TextModelConfig()
    optim: TextOptimConfig = TextOptimConfig()
    train: TextTrainConfig = TextTrainConfig()

    def to_dict(self) -> dict[str, Any]:
        """The config as saved with a run: the data section holds only its own source's keys."""
        return {**self.model_dump(), "data": self.data.own_keys()}


TEXT_DATASETS = ("wordnet", "pairs")
