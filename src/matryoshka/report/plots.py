"""Matplotlib figures of per-dim results (headless: the Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

STYLE = {
    "mrl": {"color": "#d62728", "marker": "o", "lw": 2.2},
    "mrl_e": {"color": "#ff7f0e", "marker": "s", "lw": 1.6},
    "ff": {"color": "#1f77b4", "marker": "^", "lw": 1.6},
    "mrl_probe": {"color": "#d62728", "marker": "x", "lw": 1.0, "ls": ":"},
    "svd": {"color": "#2ca02c", "marker": "D", "lw": 1.4, "ls": "--"},
    "random": {"color": "#7f7f7f", "marker": "v", "lw": 1.4, "ls": "--"},
}


def _style(method: str) -> dict[str, Any]:
    return STYLE.get(method, {"marker": "."})


def per_dim_plot(
    series: dict[str, dict[str, float]], dims: list[int], labels: dict[str, str], ylabel: str, title: str, path: Path
) -> Path:
    """One line per method, x = dims on a log2 axis, y in percent."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for method, values in series.items():
        xs = [m for m in dims if str(m) in values]
        ax.plot(xs, [100 * values[str(m)] for m in xs], label=labels.get(method, method), **_style(method))
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims, [str(m) for m in dims])
    ax.set_xlabel("representation size (dims)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def cost_plot(results: dict[str, Any], path: Path) -> Path:
    """Left: 1-NN accuracy against search cost per query. Right: training time to cover every dim."""
    dims, labels = results["dims"], results["method_labels"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=120, gridspec_kw={"width_ratios": [3, 2]})
    n_db = results.get("database_size", 1)
    for method, values in results["knn1"].items():
        xs = [m for m in dims if str(m) in values]
        left.plot(
            [m * n_db * 2 / 1e6 for m in xs],
            [100 * values[str(m)] for m in xs],
            label=labels.get(method, method),
            **_style(method),
        )
    left.set_xscale("log")
    left.set_xlabel("exact 1-NN search cost per query (MFLOPs)")
    left.set_ylabel("1-NN accuracy (%)")
    left.set_title("accuracy vs search cost")
    left.grid(True, alpha=0.3)
    left.legend(loc="lower right", fontsize=8)
    seconds = results.get("training_seconds", {})
    ff_total = sum(v for k, v in seconds.items() if k.startswith("ff-"))
    bars = {
        "MRL (all dims)": seconds.get("mrl", 0),
        "MRL-E (all dims)": seconds.get("mrl_e", 0),
        f"FF ({len(dims)} models)": ff_total,
    }
    right.bar(list(bars), list(bars.values()), color=["#d62728", "#ff7f0e", "#1f77b4"])
    for i, v in enumerate(bars.values()):
        right.text(i, v, f"{v:.0f}s", ha="center", va="bottom")
    right.set_ylabel("training time (s)")
    right.set_title("training cost to serve every dim")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def cascade_plot(adaptive: dict[str, Any], dims: list[int], path: Path) -> Path:
    """Accuracy against expected dims: the cascade's trade-off curve, fixed-dim models, and the oracle."""
    fig, ax = plt.subplots(figsize=(7.5, 5.6), dpi=120)
    curve = sorted(adaptive["curve"], key=lambda p: p["expected_dim"])
    ax.plot(
        [p["expected_dim"] for p in curve],
        [100 * p["accuracy"] for p in curve],
        color="#d62728",
        lw=2,
        label="MRL cascade (shared threshold sweep)",
    )
    for method, label in (("mrl", "MRL at fixed dims"), ("ff", "FF-k at fixed dims")):
        fixed = adaptive["fixed"].get(method, {})
        if fixed:
            xs = [int(k) for k in fixed]
            ax.plot(
                xs,
                [100 * v for v in fixed.values()],
                ls="",
                label=label,
                **{k: v for k, v in _style(method).items() if k in ("marker", "color")},
            )
    for name, marker in (("pairwise", "P"), ("matched", "*")):
        pol = adaptive["policies"][name]
        ax.errorbar(
            pol["expected_dim"]["mean"],
            100 * pol["accuracy"]["mean"],
            xerr=pol["expected_dim"]["std"],
            yerr=100 * pol["accuracy"]["std"],
            marker=marker,
            ms=11,
            color="black",
            ls="",
            label=f"cascade, {name} thresholds (mean ± std over splits)",
        )
    orc = adaptive["oracle"]
    ax.plot(
        orc["expected_dim"]["mean"],
        100 * orc["accuracy"]["mean"],
        marker="o",
        mfc="none",
        ms=10,
        color="purple",
        ls="",
        label="oracle (best dim per example)",
    )
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims, [str(m) for m in dims])
    ax.set_xlabel("expected dims per example")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Adaptive classification")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
