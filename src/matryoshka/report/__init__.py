"""Plots and the HTML report of a demo run."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from matryoshka.report.page import image, render, table, write_html
from matryoshka.report.plots import cost_plot, per_dim_plot


def write_report(results: dict[str, Any], out: Path) -> Path:
    """Write the PNG plots and ``report.html`` for a demo's results; returns the report's path."""
    dims, labels = results["dims"], results["method_labels"]
    acc_png = per_dim_plot(
        results["classification"],
        dims,
        labels,
        "top-1 accuracy (%)",
        "Classification accuracy per representation size",
        out / "accuracy_vs_dims.png",
    )
    knn_png = per_dim_plot(
        results["knn1"],
        dims,
        labels,
        "1-NN accuracy (%)",
        "1-NN accuracy (train set as database, cosine)",
        out / "knn1_vs_dims.png",
    )
    per_dim = results["retrieval"]["per_dim"]
    map_series = {m: {d: v["map@10"] for d, v in vals.items()} for m, vals in per_dim.items()}
    map_png = per_dim_plot(
        map_series, dims, labels, "mAP@10 (%)", "Same-class retrieval mAP@10", out / "map10_vs_dims.png"
    )
    cost_png = cost_plot(results, out / "cost_vs_accuracy.png")

    checks = "".join(
        f"<tr><td>{html.escape(c['target'])}</td><td class='{'met' if c['met'] else 'unmet'}'>"
        f"{'met' if c['met'] else 'NOT met'}</td><td>{html.escape(c['measured'])}</td></tr>"
        for c in results.get("targets", [])
    )
    settings = html.escape(json.dumps(results.get("settings", {})))
    machine = html.escape(json.dumps(results.get("machine", {})))
    retrieval_tables = "".join(
        f"<h3>{metric}</h3>"
        + table({m: {d: v[metric] for d, v in vals.items()} for m, vals in per_dim.items()}, dims, labels)
        for metric in ("map@10", "p@10", "r@10")
    )
    sections = [
        ("Targets", f"<table><tr><th>target</th><th>status</th><th>measured</th></tr>{checks}</table>"),
        (
            "Classification accuracy (%) on the test set",
            "<p>MRL, MRL-E and FF: the trained heads. SVD and Rand. FS: linear probes on the FF-full model's features "
            "projected / selected to each size. MRL (fresh linear probe): a new probe on frozen MRL prefixes.</p>"
            + table(results["classification"], dims, labels)
            + image(acc_png, "accuracy vs dims"),
        ),
        ("1-NN accuracy (%)", table(results["knn1"], dims, labels) + image(knn_png, "1-NN accuracy vs dims")),
        ("Retrieval (same-class relevance, train set as database)", retrieval_tables + image(map_png, "mAP@10")),
        ("Cost", image(cost_png, "cost vs accuracy")),
    ]
    sections += results.get("extra_sections", [])
    sections.append(
        (
            "Run",
            f"<p>settings: <code>{settings}</code></p><p>machine: <code>{machine}</code></p>"
            f"<p>timings (s): <code>{html.escape(json.dumps(results.get('timings', {})))}</code></p>",
        )
    )
    path = out / "report.html"
    write_html(path, render(results, sections))
    return path


__all__ = ["write_report"]
