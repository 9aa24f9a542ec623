"""The user's own data, read through Hugging Face ``datasets`` from local paths (works offline).

* ``imagefolder``: ``DIR/<class>/*.png`` (or ``DIR/{train,val,test}/<class>/...``); images are decoded on demand
  in DataLoader workers, converted to ``channels`` and resized to ``image_size``.
* ``table``: a CSV, JSON Lines or Parquet file with a label column and either feature columns (numbers) or an image
  column (file paths, relative to the table's folder).

Both map string labels to ids (sorted names) and standardise with training-set statistics; the resulting
:class:`~matryoshka.data.images.Preprocess` is stored in the run folder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from matryoshka.data.base import ImageData, Split
from matryoshka.data.errors import CorruptDataError, DataNotFoundError
from matryoshka.data.files import ImageFileSplit
from matryoshka.data.images import IMAGE_EXTENSIONS, Preprocess, channel_stats, decode_image, resolve_background

STATS_SAMPLE = 2000  # training images read to estimate the per-channel mean and std
TABLE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
_SPLIT_NAMES = {"train": "train", "validation": "val", "test": "test"}


def _hf():
    import datasets

    datasets.disable_progress_bars()  # reading a local folder takes a moment; its per-file bars are noise
    datasets.logging.set_verbosity_error()
    return datasets


def _seeded_splits(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    n_test = round(n * test_fraction)
    n_val = round(n * val_fraction)
    if n - n_test - n_val < 1:
        raise CorruptDataError(f"{n} examples leave none for training after val/test fractions")
    return {"test": perm[:n_test], "val": perm[n_test : n_test + n_val], "train": perm[n_test + n_val :]}


def _label_ids(values: Sequence[Any], where: str) -> tuple[np.ndarray, list[str]]:
    """Map labels (strings or numbers) to ids 0..K-1 in sorted order of their names; at least two classes."""
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        raise CorruptDataError(f"{where}: the label column has empty values")
    names = sorted({str(v) for v in values}, key=lambda s: (len(s), s) if s.lstrip("-").isdigit() else (1 << 30, s))
    if len(names) < 2:
        raise CorruptDataError(f"{where}: only one class ({names[0] if names else 'none'}); at least two are needed")
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[str(v)] for v in values], dtype=np.int64), names


# -- image folders --------------------------------------------------------------------------------------------
def _check_image_folder(root: Path) -> None:
    if not root.is_dir():
        raise DataNotFoundError(f"image folder {root} does not exist")
    files = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not images:
        raise CorruptDataError(f"{root} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    others = [p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS]
    if others:
        raise CorruptDataError(
            f"{others[0]}: unsupported file type {others[0].suffix or '(none)'}; "
            f"an image folder holds only {', '.join(IMAGE_EXTENSIONS)} files ({len(others)} other file(s))"
        )
    split_dirs = {"train", "val", "valid", "validation", "test", "dev"}
    class_roots = [d for d in root.iterdir() if d.is_dir() and d.name in split_dirs] or [root]
    for parent in class_roots:
        classes = [d for d in parent.iterdir() if d.is_dir() and not d.name.startswith(".")]
        if len(classes) < 2:
            found = f"only one class ({classes[0].name})" if classes else "no class sub-folders"
            raise CorruptDataError(f"{parent}: {found}; expected at least two folders {parent}/<class>/<image>")
        for d in classes:
            if not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in d.rglob("*") if p.is_file()):
                raise CorruptDataError(f"class folder {d} holds no images")
    _verify_images(images)


def _verify_images(files: list[Path]) -> None:
    """Read every image's header and checksums (no decoding), so a corrupt file stops the run before training."""
    for path in files:
        error = image_error(path)
        if error is not None:
            raise CorruptDataError(f"cannot read image {path}: {error}")


