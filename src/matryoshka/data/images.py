"""Image preprocessing in torch and PIL only (torchvision is not required): decode, convert, resize, normalise,
and a light batched augmentation (random resized crop + horizontal flip).

The :class:`Preprocess` record is stored in every run folder, so ``mrl encode`` and ``mrl serve`` turn a raw PNG or
JPEG into exactly the tensor the model was trained on.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from matryoshka.data.errors import CorruptDataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
BACKGROUNDS = ("white", "black", "mean")
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class Preprocess:
    """How raw inputs become model inputs.

    Images: decoded, composited onto ``background`` where they have transparency (an RGB colour; ``None``, in runs
    saved before backgrounds existed, drops the alpha channel), converted to ``channels`` (1 = grey, 3 = RGB),
    resized to ``height`` x ``width``, pixels mapped to ``[0, max_value]`` and standardised per channel with
    ``mean`` / ``std`` (training-set statistics).
    Feature vectors (``kind="features"``): standardised per column with ``mean`` / ``std``.
    """

    kind: str  # "image" or "features"
    shape: tuple[int, ...]  # model input shape: (C, H, W) for images, (F,) for features
    mean: tuple[float, ...]
    std: tuple[float, ...]
    max_value: float = 1.0
    columns: tuple[str, ...] = ()  # feature columns, in order
    background: tuple[int, int, int] | None = WHITE  # what transparent pixels show

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        return cls(
            kind=d["kind"],
            shape=tuple(d["shape"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            max_value=float(d.get("max_value", 1.0)),
            columns=tuple(d.get("columns", ())),
            # Runs saved before backgrounds existed dropped the alpha channel: keep decoding them that way.
            background=tuple(d["background"]) if d.get("background") is not None else None,
        )

    def normalize(self, raw: torch.Tensor) -> torch.Tensor:
        """uint8 pixels (N, C, H, W) or raw features (N, F) -> standardised float32 model inputs."""
        shape = (1, -1, 1, 1) if self.kind == "image" else (1, -1)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(shape)
        std = torch.tensor(self.std, dtype=torch.float32).view(shape)
        x = raw.float() / (255.0 / self.max_value) if self.kind == "image" else raw.float()
        return (x - mean) / std

    def load_image(self, source: str | Path | bytes, name: str | None = None) -> torch.Tensor:
        """One raw image (a path or encoded bytes) -> a (C, H, W) float model input."""
        channels, height, width = self.shape
        pixels = decode_image(source, channels, (height, width), name, self.background)
        return self.normalize(pixels.unsqueeze(0))[0]

    def decode(self, source: str | Path | bytes, name: str | None = None) -> torch.Tensor:
        """One raw image -> uint8 (C, H, W) pixels, as the run was trained on (before ``normalize``)."""
        return decode_image(source, self.shape[0], (self.shape[1], self.shape[2]), name, self.background)


def decode_image(
    source: str | Path | bytes,
    channels: int,
    size: tuple[int, int],
    name: str | None = None,
    background: tuple[int, int, int] | None = WHITE,
) -> torch.Tensor:
    """Decode a PNG/JPEG/BMP/WebP (path or bytes) to uint8 (C, H, W), resized.

    Images with transparency (RGBA, LA, PA, or a palette with a transparent colour) are composited onto
    ``background``: a symbolic icon drawn only in its alpha channel would otherwise decode to one flat colour.
    ``background=None`` drops the alpha channel instead (how runs saved before this option were trained).
    """
    from PIL import Image, UnidentifiedImageError

    label = name or (str(source) if not isinstance(source, bytes) else "image bytes")
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            img.load()
            if has_alpha(img):
                rgba = img.convert("RGBA")
                if background is None:
                    img = rgba.convert("RGB")
                else:
                    img = Image.alpha_composite(Image.new("RGBA", rgba.size, (*background, 255)), rgba).convert("RGB")
            elif img.mode not in ("L", "RGB"):
                img = img.convert("RGB")
            img = img.convert("L" if channels == 1 else "RGB")
            if img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except UnidentifiedImageError:  # PIL's message names the bytes by their BytesIO object's repr
        raise CorruptDataError(f"cannot read image {label}: not an image file (PNG, JPEG, BMP, WebP, ...)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise CorruptDataError(f"cannot read image {label}: {e}") from None
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


def has_alpha(img: Any) -> bool:
    """Whether a PIL image carries transparency: an alpha band, or a palette / grey colour marked transparent."""
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def resolve_background(name: str, samples: list[str | Path] | None = None) -> tuple[int, int, int]:
    """The RGB colour of ``data.background``: white, black, or ``mean``, the mean colour of the visible pixels of
    ``samples`` (training images; alpha-weighted), so that transparent areas look like average content."""
    if name == "white":
        return WHITE
    if name == "black":
        return (0, 0, 0)
    if name != "mean":
        raise ValueError(f"unknown background {name!r}; choose one of {', '.join(BACKGROUNDS)}")
    from PIL import Image

    total, weight = np.zeros(3), 0.0
    for path in samples or []:
        try:
            with Image.open(path) as img:
                rgba = np.asarray(img.convert("RGBA"), dtype=np.float64)
        except (OSError, SyntaxError, ValueError) as e:
            raise CorruptDataError(f"cannot read image {path}: {e}") from None
        alpha = rgba[..., 3:] / 255.0
        total += (rgba[..., :3] * alpha).sum(axis=(0, 1))
        weight += float(alpha.sum())
    if weight == 0:
        return WHITE
    r, g, b = (round(v) for v in total / weight)
    return (r, g, b)


def channel_stats(pixels: torch.Tensor, max_value: float = 1.0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W) after mapping pixels to [0, max_value]."""
    x = pixels.float() / (255.0 / max_value)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return tuple(mean.tolist()), tuple(std.tolist())


def augment_batch(
    x: torch.Tensor, generator: torch.Generator, scale: tuple[float, float] = (0.6, 1.0), flip: bool = True
) -> torch.Tensor:
    """Random resized crop (area fraction in ``scale``, aspect ratio 3/4..4/3) and horizontal flip, per image, in
    one batched ``grid_sample`` call (the output keeps the input size)."""
    n = x.shape[0]
    area = torch.empty(n).uniform_(scale[0], scale[1], generator=generator)
    log_ratio = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3), generator=generator)
    ratio = log_ratio.exp()
    sx = (area * ratio).sqrt().clamp(max=1.0)
    sy = (area / ratio).sqrt().clamp(max=1.0)
    tx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - sx)
    ty = (torch.rand(n, generator=generator) * 2 - 1) * (1 - sy)
    if flip:
        sx = sx * torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, tx, sy, ty
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
