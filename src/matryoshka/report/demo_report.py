"""The demo's report: its plots, the targets it checks and report.html."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from matryoshka.report.page import image, render, table, write_html
from matryoshka.report.plots import cascade_plot, cost_plot, per_dim_plot


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
    answer_png = per_dim_plot(
        {m: results["classification"][m] for m in ("mrl", "ff", "svd", "random") if m in results["classification"]},
        dims,
        labels,
        "top-1 accuracy (%)",
        "One Matryoshka model vs a model per size and post-hoc projections",
        out / "answer.png",
    )

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
        ("The answer", answer_section(results, answer_png)),
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
    if results.get("adaptive_classification"):
        sections.append(("Adaptive classification (cascade over dims)", cascade_section(results, out)))
    if results["retrieval"].get("plans"):
        rows = "".join(
            f"<tr><td><code>{html.escape(r['plan'])}</code></td><td>{100 * r['map@10']:.2f}</td>"
            f"<td>{100 * r['p@10']:.2f}</td><td>{r['recall_vs_exact']:.3f}</td><td>{r['seconds']:.3f}</td></tr>"
            for r in results["retrieval"]["plans"]
        )
        sections.append(
            (
                "Adaptive retrieval (index of the MRL train embeddings, test queries)",
                "<p>Plans: <code>full</code> exact search at the full dim; <code>adaptive:DS:K:DR</code> shortlists K "
                "with DS dims and re-ranks with DR; <code>funnel</code> re-ranks with growing dims and shrinking K. "
                "Recall is against the exact full-dim results.</p><table><tr><th>plan</th><th>mAP@10 (%)</th>"
                f"<th>P@10 (%)</th><th>recall@10 vs exact</th><th>seconds</th></tr>{rows}</table>",
            )
        )
    if results.get("adaptor"):
        sections.append(("Making existing embeddings Matryoshka (post-hoc adaptor)", adaptor_section(results, out)))
    sections += results.get("extra_sections", [])
    sections.append(
        (
            "Run",
            f"<p>settings: <code>{settings}</code></p><p>machine: <code>{machine}</code></p>"
            + stage_table(results.get("timings", {})),
        )
    )
    path = out / "report.html"
    write_html(path, render(results, sections))
    return path


def answer_section(results: dict[str, Any], figure: Path) -> str:
    """The report's opening: accuracy against dims for MRL, FF, SVD and random features, then one sentence per
    target with its measured number."""
    not_run = results.get("not_run", {}).get("ff", [])
    sentences = "".join(
        f"<li>{html.escape(c['target'])}: <span class='{'met' if c['met'] else 'unmet'}'>"
        f"{'holds' if c['met'] else 'does not hold'}</span> ({html.escape(c['measured'])}).</li>"
        for c in results.get("targets", [])
    )
    note = (
        f"<p>FF-k models were not trained at {', '.join(map(str, not_run))} dims in this run (quick mode).</p>"
        if not_run
        else ""
    )
    dims = results["dims"]
    return (
        image(figure, "accuracy vs dims")
        + f"<p>One MRL model serves every size from {dims[0]} to {dims[-1]} dims. Below the number of classes the "
        "post-hoc projections of a full-dim model (SVD, random features) fall away; a separately trained FF-k model "
        "keeps up at each size but costs one model per size.</p>" + note + f"<ul>{sentences}</ul>"
    )


def stage_table(timings: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{seconds:.1f}</td></tr>"
        for name, seconds in timings.get("stages", {}).items()
    )
    total = timings.get("total_s")
    return (
        f"<table><tr><th>stage</th><th>seconds</th></tr>{rows}"
        f"<tr><th>total</th><th>{total if total is not None else '-'}</th></tr></table>"
    )


def cascade_section(results: dict[str, Any], out: Path) -> str:
    ad = results["adaptive_classification"]
    png = cascade_plot(ad, results["dims"], out / "cascade_vs_dims.png")

    def fmt(stat: dict[str, float], scale: float = 1, digits: int = 1) -> str:
        return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['std']:.{digits}f}"

    rows = []
    for name, label in (
        ("pairwise", "cascade, pairwise thresholds (paper)"),
        ("matched", f"cascade matched to the best fixed model within {100 * ad['match_within']:.1f}pt"),
    ):
        pol = ad["policies"][name]
        rows.append(
            f"<tr><td>{label}</td><td>{fmt(pol['accuracy'], 100, 2)}</td><td>{fmt(pol['expected_dim'])}</td>"
            f"<td>{fmt(pol['head_cost'])}</td></tr>"
        )
    orc = ad["oracle"]
    rows.append(
        f"<tr><td>oracle (best dim per example)</td><td>{fmt(orc['accuracy'], 100, 2)}</td>"
        f"<td>{fmt(orc['expected_dim'])}</td><td>{fmt(orc['head_cost'])}</td></tr>"
    )
    best = ad["best_fixed"]
    rows.append(
        f"<tr><td>best fixed-dim model: {best['method'].upper()}-{best['dim']}</td>"
        f"<td>{fmt(best['accuracy'], 100, 2)}</td><td>{best['dim']}</td><td>-</td></tr>"
    )
    ratio = ad["matched_dim_ratio"]
    summary = (
        f"<p>Thresholds on the max softmax probability are fitted on a random {100 * ad['fit_fraction']:.0f}% "
        f"of the test set and scored on the rest, over {ad['splits']} random splits. The matched cascade "
        f"uses {ad['policies']['matched']['expected_dim']['mean']:.1f} dims on average where the best fixed "
        f"model uses {best['dim']}: {ratio['mean']:.1f}x fewer (± {ratio['std']:.1f}). Head cost counts "
        "the dims of every head evaluated on the way.</p>"
    )
    table_html = (
        "<table><tr><th>method</th><th>accuracy (%)</th><th>expected dims</th><th>head cost (dims)</th>"
        f"</tr>{''.join(rows)}</table>"
    )
    return summary + table_html + image(png, "cascade accuracy vs expected dims")


def adaptor_section(results: dict[str, Any], out: Path) -> str:
    ad, dims = results["adaptor"], results["dims"]
    labels = {"raw": "raw truncation", "PCA": "PCA", "SVD": "SVD (uncentred)", "adaptor": "Matryoshka adaptor"}
    png = per_dim_plot(
        ad["recall@10"],
        dims,
        labels,
        "recall@10 of full-dim neighbours (%)",
        f"Prefixes of the {ad['source'].upper()} embeddings",
        out / "adaptor_vs_dims.png",
    )
    return (
        f"<p>The {ad['source'].upper()} model was trained at its full dim only, so its prefixes are not meant to be "
        "used. A <code>MatryoshkaAdaptor</code> (a rotation started from the SVD basis plus a small residual MLP, "
        f"fitted without labels in {ad['fit_seconds']:.0f} s) maps its embeddings so that every prefix keeps the "
        f"full-dim cosine neighbours. Recall@10 of the exact full-dim neighbours of {ad['queries']} test queries "
        "among the train embeddings, per prefix size (%):</p>"
        + table(ad["recall@10"], dims, labels)
        + image(png, "adaptor recall vs dims")
    )


__all__ = ["write_report"]