def image_error(path: Path) -> str | None:
    """Why PIL cannot read the image file ``path`` (header and checksums, no decoding), or None when it can."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
    except Exception as e:  # PIL raises many types for broken files
        return str(e)
    return None


def load_image_folder(
    path: str,
    image_size: int = 32,
    channels: int = 3,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    workers: int = 0,
    cache_dir: str | Path | None = None,
    background: str = "white",
) -> ImageData:
    """Class sub-folders of ``path`` (with ``train/``, ``val/``, ``test/`` when present, else a seeded split)."""
    root = Path(path)
    _check_image_folder(root)
    datasets = _hf()
    dd = datasets.load_dataset("imagefolder", data_dir=str(root))
    label_feature = dd["train"].features.get("label")
    if label_feature is None:
        raise CorruptDataError(f"{root}: no class sub-folders found (expected {root}/<class>/<image>)")
    names = list(label_feature.names)
    if len(names) < 2:
        raise CorruptDataError(f"{root}: only one class ({names[0]}); at least two class folders are needed")
    parts: dict[str, tuple[list[str], np.ndarray]] = {}
    for split, ds in dd.items():
        ds = ds.cast_column("image", datasets.Image(decode=False))
        parts[_SPLIT_NAMES.get(split, split)] = ([im["path"] for im in ds["image"]], np.asarray(ds["label"]))
    if set(parts) == {"train"}:
        files, labels = parts["train"]
        order = _seeded_splits(len(files), val_fraction, test_fraction, seed)
        parts = {k: ([files[i] for i in idx], labels[idx]) for k, idx in order.items()}
    elif "val" not in parts:
        files, labels = parts["train"]
        order = _seeded_splits(len(files), val_fraction, 0.0, seed)
        parts["train"] = ([files[i] for i in order["train"]], labels[order["train"]])
        parts["val"] = ([files[i] for i in order["val"]], labels[order["val"]])
    parts.setdefault("test", ([], np.zeros(0, dtype=np.int64)))

    train_files = parts["train"][0]
    sample = torch.randperm(len(train_files), generator=torch.Generator().manual_seed(seed))[:STATS_SAMPLE]
    preprocess = _image_preprocess([train_files[i] for i in sample.tolist()], channels, image_size, background)

    def split(name: str) -> ImageFileSplit:
        files, labels = parts[name]
        return ImageFileSplit(files, torch.as_tensor(labels, dtype=torch.int64), preprocess, workers, cache_dir)

    return ImageData("imagefolder", split("train"), split("val"), split("test"), names, preprocess)


def _image_preprocess(sample: list[str], channels: int, image_size: int, background: str) -> Preprocess:
    """The run's image preprocessing: the background colour and per-channel statistics of a training sample."""
    colour = resolve_background(background, sample)
    shape = (channels, image_size, image_size)
    pixels = torch.stack([decode_image(p, channels, shape[1:], background=colour) for p in sample])
    mean, std = channel_stats(pixels)
    return Preprocess("image", shape, mean, std, background=colour)


# -- tables ---------------------------------------------------------------------------------------------------
def read_table(path: str | Path) -> Any:
    """A local CSV / TSV / JSON Lines / Parquet file as a Hugging Face ``Dataset``."""
    file = Path(path)
    if not file.is_file():
        raise DataNotFoundError(f"table {file} does not exist")
    builder = TABLE_BUILDERS.get(file.suffix.lower())
    if builder is None:
        raise CorruptDataError(f"{file}: unsupported table format {file.suffix!r}; use {', '.join(TABLE_BUILDERS)}")
    kwargs = {"delimiter": "\t"} if file.suffix.lower() == ".tsv" else {}
    try:
        return _hf().load_dataset(builder, data_files=str(file), split="train", **kwargs)
    except Exception as e:  # the builders raise many types (ArrowInvalid, DatasetGenerationError, ...)
        raise CorruptDataError(f"cannot read table {file}: {e}") from None


def _need_columns(table: Any, columns: Sequence[str], file: Path) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise CorruptDataError(f"{file}: no column {missing[0]!r} (columns: {', '.join(table.column_names)})")


def load_table(
    path: str,
    label_column: str = "label",
    feature_columns: list[str] | None = None,
    image_column: str | None = None,
    image_size: int = 32,
    channels: int = 3,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    workers: int = 0,
    cache_dir: str | Path | None = None,
    background: str = "white",
) -> ImageData:
    """Rows of a table: features (the named numeric columns, or all but the label) or an image column of paths."""
    file = Path(path)
    table = read_table(file)
    _need_columns(table, [label_column] + ([image_column] if image_column else list(feature_columns or [])), file)
    if len(table) == 0:
        raise CorruptDataError(f"{file} has no rows")
    labels, names = _label_ids(table[label_column], f"{file} column {label_column!r}")
    order = _seeded_splits(len(table), val_fraction, test_fraction, seed)
    if image_column:
        paths = [str(file.parent / p) if not Path(p).is_absolute() else p for p in table[image_column]]
        sample = [paths[i] for i in order["train"][:STATS_SAMPLE]]
        preprocess = _image_preprocess(sample, channels, image_size, background)

        def image_split(idx: np.ndarray) -> ImageFileSplit:
            y = torch.as_tensor(labels[idx])
            return ImageFileSplit([paths[i] for i in idx], y, preprocess, workers, cache_dir)

        splits = [image_split(order[k]) for k in ("train", "val", "test")]
        return ImageData("table", *splits, names, preprocess)

    columns = list(feature_columns or [c for c in table.column_names if c != label_column])
    try:
        x = np.stack([np.asarray(table[c], dtype=np.float64) for c in columns], axis=1)
    except (TypeError, ValueError) as e:
        raise CorruptDataError(f"{file}: feature columns must be numbers ({e})") from None
    bad = np.argwhere(~np.isfinite(x))
    if len(bad):
        row, col = bad[0]
        raise CorruptDataError(
            f"{file}: row {row + 2 if file.suffix == '.csv' else row + 1}, column {columns[col]!r}: "
            "NaN, infinite or empty value"
        )
    train = x[order["train"]]
    mean, std = train.mean(0), np.maximum(train.std(0), 1e-6)
    preprocess = Preprocess(
        "features", (len(columns),), tuple(mean.tolist()), tuple(std.tolist()), columns=tuple(columns)
    )
    xt = preprocess.normalize(torch.as_tensor(x, dtype=torch.float32))

    def feature_split(idx: np.ndarray) -> Split:
        return Split(xt[idx], torch.as_tensor(labels[idx]))

    return ImageData("table", *(feature_split(order[k]) for k in ("train", "val", "test")), names, preprocess)
