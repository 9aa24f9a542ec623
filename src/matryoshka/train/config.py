"""Experiment configuration: YAML in, validated pydantic models out. Unknown keys are errors."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from matryoshka.errors import MatryoshkaError
from matryoshka.nesting import (
    NestingError,
    halving_nesting,
    nesting_list,
    nesting_weights,
    small_dim_weights,
    validate_nesting,
)


class ConfigError(MatryoshkaError, ValueError):
    """A configuration file or override that cannot be used; the message names the bad key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    name: str = Field(
        "fashion_mnist", description="a registered data source: fashion_mnist, digits, imagefolder, table"
    )
    root: str | None = Field(None, description="folder of a built-in data set (default: where its package puts it)")
    path: str | None = Field(None, description="imagefolder: the folder; table: the CSV / JSONL / Parquet file")
    val_size: int | None = Field(None, ge=0, description="validation examples held out of train (data set default)")
    train_subset: int | None = Field(None, ge=1, description="train on a seeded random subset of this size")
    seed: int = 0
    val_fraction: float = Field(0.1, ge=0, lt=1, description="own data without a val/ split: fraction held out")
    test_fraction: float = Field(0.1, ge=0, lt=1, description="own data without a test/ split: fraction held out")
    image_size: int = Field(32, ge=4, description="own images are resized to image_size x image_size")
    channels: Literal[1, 3] = Field(3, description="own images are converted to grey (1) or RGB (3)")
    background: Literal["white", "black", "mean"] = Field(
        "white",
        description="own images with transparency (RGBA, LA, palette) are composited onto this colour; mean: the "
        "average visible colour of training images. Stored in the run, so encode and serve do the same",
    )
    label_column: str = "label"
    feature_columns: list[str] | None = Field(None, description="table: numeric input columns (default: all others)")
    image_column: str | None = Field(None, description="table: a column of image paths (relative to the table)")
    augment: bool = Field(False, description="random resized crop + horizontal flip of training images")
    workers: int = Field(0, ge=0, description="DataLoader worker processes decoding own images")
    cache: bool = Field(True, description="decode own images once into a memory-mapped uint8 file (N*C*H*W bytes)")
    cache_dir: str | None = Field(None, description="where that file goes (default ~/.cache/matryoshka/decoded)")

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        from matryoshka.data import is_data_source
        from matryoshka.data.registry import SOURCES

        if not is_data_source(self.name):
            raise ValueError(f"{SOURCES.unknown(self.name)}, or package.module:loader")
        if self.name in ("imagefolder", "table") and not self.path:
            raise ValueError(f"data.name={self.name} needs data.path (the folder or file to read)")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must leave examples for training")
        return self


