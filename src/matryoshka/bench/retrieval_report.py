"""What ``mrl bench retrieval`` prints and draws: the rows table, the comparison with the goals (met / NOT met)
and the recall-latency plot."""

from __future__ import annotations

from pathlib import Path


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    families = dict.fromkeys(r["family"] for r in rows if r["family"] != "faiss FlatIP")
    for family in families:
        pts = sorted(((r["p50_ms"], r["recall@10"]) for r in rows if r["family"] == family), key=lambda p: p[1])
        style = "*" if "tuned" in family else "o-"
        ax.plot(
            [p[0] for p in pts], [p[1] for p in pts], style, label=family, markersize=10 if "tuned" in family else 4
        )
    ax.set_xscale("log")
    ax.set_xlabel("batch-1 latency, median (ms)")
    ax.set_ylabel("recall@10 vs exact full-dim search")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def goals() -> dict[str, float]:
    return {
        "speed": 1.0,
        "compressed_speed": 1.5,
        "batched": 1.5,
        "memory": 0.5,
        "busy_p99": 2.0,
        "build": 3.0,
        "disk_memory": 1 / 8,
    }


# Peers that compress their vectors: the ones to beat at no more RAM than theirs.
COMPRESSED = ("faiss HNSW-SQ8", "faiss HNSW-RaBitQ", "faiss IVF-RaBitQ-FastScan", "usearch f16", "usearch i8")


def print_rows(rows: list[dict]) -> None:
    print(
        f"\n{'method':<50}{'R@10':>7}{'p50 ms':>8}{'p99 ms':>8}{'busy p50':>9}{'busy p99':>9}{'QPS':>8}"
        f"{'RAM B/v':>9}{'file B/v':>9}{'build s':>8}"
    )
    for r in rows:
        print(
            f"{r['method'][:49]:<50}{r['recall@10']:>7.4f}{r['p50_ms']:>8.3f}{r['p99_ms']:>8.3f}"
            f"{r['busy_p50_ms']:>9.3f}{r['busy_p99_ms']:>9.3f}{r['qps']:>8.0f}{r['bytes_per_vector']:>9.0f}"
            f"{r['file_bytes_per_vector']:>9.0f}{r['build_s']:>8.1f}  {r['note']}"
        )


