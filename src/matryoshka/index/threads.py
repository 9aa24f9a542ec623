"""How many threads a search may use: one for small batches, all of them for large ones.

A parallel region (OpenMP in FAISS, pthreads in BLAS) is a barrier: it ends when its slowest thread ends. On a
machine where another process is busy, one of those threads waits for a core for a whole scheduler time slice,
and a 0.15 ms single-query search takes 8 ms (measured with ``mrl bench threads``). Small batches therefore run on
the calling thread alone; in a server the request threads are the concurrency. Large batches have enough work
per thread to pay for the wait and keep every core.

The cut-over (:data:`PARALLEL_MIN_BATCH`) comes from ``mrl bench threads``, which times both ways per batch size,
idle and beside a busy process. ``omp_set_num_threads`` sets the calling thread's own OpenMP setting, so
concurrent searches on other threads are not affected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import faiss

# Batches of at least this many queries run FAISS's parallel loops. Beside one busy process on 2 cores, batches
# below 256 lost more (p99 3-7x, mean up to 1.5x) than they gained idle (2x), see `mrl bench threads`.
PARALLEL_MIN_BATCH = 256


def is_small(batch: int) -> bool:
    """Whether a batch of ``batch`` queries runs single-threaded."""
    return batch < PARALLEL_MIN_BATCH


@contextlib.contextmanager
def search_threads(batch: int) -> Iterator[None]:
    """Run the block with one OpenMP thread when ``batch`` is small (see :data:`PARALLEL_MIN_BATCH`)."""
    if not is_small(batch):
        yield
        return
    before = faiss.omp_get_max_threads()
    if before == 1:
        yield
        return
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