class ModelConfig(_Strict):
    backbone: str = Field(
        "cnn",
        description="a registered backbone (cnn, resnet, mlp, vit or your own), hf:FOLDER (a transformers "
        "save_pretrained folder), timm:MODEL or package.module:factory",
    )
    embed_dim: int = Field(512, ge=1)
    width: int | None = Field(
        None, ge=1, description="first conv stage channels (cnn, resnet), hidden size (mlp), token width (vit)"
    )
    init_from: str | None = Field(
        None,
        description="start from these weights (.safetensors or a .pt/.pth state dict) of the backbone, of an hf:/"
        "timm:/module backbone's own model, or of the whole model",
    )
    freeze_backbone: bool = Field(False, description="train only the backbone's projection and the heads")
    head: Literal["mrl", "mrl_e", "ff"] = "mrl"
    nesting: list[int] | None = Field(None, description="dims trained; default: powers of two from min_dim to d")
    min_dim: int = Field(8, ge=1)
    ff_dim: int | None = Field(None, ge=1, description="FF-k baseline: k (the head reads z[:k]); default d")
    loss_weights: list[float] | Literal["uniform", "small_dims"] = Field(
        "small_dims",
        description="c_m per nesting dim: a list, uniform (the paper's ones) or small_dims (max(1, 16/m): the "
        "smallest prefixes weigh more, so they keep up with FF-k)",
    )
    head_bias: bool = Field(
        False,
        description="classifiers with a bias (the paper's); false: each head decides by its prefix's direction "
        "alone, as cosine search sees it (at 2 dims a biased head can also separate classes by the prefix's length, "
        "which search cannot use)",
    )
    logit_scale: bool = Field(
        True,
        description="each head's logits times a learned temperature exp(s), s from 0: a small prefix's head grows "
        "confident by its own scale instead of inflating the first dims, which would then dominate the cosine of "
        "every larger prefix (false: the paper's plain linear heads)",
    )
    loss_weights_schedule: Literal["linear", "quadratic", "constant"] = Field(
        "linear",
        description="linear: every c_m starts at 1 and reaches its value at the end, as 1 + (c_m - 1) * t (t: the "
        "fraction of training done), so the representation is learned for all dims before the small prefixes weigh "
        "most; quadratic: 1 + (c_m - 1) * t^2, the extra weight later still (ramp, its former name, is read as "
        "quadratic); constant: the c_m from the first step",
    )

    @field_validator("loss_weights_schedule", mode="before")
    @classmethod
    def _former_schedule_name(cls, schedule: Any) -> Any:
        return "quadratic" if schedule == "ramp" else schedule

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, spec: str) -> str:
        from matryoshka.nn.backbones import parse_backbone_spec

        parse_backbone_spec(spec)
        return spec

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        from matryoshka.nn.backbones import parse_backbone_spec

        if self.width is not None and parse_backbone_spec(self.backbone).kind != "name":
            raise ValueError(f"width applies to registered backbones, not to {self.backbone}")
        if self.nesting is not None:
            validate_nesting(self.nesting, self.embed_dim)
        if self.ff_dim is not None and self.ff_dim > self.embed_dim:
            raise ValueError(f"ff_dim={self.ff_dim} is larger than embed_dim={self.embed_dim}")
        return self

    def resolved_nesting(self) -> list[int]:
        if self.head == "ff":
            return [self.ff_dim or self.embed_dim]
        return list(self.nesting) if self.nesting is not None else nesting_list(self.embed_dim, self.min_dim)

    def resolved_loss_weights(self) -> list[float] | None:
        """The c_m the loss uses (None: equal)."""
        if self.head == "ff" or self.loss_weights == "uniform":
            return None
        if self.loss_weights == "small_dims":
            return small_dim_weights(self.resolved_nesting())
        return list(self.loss_weights)


class OptimConfig(_Strict):
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0)


MIN_STEPS = 2000  # the default schedule: at least this many optimizer steps (small data sets get more epochs)
MIN_EPOCHS = 10


class TrainConfig(_Strict):
    epochs: int | None = Field(
        None, ge=1, description=f"default: {MIN_EPOCHS}, or more where needed to reach {MIN_STEPS} steps"
    )
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on CUDA, fp32 on CPU")
    out_dir: str = "runs/fashion_mnist_mrl"
    keep_checkpoints: int = Field(2, ge=1)
    eval_every: int = Field(1, ge=1, description="validate every N epochs")
    log_every: int = Field(0, ge=0, description="a progress line every N steps (0: one line per epoch only)")


class ExperimentConfig(_Strict):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()


WORDNET_ONLY = ("root", "val_size", "test_size", "query_style")
PAIRS_ONLY = ("path", "query_column", "document_column", "negative_column", "val_fraction", "test_fraction")


class TextDataConfig(_Strict):
    name: Literal["wordnet", "pairs"] = "wordnet"
    root: str | None = None
    path: str | None = Field(None, description="pairs: a CSV / TSV / JSONL / Parquet file of (query, document) rows")
    query_column: str = "query"
    document_column: str = "document"
    negative_column: str | None = Field(None, description="pairs: an optional hard-negative document per row")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="pairs: fraction of rows held out for validation")
    test_fraction: float = Field(0.1, gt=0, lt=1, description="pairs: fraction of rows held out for test")
    train_size: int | None = Field(
        None, ge=1, description="train on this many synsets (wordnet) or pairs (pairs), a seeded subset; default all"
    )
    val_size: int = Field(1000, ge=1, description="wordnet: synsets held out for validation")
    test_size: int = Field(5000, ge=2, description="wordnet: synsets held out for test")
    query_style: Literal["lemma", "lemma_example"] = Field("lemma", description="wordnet: what a query is")
    seed: int = 0

    def own_keys(self) -> dict[str, Any]:
        """The keys of this source only (a pairs run does not list WordNet's, and the other way round)."""
        other = WORDNET_ONLY if self.name == "pairs" else PAIRS_ONLY
        return {k: v for k, v in self.model_dump().items() if k not in other}

    @model_validator(mode="after")
    def _check(self) -> TextDataConfig:
        if self.name == "pairs" and not self.path:
            raise ValueError("data.name=pairs needs data.path (the file of query/document rows)")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must leave pairs for training")
        return self


