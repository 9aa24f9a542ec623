"""A split of image files, decoded on demand: in DataLoader worker processes, or once into a memory-mapped cache.

With a cache folder, the first pass decodes every image (in ``workers`` processes) into one uint8 array
``N x C x H x W`` on disk, keyed by the files' paths, sizes and modification times and the preprocessing; later
epochs, runs and evaluations read that map (the operating system pages it in; nothing is held in Python memory).
Without a cache, every epoch decodes the files again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from matryoshka.io import FILE_MODE, fsync_file

DEFAULT_CACHE = Path(os.environ.get("MATRYOSHKA_CACHE", Path.home() / ".cache" / "matryoshka")) / "decoded"


class ImageFileSplit:
    """Image files and their labels; ``batches(rows)`` yields normalised (x, y) batches, ``x`` the whole split."""

    def __init__(
        self,
        paths: list[str],
        y: torch.Tensor,
        preprocess: Any,
        workers: int = 0,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.paths = list(paths)
        self.y = y
        self.preprocess = preprocess
        self.workers = workers
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._pixels: np.ndarray | None = None
        self._loader: Any = None
        self._rows: _Rows | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Worker processes get the file list, not the loader that started them.
        return {**self.__dict__, "_loader": None, "_rows": None, "_pixels": None}

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.preprocess.load_image(self.paths[i]), self.y[i]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch of raw uint8 pixels (4x less to pass between processes than floats); normalised later."""
        pixels = torch.stack([self.preprocess.decode(self.paths[i]) for i in indices])
        return pixels, self.y[indices]

    def subset(self, n: int | None, seed: int = 0) -> ImageFileSplit:
        if n is None or n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        paths = [self.paths[i] for i in idx.tolist()]
        return ImageFileSplit(paths, self.y[idx], self.preprocess, self.workers, self.cache_dir)

    # -- reading --------------------------------------------------------------------------------------------
    def _decoded(self, rows: list[list[int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from torch.utils.data import DataLoader

        # One loader whose workers live across epochs (starting them costs ~0.3 s); each call swaps in new rows.
        if self._loader is None:
            self._rows = _Rows()
            self._loader = DataLoader(
                self,
                batch_sampler=self._rows,
                num_workers=self.workers,
                collate_fn=_as_batch,
                worker_init_fn=_one_thread,
                prefetch_factor=4 if self.workers else None,
                persistent_workers=self.workers > 0,
            )
        self._rows.rows = rows
        yield from self._loader

    def batches(self, rows: torch.Tensor | list[list[int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised (x, y) batches for the given rows of example indices."""
        rows = rows.tolist() if isinstance(rows, torch.Tensor) else rows
        pixels = self.cached_pixels()
        if pixels is not None:
            for idx in rows:
                yield self.preprocess.normalize(torch.from_numpy(pixels[np.asarray(idx)])), self.y[idx]
            return
        for raw, y in self._decoded(rows):
            yield self.preprocess.normalize(raw), y

    @property
    def x(self) -> torch.Tensor:
        """The whole split as model inputs (decoded once; used for validation and evaluation)."""
        pixels = self.cached_pixels()
        if pixels is not None:
            return self.preprocess.normalize(torch.from_numpy(np.array(pixels)))
        if len(self) == 0:
            return torch.empty(0, *self.preprocess.shape)
        return torch.cat([x for x, _ in self.batches(self._all_rows())])

    def _all_rows(self, size: int = 256) -> list[list[int]]:
        return [list(range(s, min(s + size, len(self)))) for s in range(0, len(self), size)]

    # -- the decoded cache ----------------------------------------------------------------------------------
    def cache_key(self) -> str:
        h = hashlib.sha256(repr((tuple(self.preprocess.shape), self.preprocess.background, "v1")).encode())
        for p in self.paths:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:32]

    def cached_pixels(self) -> np.ndarray | None:
        """The memory-mapped uint8 pixels of the split (decoded on first use), or None without a cache folder."""
        if self.cache_dir is None or len(self) == 0:
            return None
        if self._pixels is None:
            file = self.cache_dir / f"{self.cache_key()}.npy"
            if not file.exists():
                self._write_cache(file)
            self._pixels = np.load(file, mmap_mode="r")
        return self._pixels

    def _write_cache(self, file: Path) -> None:
        from rich.progress import Progress

        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(self), *self.preprocess.shape))
            with Progress(transient=True, disable=len(self) < 5000) as bar:
                task = bar.add_task(f"decoding {len(self)} images once into {file.parent}", total=len(self))
                for idx, (raw, _) in zip(self._all_rows(), self._decoded(self._all_rows()), strict=True):
                    out[idx[0] : idx[-1] + 1] = raw.numpy()
                    bar.advance(task, len(idx))
            out.flush()
            del out
            os.chmod(tmp, FILE_MODE)
            fsync_file(tmp)
            os.replace(tmp, file)  # whole or not at all: a killed decode leaves no half cache behind
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


class _Rows:
    """A batch sampler whose rows are replaced before each pass (sampled in the main process)."""

    def __init__(self) -> None:
        self.rows: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def _as_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch  # __getitems__ already stacked it


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # a decoding worker needs no intra-op threads; the training process uses them
