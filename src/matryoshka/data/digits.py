"""scikit-learn's digits (1,797 8x8 images, 10 classes): tiny and always available, for quick runs and tests."""

from __future__ import annotations

import torch

from matryoshka.data.base import ImageData, Split, split_train_val
from matryoshka.data.images import Preprocess


def load_digits(val_size: int = 180, test_size: int = 360, seed: int = 0) -> ImageData:
    """Seeded train / val / test split of sklearn's digits; pixels (0..16) standardised with train statistics."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + 1))
    test_idx, rest_idx = perm[:test_size], perm[test_size:]
    train, val = split_train_val(x[rest_idx], y[rest_idx], val_size, seed)
    # The pixels are 0..16; a served 8-bit image is mapped to that range (max_value=16) before standardising.
    preprocess = Preprocess("image", (1, 8, 8), (train.x.mean().item(),), (train.x.std().item(),), max_value=16.0)
    mean, std = preprocess.mean[0], preprocess.std[0]

    def norm(s: Split) -> Split:
        return Split((s.x - mean) / std, s.y)

    test = Split(x[test_idx], y[test_idx])
    return ImageData("digits", norm(train), norm(val), norm(test), [str(i) for i in range(10)], preprocess)