TEXT_SMALL_DIM_FACTOR = 4  # text small_dims: the smallest prefix weighs 4 (measured on the fast path, benchmarks.md)


class TextModelConfig(_Strict):
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
    scale: float = Field(20.0, gt=0, description="inverse temperature of the in-batch-negatives loss")
    symmetric: bool = Field(True, description="also rank queries for each document")
    max_seq_length: int = Field(
        64, ge=8, description="tokens kept per text (longer texts are cut); step time grows with it"
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
        return self

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


class TextOptimConfig(_Strict):
    lr: float = Field(5e-5, gt=0)
    adaptor_lr: float = Field(1e-3, gt=0, description="frozen_base: the adaptor's learning rate")
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0)


class TextTrainConfig(_Strict):
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


class TextExperimentConfig(_Strict):
    """Fine-tune a SentenceTransformer with a (Matryoshka) in-batch-negatives loss on query -> document pairs."""

    data: TextDataConfig = TextDataConfig()
    model: TextModelConfig = TextModelConfig()
    optim: TextOptimConfig = TextOptimConfig()
    train: TextTrainConfig = TextTrainConfig()

    def to_dict(self) -> dict[str, Any]:
        """The config as saved with a run: the data section holds only its own source's keys."""
        return {**self.model_dump(), "data": self.data.own_keys()}


TEXT_DATASETS = ("wordnet", "pairs")


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys allowed at ``loc``'s parent (for "did you mean")."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _format_errors(err: ValidationError, model: type[BaseModel], overrides: dict[str, str]) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _fields_at(model, loc), n=1, cutoff=0.6)
            msg = "unknown key" + (f" (did you mean {'.'.join(map(str, (*loc[:-1], close[0])))}?)" if close else "")
        origin = next((o for key, o in overrides.items() if where == key or where.startswith(key + ".")), None)
        lines.append(f"  {where}: {msg}" + (f" (from --set {origin})" if origin else ""))
    return "\n".join(lines)


def parse_config(
    raw: dict[str, Any], source: str = "config", overrides: dict[str, str] | None = None
) -> ExperimentConfig | TextExperimentConfig:
    """An image experiment, or a text one when ``data.name`` is a text data set (``wordnet``, ``pairs``).

    ``overrides`` maps a dotted key to the ``--set`` item that set it, so that an error names the override."""
    data = raw.get("data")
    is_text = isinstance(data, dict) and data.get("name") in TEXT_DATASETS
    model = TextExperimentConfig if is_text else ExperimentConfig
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        overrides = overrides or {}
        only_overrides = all(any(".".join(map(str, err["loc"])).startswith(k) for k in overrides) for err in e.errors())
        where = "--set" if overrides and only_overrides else source
        raise ConfigError(f"invalid {where}:\n{_format_errors(e, model, overrides)}") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig | TextExperimentConfig:
    """Read a YAML config and apply ``section.key=value`` overrides (values parsed as YAML).

    Example::

        from matryoshka import load_config

        config = load_config("configs/digits_quick.yaml", ["train.epochs=2", "model.min_dim=4"])
        print(config.train.epochs, config.model.resolved_nesting())
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping with sections data/model/optim/train")
    origins = {}
    for item in overrides or []:
        apply_override(raw, item)
        origins[item.partition("=")[0].strip()] = item
    return parse_config(raw, str(path), origins)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set ``raw[a][b] = value`` for an override ``a.b=value``."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} must look like section.key=value, e.g. train.epochs=2")
    *parents, leaf = key.strip().split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {p} is not a section")
    node[leaf] = yaml.safe_load(value)
