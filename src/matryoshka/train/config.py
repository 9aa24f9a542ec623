"""Experiment configuration: YAML in, validated pydantic models out. Unknown keys are errors.

The image experiment is defined here, the text one in ``text_config.py`` and the ``data:`` sections of both in
``matryoshka.data.config``; every name stays importable from this module.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from matryoshka.data.config import PAIRS_ONLY, WORDNET_ONLY, DataConfig, TextDataConfig
from matryoshka.data.config import StrictModel as _Strict
from matryoshka.errors import MatryoshkaError
from matryoshka.nesting import nesting_list, small_dim_weights, validate_nesting
from matryoshka.train.text_config import (
    TEXT_DATASETS,
    TEXT_SMALL_DIM_FACTOR,
    TextExperimentConfig,
    TextModelConfig,
    TextOptimConfig,
    TextTrainConfig,
)

__all__ = [
    "MIN_EPOCHS",
    "MIN_STEPS",
    "PAIRS_ONLY",
    "TEXT_DATASETS",
    "TEXT_SMALL_DIM_FACTOR",
    "WORDNET_ONLY",
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "ModelConfig",
    "OptimConfig",
    "TextDataConfig",
    "TextExperimentConfig",
    "TextModelConfig",
    "TextOptimConfig",
    "TextTrainConfig",
    "TrainConfig",
    "apply_override",
    "load_config",
    "parse_config",
]


class ConfigError(MatryoshkaError, ValueError):
    """A configuration file or override that cannot be used; the message names the bad key."""


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
        elif e["type"] == "literal_error":  # a misspelled choice: name the closest one
            choices = re.findall(r"'([^']*)'", str(e.get("ctx", {}).get("expected", "")))
            close = difflib.get_close_matches(str(e.get("input")), choices, n=1, cutoff=0.5)
            msg += f" (did you mean {close[0]}?)" if close else ""
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


def load_config(
    path: str | Path, overrides: list[str] | None = None, data: dict[str, Any] | None = None
) -> ExperimentConfig | TextExperimentConfig:
    """Read a YAML config and apply ``section.key=value`` overrides (values parsed as YAML); ``data``, if given,
    replaces the file's whole data section first (another data set under the same model and training).

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
    if data is not None:
        raw["data"] = dict(data)
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
