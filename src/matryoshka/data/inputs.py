"""Raw inputs to encode with a trained model, read with the run's stored preprocessing.

``PATH`` may be a folder of images (searched recursively, rows in sorted path order), one image, a table
(CSV / TSV / JSONL / Parquet: the run's feature columns, or an image column of paths), or a text file (one text per
line, for text models). Inputs come in batches, so a large folder is never held in memory at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from matryoshka.data.errors import CorruptDataError, DataNotFoundError
from matryoshka.data.images import IMAGE_EXTENSIONS, Preprocess
from matryoshka.data.sources import TABLE_BUILDERS, _need_columns, image_error, read_table

TEXT_EXTENSIONS = (".txt",)


@dataclass
class Inputs:
    """What to encode: one name per row (a path, or the row number of a table) and a way to get model inputs."""

    names: list[str]
    kind: str  # "images", "features" or "texts"
    _items: list  # paths, feature rows or texts
    skipped: list[str] = field(default_factory=list)  # "path: why", for files left out by skip_bad

    def __len__(self) -> int:
        return len(self.names)

    def texts(self) -> list[str]:
        return list(self._items)

    def batches(self, preprocess: Preprocess, batch_size: int = 256) -> Iterator[torch.Tensor]:
        """Model-input tensors, ``batch_size`` rows at a time."""
        for start in range(0, len(self), batch_size):
            chunk = self._items[start : start + batch_size]
            if self.kind == "images":
                yield torch.stack([preprocess.load_image(p) for p in chunk])
            else:
                yield preprocess.normalize(torch.as_tensor(np.asarray(chunk), dtype=torch.float32))


def read_inputs(
    path: str | Path, preprocess: Preprocess | None = None, image_column: str | None = None, skip_bad: bool = False
) -> Inputs:
    """Find what ``path`` holds; ``preprocess`` (the run's) says which columns a table must have.

    A folder's files are checked as training checks them: a file that is not an image, or an image that cannot be
    read, is an error naming it, or, with ``skip_bad``, is left out and listed in ``Inputs.skipped``."""
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(f"{path} does not exist")
    if path.is_dir():
        return _image_folder(path, skip_bad)
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return Inputs([str(path)], "images", [str(path)])
    if suffix in TEXT_EXTENSIONS:
        lines = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines()]
        texts = [t for t in lines if t.strip()]
        if not texts:
            raise CorruptDataError(f"{path} holds no text lines")
        return Inputs([str(i) for i in range(len(texts))], "texts", texts)
    if suffix in TABLE_BUILDERS:
        table = read_table(path)
        if image_column:
            _need_columns(table, [image_column], path)
            paths = [str(path.parent / p) if not Path(p).is_absolute() else p for p in table[image_column]]
            return Inputs(paths, "images", paths)
        if preprocess is None or preprocess.kind != "features":
            raise CorruptDataError(f"{path}: a table of features needs a model trained on feature columns")
        columns = list(preprocess.columns)
        _need_columns(table, columns, path)
        rows = np.stack([np.asarray(table[c], dtype=np.float64) for c in columns], axis=1)
        if not np.isfinite(rows).all():
            row = int(np.argwhere(~np.isfinite(rows))[0][0])
            raise CorruptDataError(f"{path}: row {row + 1} has a NaN, infinite or empty feature")
        return Inputs([str(i) for i in range(len(rows))], "features", list(rows))
    raise CorruptDataError(
        f"{path}: cannot encode {suffix or 'a file without extension'}; give a folder of images, an image "
        f"({', '.join(IMAGE_EXTENSIONS)}), a table ({', '.join(TABLE_BUILDERS)}) or a text file (.txt)"
    )


def _image_folder(path: Path, skip_bad: bool) -> Inputs:
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    good, bad = [], []
    for p in files:
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            bad.append(f"{p}: not an image ({p.suffix or 'no extension'}; images are {', '.join(IMAGE_EXTENSIONS)})")
        elif (error := image_error(p)) is not None:
            bad.append(f"{p}: cannot read image ({error})")
        else:
            good.append(str(p))
    if bad and not skip_bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise CorruptDataError(f"{bad[0]}{more}; remove it, or pass --skip-bad to encode the other files")
    if not good:
        raise CorruptDataError(f"{path} holds no readable images ({', '.join(IMAGE_EXTENSIONS)})")
    return Inputs(good, "images", good, skipped=bad)
