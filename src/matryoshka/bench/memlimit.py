"""A corpus that does not fit: search each index inside a memory limit it must live under, as a process in a cgroup
(v1 memory controller, as root) whose limit is below what faiss HNSW-f32 of the same corpus needs. A process past
its limit is killed by the kernel (exit 137); the page cache it fills is charged to it too.

    mrl bench memlimit --embeddings z.npy          # or --synthetic 512 --size 300000
    python -m matryoshka.bench.memlimit KIND PATH QUERIES.npy    # the child: opens, searches, prints JSON

The child opens the saved index (``ours-disk``: full-dim rows read per query with direct I/O, only the prefix
structures in RAM; ``faiss``: the whole HNSW graph and its vectors) and times single queries; the parent reports
for each whether it ran, its batch-1 p50, its recall@10 against exact search, and the cgroup's peak memory.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from matryoshka.index.storage import normalize

CGROUP_ROOT = Path("/sys/fs/cgroup/memory")
KILLED = (137, -9)  # the exit status of a process the kernel's OOM killer ended
_names = itertools.count()


def unavailable() -> str | None:
    """Why a memory cgroup cannot be made here, or None."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return "memory limits need Linux and root (a cgroup v1 memory controller)"
    if not (CGROUP_ROOT / "memory.limit_in_bytes").exists():
        return f"no cgroup v1 memory controller at {CGROUP_ROOT}"
    try:
        with memory_cgroup(1 << 30):
            pass
    except OSError as e:
        return f"cannot make a memory cgroup under {CGROUP_ROOT}: {e}"
    return None


@contextlib.contextmanager
def memory_cgroup(limit_bytes: int) -> Iterator[Path]:
    """A fresh memory cgroup limited to ``limit_bytes`` (swap included where the kernel accounts it), removed after
    the block once its processes have ended."""
    folder = CGROUP_ROOT / f"mrl-bench-{os.getpid()}-{next(_names)}"
    folder.mkdir()
    try:
        (folder / "memory.limit_in_bytes").write_text(str(int(limit_bytes)))
        swap = folder / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(str(int(limit_bytes)))
        yield folder
    finally:
        for _ in range(50):  # the kernel lets a cgroup go only once its last task has left
            try:
                folder.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def run_limited(kind: str, path: Path, queries: Path, limit_bytes: int, timeout: float = 900) -> dict:
    """Run the child for ``kind`` / ``path`` inside ``limit_bytes``: ran, killed, p50_ms, ids, peak_bytes."""
    with memory_cgroup(limit_bytes) as folder:
        tasks = folder / "cgroup.procs"
        child = [sys.executable, "-m", "matryoshka.bench.memlimit", kind, str(path), str(queries)]
        done = subprocess.run(
            child,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            preexec_fn=lambda: tasks.write_text(str(os.getpid())),  # the child joins the cgroup before it execs
        )
        peak = int((folder / "memory.max_usage_in_bytes").read_text())
    if done.returncode in KILLED:
        return {"ran": False, "killed": True, "peak_bytes": peak}
    if done.returncode:
        lines = done.stderr.strip().splitlines() or ["no output"]
        return {"ran": False, "killed": False, "error": lines[-1], "peak_bytes": peak}
    return {"ran": True, "killed": False, **json.loads(done.stdout), "peak_bytes": peak}


def child(kind: str, path: str, queries_file: str, k: int = 10) -> dict:
    """Open the index, then search every query alone: the median milliseconds and the ids found."""
    import faiss

    from matryoshka.bench.rss import opener

    faiss.omp_set_num_threads(1)  # single queries on the calling thread, as ours runs them (threads.py)
    index = opener(kind, path)()
    q = normalize(np.load(queries_file).astype(np.float32))
    times, ids = [], []
    for i in range(len(q)):
        t0 = time.perf_counter()
        ids.append(index.search(q[i : i + 1], k)[1][0])
        times.append(time.perf_counter() - t0)
    return {"p50_ms": 1000 * float(np.median(times)), "ids": np.asarray(ids).tolist()}


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], sys.argv[2], sys.argv[3])))


