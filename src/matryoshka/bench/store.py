"""The index as a store: single-vector write latency as the index grows, and a real ``mrl serve`` under load.

1. Writes: the median and p99 latency of single-vector adds through :class:`IndexStore` (appended to the fsynced
   log) at each size, side by side with saving the whole index after each add (what a store without a log must
   do, and what ``mrl serve`` did before it had one). Goals: the store's add at the largest size within 1.5x of
   the smallest, and <= 5 ms at 1M x 512 (``--large``).
2. Load: ``mrl serve`` started on loopback over a ``--rows`` x ``--dim`` index; ``--clients`` concurrent clients
   send ``--requests`` requests, ``--write-fraction`` of them writes (half adds, half deletes), the rest searches
   with ``--plan``. By default the index is built as a plain ``mrl index build`` builds it (tuned to recall@10
   0.95) and searches name no plan, so they follow the tuned one: the defaults a user gets. Reports errors,
   throughput and p50/p99 per operation, kills the server with SIGKILL and checks
   that the folder holds exactly the acknowledged history. Goals: 0 errors, >= 460 requests/s, search
   p99 <= 100 ms.

    mrl bench store [--sizes 20000x64,200000x64] [--large] [--rows 200000 --dim 64 --clients 50 --requests 2000]

The vectors are synthetic (Gaussian with a decaying spectrum, like a Matryoshka embedding); latency here does not
depend on what they mean.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from matryoshka.errors import MatryoshkaError
from matryoshka.index import IndexStore, MatryoshkaIndex
from matryoshka.index.autotune import build_tuned

ADD_GROWTH_GOAL = 1.5
LARGE_ADD_GOAL_MS = 5.0
THROUGHPUT_GOAL = 460.0
SEARCH_P99_GOAL_MS = 100.0
API_KEY = "bench-key"


def _vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    scale = np.linspace(2.0, 0.2, dim, dtype=np.float32)
    for start in range(0, n, 1 << 16):  # in blocks: 1M x 512 would need 4 GB of float64 at once
        rows = min(1 << 16, n - start)
        out[start : start + rows] = rng.standard_normal((rows, dim), dtype=np.float32) * scale
    return out


def _build(folder: Path, rows: int, dim: int, shortlist_dim: int, shortlist: str = "flat") -> str:
    """Build and save the index; ``shortlist="auto"`` builds it as a plain ``mrl index build`` does (tuned to
    recall@10 0.95 on held-out rows, with its default plan). Returns the default plan ("" for none)."""
    vectors = _vectors(rows, dim, seed=0)
    if shortlist == "auto":
        index, _ = build_tuned(vectors, shortlist_dims=[shortlist_dim])
    else:
        index = MatryoshkaIndex.build(vectors, shortlist_dims=[shortlist_dim], shortlist=shortlist)
    index.save(folder)
    return index.default_plan or ""


def _ms(values: list[float]) -> tuple[float, float]:
    return 1000 * float(np.median(values)), 1000 * float(np.percentile(values, 99))


def write_latency(folder: Path, rows: int, dim: int, adds: int, rewrites: int) -> dict[str, float]:
    """Single-vector add latency through the store's log, and with a whole-index save after each add."""
    new = _vectors(adds + rewrites, dim, seed=1)
    with IndexStore.open(folder, compact_threshold=0) as store:
        times = []
        for i in range(adds):
            t0 = time.perf_counter()
            store.add(new[i : i + 1])
            times.append(time.perf_counter() - t0)
    store_p50, store_p99 = _ms(times)
    index = MatryoshkaIndex.load(folder)
    times = []
    for i in range(rewrites):
        t0 = time.perf_counter()
        index.add(new[adds + i : adds + i + 1])
        index.save(folder)
        times.append(time.perf_counter() - t0)
    rewrite_p50, _ = _ms(times)
    return {"store_p50_ms": store_p50, "store_p99_ms": store_p99, "rewrite_p50_ms": rewrite_p50}


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, port: int, api_key: str = API_KEY, timeout: float = 120) -> subprocess.Popen:
    """``mrl serve`` on loopback in a subprocess (writes allowed with ``api_key``), returned once /health answers."""
    env = {**os.environ, "MRL_API_KEY": api_key, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "matryoshka.cli", "serve", "--index", str(folder), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mrl serve exited: {proc.stderr.read().decode()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                if response.status == 200:
                    return proc
        except OSError:  # not listening yet
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"mrl serve did not start in {timeout:.0f} s")


async def _drive(url: str, ops: list[tuple[str, Any]], clients: int, plan: str, seconds: float = 600) -> list[tuple]:
    """Send the ops over ``clients`` concurrent keep-alive connections, starting none after ``seconds``;
    (kind, payload, status, seconds) for each op sent."""
    try:
        import aiohttp  # a client that costs the shared cores little per request
    except ImportError:
        raise MatryoshkaError("the load test needs aiohttp: pip install 'matryoshka-mrl[bench]'") from None

    queue: asyncio.Queue = asyncio.Queue()
    for op in ops:
        queue.put_nowait(op)
    results: list[tuple] = []
    headers = {"X-API-Key": API_KEY}

    deadline = time.perf_counter() + seconds

    async def client(http: aiohttp.ClientSession) -> None:
        while not queue.empty() and time.perf_counter() < deadline:
            kind, payload = queue.get_nowait()
            t0 = time.perf_counter()
            try:
                if kind == "search":
                    body = {"vectors": [payload], "k": 10, **({"plan": plan} if plan else {})}
                    request = http.post(f"{url}/search", json=body)
                elif kind == "add":
                    body = {"vectors": [payload[1]], "ids": [payload[0]]}
                    request = http.post(f"{url}/vectors", json=body, headers=headers)
                else:
                    request = http.delete(f"{url}/vectors/{payload}", headers=headers)
                async with request as response:
                    await response.read()
                    status = response.status
            except aiohttp.ClientError as e:
                status = f"{type(e).__name__}: {e}"
            results.append((kind, payload, status, time.perf_counter() - t0))

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return results


def load_test(
    folder: Path,
    rows: int,
    dim: int,
    clients: int,
    requests: int,
    write_fraction: float,
    plan: str,
    seed: int,
    max_seconds: float = 600,
) -> dict[str, Any]:
    """Mixed search/add/delete load on a real server, then a check of the folder against the acknowledged history."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(
        ["search", "add", "delete"], size=requests, p=[1 - write_fraction, write_fraction / 2, write_fraction / 2]
    )
    queries = _vectors(requests, dim, seed=2)
    doomed = iter(rng.permutation(rows).tolist())  # each delete takes an id that is still there
    ops: list[tuple[str, Any]] = []
    for i, kind in enumerate(kinds):
        if kind == "search":
            ops.append(("search", queries[i].tolist()))
        elif kind == "add":
            ops.append(("add", (10**12 + i, queries[i].tolist())))
        else:
            ops.append(("delete", next(doomed)))
    port = free_port()
    proc = start_server(folder, port)
    try:
        t0 = time.perf_counter()
        results = asyncio.run(_drive(f"http://127.0.0.1:{port}", ops, clients, plan, max_seconds))
        seconds = time.perf_counter() - t0
    finally:
        proc.send_signal(signal.SIGKILL)  # acknowledged writes must survive a kill -9
        proc.wait()
    errors = [r for r in results if r[2] != 200]
    expected = set(range(rows))
    for kind, payload, status, _ in results:
        if status == 200 and kind == "add":
            expected.add(payload[0])
        elif status == 200 and kind == "delete":
            expected.discard(payload)
    with IndexStore.open(folder, writable=False) as store:
        stored = set(store.ids.tolist())
    latency = {}
    for kind in ("search", "add", "delete"):
        times = [r[3] for r in results if r[0] == kind and r[2] == 200]
        if times:
            p50, p99 = _ms(times)
            latency[kind] = {"count": len(times), "p50_ms": p50, "p99_ms": p99}
    return {
        "requests": len(results),
        "errors": len(errors),
        "first_errors": [str(e[2]) for e in errors[:3]],
        "seconds": seconds,
        "requests_per_s": len(results) / seconds,
        "latency": latency,
        "store_matches_history": stored == expected,
        "missing_acknowledged": len(expected - stored),
        "unexpected": len(stored - expected),
    }


def _sizes(text: str) -> list[tuple[int, int]]:
    return [(int(n), int(d)) for n, d in (part.split("x") for part in text.split(","))]


def _goal(text: str, ok: bool, measured: str) -> None:
    print(f"goal: {text} -> {'met' if ok else 'NOT met'} ({measured})")


def _write_part(tmp: Path, sizes: list[tuple[int, int]], adds: int, rewrites: int, shortlist_dim: int) -> dict:
    print(f"single-vector add latency ({adds} adds through the log; {rewrites} with a whole-index save each)")
    print(f"{'rows x dim':<16}{'log p50 ms':>12}{'log p99 ms':>12}{'save-all p50 ms':>17}{'speed-up':>10}")
    out = {}
    for n, d in sizes:
        folder = tmp / f"w-{n}x{d}"
        _build(folder, n, d, min(shortlist_dim, d))
        res = out[f"{n}x{d}"] = write_latency(folder, n, d, adds, rewrites if n * d <= 50_000_000 else 1)
        speedup = res["rewrite_p50_ms"] / res["store_p50_ms"]
        print(
            f"{f'{n}x{d}':<16}{res['store_p50_ms']:>12.2f}{res['store_p99_ms']:>12.2f}"
            f"{res['rewrite_p50_ms']:>17.1f}{speedup:>9.0f}x"
        )
        shutil.rmtree(folder, ignore_errors=True)
    return out


def _load_part(tmp: Path, rows: int, dim: int, shortlist_dim: int, shortlist: str, repeats: int, **options) -> dict:
    """The load test ``repeats`` times, each on a fresh copy of the same index; the medians and every run."""
    pristine = tmp / "load"
    t0 = time.perf_counter()
    tuned = _build(pristine, rows, dim, shortlist_dim, shortlist)
    structure = "tuned by default" if shortlist == "auto" else f"a {shortlist} shortlist on {shortlist_dim} dims"
    plan = options["plan"] or f"no plan named (the index's default: {tuned or 'full'})"
    print(
        f"load: {rows}x{dim} index, {structure} (built in {time.perf_counter() - t0:.0f} s); mrl serve on loopback, "
        f"{options['clients']} clients, {options['requests']} requests ({100 * (1 - options['write_fraction']):.0f}% "
        f"search with {plan}, the rest add/delete), {repeats} runs"
    )
    runs = []
    for r in range(repeats):
        folder = tmp / f"load-{r}"
        shutil.copytree(pristine, folder)
        res = load_test(folder, rows, dim, **{**options, "seed": options["seed"] + r})
        shutil.rmtree(folder, ignore_errors=True)
        runs.append(res)
        lat = "; ".join(f"{k} p50 {v['p50_ms']:.1f} / p99 {v['p99_ms']:.1f} ms" for k, v in res["latency"].items())
        same = "equals" if res["store_matches_history"] else "DOES NOT equal"
        print(
            f"  run {r + 1}: {res['requests_per_s']:.0f} requests/s, "
            f"errors {res['errors']} {res['first_errors'] or ''}; "
            f"{lat}; after kill -9 the folder {same} the acknowledged history "
            f"(missing {res['missing_acknowledged']}, unexpected {res['unexpected']})"
        )

    def median(get) -> float:
        return float(np.median([get(run) for run in runs]))

    inf = float("inf")
    summary = {
        "runs": runs,
        "errors": sum(run["errors"] for run in runs),
        "store_matches_history": all(run["store_matches_history"] for run in runs),
        "requests_per_s": median(lambda run: run["requests_per_s"]),
        "search_p50_ms": median(lambda run: run["latency"].get("search", {}).get("p50_ms", inf)),
        "search_p99_ms": median(lambda run: run["latency"].get("search", {}).get("p99_ms", inf)),
    }
    print(
        f"  median of {repeats}: {summary['requests_per_s']:.0f} requests/s, "
        f"search p50 {summary['search_p50_ms']:.1f} ms, p99 {summary['search_p99_ms']:.1f} ms"
    )
    return summary


def run(
    *,
    sizes: str = "20000x64,200000x64",
    large: bool = False,
    adds: int = 200,
    rewrites: int = 5,
    rows: int = 200_000,
    dim: int = 64,
    clients: int = 50,
    requests: int = 2000,
    write_fraction: float = 0.1,
    plan: str = "",
    shortlist_dim: int = 16,
    shortlist: str = "auto",
    max_seconds: float = 300,
    repeats: int = 3,
    skip_writes: bool = False,
    skip_load: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Write latency per size (store vs whole-index save) and the load test; prints tables and goal verdicts."""
    out: dict[str, Any] = {"writes": {}, "load": None}
    with tempfile.TemporaryDirectory(prefix="mrl-bench-store-") as tmp:
        if not skip_writes:
            listed = _sizes(sizes)
            out["writes"] = _write_part(
                Path(tmp), listed + ([(1_000_000, 512)] if large else []), adds, rewrites, shortlist_dim
            )
            (n0, d0), (n1, d1) = listed[0], listed[-1]
            growth = out["writes"][f"{n1}x{d1}"]["store_p50_ms"] / out["writes"][f"{n0}x{d0}"]["store_p50_ms"]
            out["add_growth"] = growth
            _goal(
                f"add at {n1}x{d1} within {ADD_GROWTH_GOAL}x of {n0}x{d0}", growth <= ADD_GROWTH_GOAL, f"{growth:.2f}x"
            )
            if large:
                ms = out["writes"]["1000000x512"]["store_p50_ms"]
                _goal(f"add at 1000000x512 <= {LARGE_ADD_GOAL_MS} ms", ms <= LARGE_ADD_GOAL_MS, f"{ms:.2f} ms")
        if not skip_load:
            res = out["load"] = _load_part(
                Path(tmp),
                rows,
                dim,
                shortlist_dim,
                shortlist,
                repeats,
                clients=clients,
                requests=requests,
                write_fraction=write_fraction,
                plan=plan,
                seed=seed,
                max_seconds=max_seconds,
            )
            ok = res["errors"] == 0 and res["store_matches_history"]
            _goal("0 errors and every acknowledged write kept, in every run", ok, f"{res['errors']} errors")
            rps, p99 = res["requests_per_s"], res["search_p99_ms"]
            _goal(f">= {THROUGHPUT_GOAL:.0f} requests/s (median)", rps >= THROUGHPUT_GOAL, f"{rps:.0f}")
            _goal(f"search p99 <= {SEARCH_P99_GOAL_MS:.0f} ms (median)", p99 <= SEARCH_P99_GOAL_MS, f"{p99:.1f} ms")
    return out
