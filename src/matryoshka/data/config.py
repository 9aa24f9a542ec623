"""What data a run reads: the ``data:`` section of an image config and of a text config (validated, strict).

They sit with the data sources, below training, so that a finished run's data can be read again (``TrainedRun.
training_data``) without the trainer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(StrictModel):
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


WORDNET_ONLY = ("root", "val_size", "test_size", "query_style")
PAIRS_ONLY = ("path", "query_column", "document_column", "negative_column", "val_fraction", "test_fraction")


class TextDataConfig(StrictModel):
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