def limits_table(x: np.ndarray, q: np.ndarray, paths: dict[str, tuple[str, Path]], folder: Path) -> dict:
    """Each index's peak memory with no limit, then all of them under one limit: halfway between the smallest peak
    and the largest index's own RAM (the anonymous memory opening it takes; a peak also counts the page cache,
    which the kernel reclaims under a limit). Which run, how fast, with what recall@10 against exact search."""
    import faiss

    from matryoshka.bench.rss import measure
    from matryoshka.evaluate.ranking import recall_against

    np.save(folder / "queries.npy", q)
    truth = faiss.knn(normalize(q), normalize(x), 10, metric=faiss.METRIC_INNER_PRODUCT)[1]
    free = {name: run_limited(kind, path, folder / "queries.npy", 1 << 40) for name, (kind, path) in paths.items()}
    needs = {name: measure(kind, path) for name, (kind, path) in paths.items()}
    limit = (min(r["peak_bytes"] for r in free.values()) + max(needs.values())) // 2
    limited = {name: run_limited(kind, path, folder / "queries.npy", limit) for name, (kind, path) in paths.items()}
    print(f"\nunder a memory limit of {limit / 2**20:.0f} MiB (cgroup v1):")
    rows = {}
    for name, r in limited.items():
        row = {"peak_free_mib": free[name]["peak_bytes"] / 2**20, "ram_mib": needs[name] / 2**20}
        row |= {"ran": r["ran"], "killed": r["killed"]}
        if r["ran"]:
            row |= {"p50_ms": r["p50_ms"], "recall@10": recall_against(np.asarray(r["ids"]), truth), "ids": r["ids"]}
        rows[name] = row
        state = f"ran: p50 {row['p50_ms']:.3f} ms, recall@10 {row['recall@10']:.4f}" if r["ran"] else "killed (137)"
        state = state if r["ran"] or r["killed"] else f"failed: {r.get('error')}"
        print(f"  {name:<28} RAM {row['ram_mib']:5.0f} MiB, peak {row['peak_free_mib']:5.0f} MiB unlimited; {state}")
    return {"limit_bytes": limit, "rows": rows}


def run(
    *,
    embeddings: Path | None = None,
    synthetic_dim: int = 512,
    size: int = 300_000,
    queries: int = 200,
    out: Path = Path("runs/bench/memlimit"),
    rebuild: bool = False,
) -> dict:
    """Our disk tier (tuned within 1/8 of faiss HNSW's RAM) and faiss HNSW-f32 over the same corpus, each searched
    inside one memory limit that HNSW's RAM exceeds."""
    from matryoshka.bench.corpora import synthetic
    from matryoshka.io import atomic_write_json, read_npy

    reason = unavailable()
    if reason:
        print(f"mrl bench memlimit: skipped, {reason}")
        return {"skipped": reason}
    if embeddings is not None:
        vectors = read_npy(embeddings, "embeddings")
        x, q = vectors[queries:], vectors[:queries]
    else:
        corpus = synthetic(size, queries, synthetic_dim, clusters=max(10, size // 200))
        x, q = corpus.vectors, corpus.queries
    out.mkdir(parents=True, exist_ok=True)
    n, d = x.shape
    paths = {
        "faiss HNSW M=32 efSearch=64": ("faiss", out / "hnsw.faiss"),
        "ours, disk tier": ("ours-disk", out / "ours"),
    }
    last = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    if last.get("n") == n and last.get("dim") == d and not rebuild:  # the same corpus: the indexes built last time
        print(f"corpus {n:,} x {d}: the indexes in {out} (--rebuild to build them again)", flush=True)
    else:
        build_both(x, out)
        atomic_write_json(out / "results.json", {"n": n, "dim": d})
    results = limits_table(x, q, paths, out)
    atomic_write_json(out / "results.json", {"n": n, "dim": d, **results})
    return results


def build_both(x: np.ndarray, out: Path) -> None:
    """faiss HNSW-f32 (M=32) and ours on the disk tier, tuned within 1/8 of HNSW's file bytes, saved in ``out``."""
    import faiss

    from matryoshka.index.autotune import build_tuned

    n, d = x.shape
    print(f"corpus {n:,} x {d}; building faiss HNSW M=32 (float32)", flush=True)
    hnsw = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efSearch = 64
    hnsw.add(normalize(x).astype(np.float32))
    faiss.write_index(hnsw, str(out / "hnsw.faiss"))
    hnsw_bytes = (out / "hnsw.faiss").stat().st_size / n
    del hnsw
    print(f"building ours on the disk tier within {hnsw_bytes / 8:.0f} B/vector of RAM", flush=True)
    ours, _ = build_tuned(x, full_vectors="disk", max_bytes_per_vector=hnsw_bytes / 8, tier_folder=out, verbose=True)
    ours.save(out / "ours")
