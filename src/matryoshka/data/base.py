"""The common shape of every image data set: train / val / test splits (in-memory tensors or image files)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from matryoshka.errors import InputError

if TYPE_CHECKING:
    from matryoshka.data.files import ImageFileSplit


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
