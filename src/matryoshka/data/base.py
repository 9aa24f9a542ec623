"""The common shape of every image data set: in-memory tensors split into train / val / test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from matryoshka.errors import InputError, MatryoshkaError


class DataNotFoundError(MatryoshkaError, FileNotFoundError):
    """A data set's files are missing; the message says which package provides them."""


class CorruptDataError(MatryoshkaError, ValueError):
    """A data file exists but cannot be parsed."""


@dataclass
class Split:
    x: torch.Tensor  # float32, (N, C, H, W), normalised
    y: torch.Tensor  # int64, (N,)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, n: int | None, seed: int = 0) -> Split:
        """A seeded random subset of ``n`` examples (the whole split when n is None or too large)."""
        if n is None or n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return Split(self.x[idx], self.y[idx])


class ImageFileSplit:
    """A split read from image files on demand (through a DataLoader with workers), not held in memory.

    ``x`` decodes the whole split once and caches it: used for validation and evaluation, where sets are smaller.
    """

    def __init__(self, paths: list[str], y: torch.Tensor, preprocess: Any, workers: int = 0) -> None:
        self.paths = list(paths)
        self.y = y
        self.preprocess = preprocess
        self.workers = workers
        self._x: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.preprocess.load_image(self.paths[i]), self.y[i]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch of raw uint8 pixels (4x less to pass between processes than floats); normalised later."""
        from matryoshka.data.images import decode_image

        channels, height, width = self.preprocess.shape
        pixels = torch.stack([decode_image(self.paths[i], channels, (height, width)) for i in indices])
        return pixels, self.y[indices]

    def subset(self, n: int | None, seed: int = 0) -> ImageFileSplit:
        if n is None or n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return ImageFileSplit([self.paths[i] for i in idx.tolist()], self.y[idx], self.preprocess, self.workers)

    def batches(self, rows: torch.Tensor | list[list[int]]) -> Any:
        """(x, y) batches for the given rows of example indices, decoded in ``workers`` processes."""
        from torch.utils.data import DataLoader

        rows = rows.tolist() if isinstance(rows, torch.Tensor) else rows
        loader = DataLoader(
            self,
            batch_sampler=rows,
            num_workers=self.workers,
            collate_fn=_as_batch,
            worker_init_fn=_one_thread,
            prefetch_factor=4 if self.workers else None,
        )
        for pixels, y in loader:
            yield self.preprocess.normalize(pixels), y

    @property
    def x(self) -> torch.Tensor:
        if self._x is None:
            if len(self) == 0:
                self._x = torch.empty(0, *self.preprocess.shape)
            else:
                rows = [list(range(s, min(s + 256, len(self)))) for s in range(0, len(self), 256)]
                self._x = torch.cat([x for x, _ in self.batches(rows)])
        return self._x


def _as_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch  # __getitems__ already stacked it


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # a decoding worker needs no intra-op threads; the training process uses them


@dataclass
class ImageData:
    name: str
    train: Split | ImageFileSplit
    val: Split | ImageFileSplit
    test: Split | ImageFileSplit
    class_names: list[str]
    preprocess: Any = None  # a data.images.Preprocess: how raw inputs become model inputs

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.preprocess is not None:
            return tuple(self.preprocess.shape)
        return tuple(self.train.x.shape[1:])


def split_train_val(x: torch.Tensor, y: torch.Tensor, val_size: int, seed: int) -> tuple[Split, Split]:
    """Seeded split of a training set into train and validation parts."""
    if not 0 <= val_size < len(y):
        raise InputError(f"val_size must be in [0, {len(y)}), got {val_size}")
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:val_size], perm[val_size:]
    return Split(x[train_idx], y[train_idx]), Split(x[val_idx], y[val_idx])
