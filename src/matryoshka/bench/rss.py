"""Resident memory of a saved index, measured as a user would meet it: a fresh process opens it, and the growth of
its anonymous resident memory (``RssAnon`` in ``/proc/self/status``) is the index's RAM. Pages of memory-mapped
files (the page cache) are not counted: they are reported apart, as file bytes.

    python -m matryoshka.bench.rss KIND PATH        # prints {"rss_bytes": ...}

KIND: ours, ours-mmap, ours-disk, faiss, faiss-mmap, hnswlib, usearch, scann, diskann.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from matryoshka.io import return_freed_memory


def rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


def opener(kind: str, path: str):
    """A function that opens the index, with its library already imported (imports are not the index's RAM)."""
    if kind in ("ours", "ours-mmap", "ours-disk"):
        from matryoshka.index import MatryoshkaIndex

        return lambda: MatryoshkaIndex.load(path, full_vectors={"ours": "ram"}.get(kind, kind[5:]))
    if kind in ("faiss", "faiss-mmap"):
        import faiss

        return lambda: faiss.read_index(path, faiss.IO_FLAG_MMAP if kind == "faiss-mmap" else 0)
    if kind == "hnswlib":
        import hnswlib

        def load():
            index = hnswlib.Index(space="ip", dim=0)
            index.load_index(path)
            return index

        return load
    if kind == "usearch":
        from usearch.index import Index

        return lambda: Index.restore(path)
    if kind == "diskann":
        from matryoshka.bench.peers import open_diskann

        return lambda: open_diskann(Path(path))
    if kind == "scann":
        import scann

        return lambda: scann.scann_ops_pybind.load_searcher(path)
    raise ValueError(f"unknown index kind {kind!r}")


def measure(kind: str, path: Path) -> int:
    """RssAnon growth of a fresh Python process that opens ``path``, in bytes."""
    out = subprocess.run(
        [sys.executable, "-m", "matryoshka.bench.rss", kind, str(path)], capture_output=True, text=True, check=False
    )
    if out.returncode:
        raise RuntimeError(f"measuring the RAM of {path} failed: {out.stderr.strip().splitlines()[-1:]}")
    return int(json.loads(out.stdout.strip().splitlines()[-1])["rss_bytes"])


def file_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


if __name__ == "__main__":
    load = opener(sys.argv[1], sys.argv[2])
    # The heap freed so far goes back first: our load returns freed pages to the system, and without this its
    # growth would be measured net of what the imports had freed (below zero for a small index).
    return_freed_memory()
    before = rss_anon()
    index = load()
    print(json.dumps({"rss_bytes": rss_anon() - before}))
