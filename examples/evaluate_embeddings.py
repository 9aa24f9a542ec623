"""Evaluate any embeddings at every prefix size, and compare with PCA/SVD of the same embeddings.

    python examples/evaluate_embeddings.py

Uses raw digit pixels as "embeddings" so it runs anywhere in seconds; put your own (N, d) arrays in their place.
"""

from matryoshka.data import load_dataset
from matryoshka.evaluate import SVDProjection, evaluate_views, prefix_view

data = load_dataset("digits")
train_z, test_z = data.train.x.flatten(1), data.test.x.flatten(1)
dims = [4, 8, 16, 32, 64]

svd = SVDProjection().fit(train_z)
methods = {
    "prefix": prefix_view(train_z, test_z),
    "svd": lambda m: (svd.transform(train_z, m), svd.transform(test_z, m)),
}
for name, view in methods.items():
    res = evaluate_views(view, dims, data.train.y, data.test.y, k=10)
    for m in dims:
        r = res["retrieval"][str(m)]
        print(
            f"{name:>6} dim {m:>2}: probe {res['probe'][str(m)]:.3f}  1-NN {res['knn1'][str(m)]:.3f}  "
            f"mAP@10 {r['map@10']:.3f}  P@10 {r['p@10']:.3f}  R@10 {r['r@10']:.4f}"
        )