def compare(rows: list[dict], targets: list[float], goal: dict[str, float]) -> list[dict]:
    """Per target, our tuned index (in RAM) against the peers tuned to the same target: the fastest peer at batch 1,
    the fastest batched, the smallest in RAM among the fastest, and faiss HNSW (busy p99, build)."""
    comparisons = []
    for target in targets:
        peers = [r for r in rows if r["target"] == target and r["reached"] and not r["family"].startswith("ours")]
        mine = next(r for r in rows if r["target"] == target and r["family"] == "ours (tuned)")
        hnsw = next((r for r in peers if r["family"] == "faiss HNSWFlat"), None)
        if not peers:
            continue
        fastest = min(peers, key=lambda r: r["p50_ms"])
        batched = max(peers, key=lambda r: r["qps"])
        c = {
            "target": target,
            "ours": mine["method"],
            "recall": mine["recall@10"],
            "fastest_peer": fastest["method"],
            "fastest_peer_recall": fastest["recall@10"],
            "p50_speedup": fastest["p50_ms"] / mine["p50_ms"],
            "batched_peer": batched["method"],
            "batched_speedup": mine["qps"] / batched["qps"],
            "memory_ratio": mine["bytes_per_vector"] / (hnsw or fastest)["bytes_per_vector"],
            "memory_peer": (hnsw or fastest)["method"],
        }
        # The fastest compressed peer that holds no less RAM than ours: a smaller one trades speed for bytes.
        compressed = [
            r for r in peers if r["family"] in COMPRESSED and r["bytes_per_vector"] >= mine["bytes_per_vector"]
        ]
        if compressed:
            best = min(compressed, key=lambda r: r["p50_ms"])
            c["compressed_peer"] = best["method"]
            c["compressed_p50_speedup"] = best["p50_ms"] / mine["p50_ms"]
        small = next((r for r in rows if r["target"] == target and r["family"] == "ours (tuned for memory)"), None)
        if small is not None:
            c["memory_tuned"] = small["method"]
            c["memory_tuned_recall"] = small["recall@10"]
            c["memory_tuned_ratio"] = small["bytes_per_vector"] / (hnsw or fastest)["bytes_per_vector"]
            c["memory_tuned_p50_speedup"] = fastest["p50_ms"] / small["p50_ms"]
        half = next(
            (r for r in rows if r["target"] == target and r["family"] == "ours (tuned within half of HNSW's RAM)"), None
        )
        if half is not None and hnsw is not None:
            c["half"] = half["method"]
            c["half_recall"] = half["recall@10"]
            c["half_p50_speedup"] = fastest["p50_ms"] / half["p50_ms"]
            c["half_memory_ratio"] = half["bytes_per_vector"] / hnsw["bytes_per_vector"]
        lean = "ours (disk tier, tuned within 1/8 of HNSW's RAM)"
        on_disk = next((r for r in rows if r["target"] == target and r["family"] == lean), None) or next(
            (r for r in rows if r["target"] == target and r["family"] == "ours (tuned, disk)"), None
        )
        disk_peer = next((r for r in peers if r["family"] == "faiss IVFFlat, lists on disk"), None)
        diskann = next((r for r in peers if r["family"] == "DiskANN, graph on disk"), None)
        if on_disk is not None:
            c["disk"] = on_disk["method"]
            c["disk_recall"] = on_disk["recall@10"]
            c["disk_p50_ms"] = on_disk["p50_ms"]
            if hnsw is not None:
                c["disk_memory_ratio"] = on_disk["bytes_per_vector"] / hnsw["bytes_per_vector"]
            if disk_peer is not None:
                c["disk_peer"] = disk_peer["method"]
                c["disk_peer_p50_ratio"] = on_disk["p50_ms"] / disk_peer["p50_ms"]
                c["disk_peer_memory_ratio"] = on_disk["bytes_per_vector"] / disk_peer["bytes_per_vector"]
            if diskann is not None:
                c["diskann"] = diskann["method"]
                c["diskann_p50_ratio"] = on_disk["p50_ms"] / diskann["p50_ms"]
                c["diskann_memory_ratio"] = on_disk["bytes_per_vector"] / diskann["bytes_per_vector"]
        if hnsw is not None:
            c["hnsw"] = hnsw["method"]
            c["busy_p99_ratio"] = mine["busy_p99_ms"] / hnsw["busy_p99_ms"]
            c["build_speedup"] = hnsw["build_s"] / mine["build_s"]
        comparisons.append(c)
    print("\nat matched recall (every method tuned to the target on the calibration queries, measured on others)")
    for c in comparisons:
        print(f"  target {c['target']}: {c['ours']} (recall {c['recall']:.4f})")
        print(
            f"    batch-1 p50 {c['p50_speedup']:.2f}x of the fastest peer, {c['fastest_peer']} "
            f"(recall {c['fastest_peer_recall']:.4f}; goal >= {goal['speed']}x: "
            f"{verdict(c['p50_speedup'] >= goal['speed'])})"
        )
        print(
            f"    batched QPS {c['batched_speedup']:.2f}x of {c['batched_peer']} "
            f"(goal >= {goal['batched']}x: {verdict(c['batched_speedup'] >= goal['batched'])})"
        )
        print(
            f"    RAM {c['memory_ratio']:.3f}x of {c['memory_peer']} "
            f"(goal <= {goal['memory']}x: {verdict(c['memory_ratio'] <= goal['memory'])})"
        )
        if "compressed_peer" in c:
            print(
                f"    batch-1 p50 {c['compressed_p50_speedup']:.2f}x of the fastest compressed peer holding no less "
                f"RAM, {c['compressed_peer']} (goal >= {goal['compressed_speed']}x: "
                f"{verdict(c['compressed_p50_speedup'] >= goal['compressed_speed'])})"
            )
        else:
            print("    no compressed peer reaching the target holds as much RAM as ours")
        if "memory_tuned" in c:
            print(
                f"    tuned for memory, {c['memory_tuned']} (recall {c['memory_tuned_recall']:.4f}): RAM "
                f"{c['memory_tuned_ratio']:.3f}x of {c['memory_peer']} (goal <= {goal['memory']}x: "
                f"{verdict(c['memory_tuned_ratio'] <= goal['memory'])}), batch-1 p50 "
                f"{c['memory_tuned_p50_speedup']:.2f}x of its speed (goal >= {goal['speed']}x: "
                f"{verdict(c['memory_tuned_p50_speedup'] >= goal['speed'])})"
            )
        if "half" in c:
            ok = c["half_p50_speedup"] >= goal["speed"] and c["half_memory_ratio"] <= goal["memory"]
            print(
                f"    within half of HNSW's RAM, {c['half']} (recall {c['half_recall']:.4f}): batch-1 p50 "
                f"{c['half_p50_speedup']:.2f}x of the fastest peer at {c['half_memory_ratio']:.3f}x of HNSW-f32's RAM "
                f"(goal >= {goal['speed']}x at <= {goal['memory']}x: {verdict(ok)})"
            )
        if "disk_p50_ms" in c:
            print(
                f"    disk tier, {c['disk']}: batch-1 p50 {c['disk_p50_ms']:.3f} ms (recall {c['disk_recall']:.4f}; "
                f"goal <= 1 ms: "
                f"{verdict(c['disk_p50_ms'] <= 1.0)})"
                + (
                    f", RAM {c['disk_memory_ratio']:.3f}x of faiss HNSW's (goal <= {goal['disk_memory']:.3f}x: "
                    f"{verdict(c['disk_memory_ratio'] <= goal['disk_memory'])})"
                    if "disk_memory_ratio" in c
                    else ""
                )
            )
        if "disk_peer" in c:
            print(
                f"    disk tier vs {c['disk_peer']} (its lists read through the page cache): batch-1 p50 "
                f"{c['disk_peer_p50_ratio']:.2f}x of its time (goal <= 0.5x: "
                f"{verdict(c['disk_peer_p50_ratio'] <= 0.5)}), RAM {c['disk_peer_memory_ratio']:.2f}x of its"
            )
        if "diskann" in c:
            print(
                f"    disk tier vs {c['diskann']} (direct reads, as ours): batch-1 p50 {c['diskann_p50_ratio']:.2f}x "
                f"of its time, RAM {c['diskann_memory_ratio']:.2f}x of its"
            )
        if "hnsw" in c:
            print(
                f"    beside a busy process, batch-1 p99 {c['busy_p99_ratio']:.2f}x of {c['hnsw']}'s "
                f"(goal <= {goal['busy_p99']}x: {verdict(c['busy_p99_ratio'] <= goal['busy_p99'])})"
            )
            print(
                f"    build {c['build_speedup']:.2f}x faster than {c['hnsw']} "
                f"(goal >= {goal['build']}x: {verdict(c['build_speedup'] >= goal['build'])})"
            )
    return comparisons
