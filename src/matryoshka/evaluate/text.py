"""Per-dim text retrieval: encode queries and corpus once at full dim, score every prefix.

For each dim m the prefixes z[:m] are re-normalised (cosine similarity) and ranked exactly; the metrics are
mAP@k, recall@k (``r@k``) and MRR over the whole corpus, as defined in :mod:`matryoshka.evaluate.metrics`.

Example::

    from matryoshka.data.wordnet import load_wordnet
    from matryoshka.evaluate.text import evaluate_text_retrieval
    from matryoshka.nn.text_encoder import load_sentence_transformer

    queries, corpus, relevant = load_wordnet(test_size=2000).retrieval_set("test")
    model = load_sentence_transformer("all-MiniLM-L6-v2")
    print(evaluate_text_retrieval(model, queries, corpus, relevant, dims=[24, 48, 384]))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from matryoshka.errors import InputError
from matryoshka.evaluate.metrics import knn_search, ranking_metrics, reciprocal_ranks
from matryoshka.truncate import truncate


def prefix_retrieval_metrics(
    query_z: torch.Tensor, corpus_z: torch.Tensor, relevant: list[list[int]], dims: Sequence[int], k: int = 10
) -> dict[int, dict[str, float]]:
    """mAP@k, recall@k, top-1 and MRR at every prefix dim of precomputed full-dim embeddings."""
    if len(relevant) != len(query_z):
        raise ValueError(f"got {len(relevant)} relevance lists for {len(query_z)} queries")
    # A corpus smaller than k ranks all of it; the metric keeps its name (mAP@10 over 5 documents is still @10).
    searched = min(k, corpus_z.shape[0])
    num_relevant = torch.tensor([len(r) for r in relevant])
    relevant_sets = [set(r) for r in relevant]
    out: dict[int, dict[str, float]] = {}
    for m in dims:
        q, c = truncate(query_z, m), truncate(corpus_z, m)
        idx = knn_search(q, c, searched)
        rel = torch.tensor([[int(j) in s for j in row] for row, s in zip(idx.tolist(), relevant_sets, strict=True)])
        metrics = ranking_metrics(rel, num_relevant)
        metrics["mrr"] = reciprocal_ranks(q, c, relevant).mean().item()
        out[m] = {
            f"map@{k}": metrics[f"map@{searched}"],
            f"r@{k}": metrics[f"r@{searched}"],
            "top1": metrics["top1"],
            "mrr": metrics["mrr"],
        }
    return out


def evaluate_text_retrieval(
    model: Any | Callable[[list[str]], torch.Tensor],
    queries: list[str],
    corpus: list[str],
    relevant: list[list[int]],
    dims: Sequence[int],
    k: int = 10,
    batch_size: int = 256,
) -> dict[int, dict[str, float]]:
    """Per-dim retrieval metrics of a SentenceTransformer (or any ``texts -> (n, d) tensor`` function)."""
    if callable(getattr(model, "encode", None)):
        from matryoshka.nn.text_encoder import encode_texts

        def encode(texts: list[str]) -> torch.Tensor:
            return encode_texts(model, texts, batch_size)
    else:
        encode = model
    query_z, corpus_z = encode(queries), encode(corpus)
    if max(dims) > query_z.shape[1]:
        raise ValueError(f"dim {max(dims)} is larger than the model's {query_z.shape[1]} dims")
    return prefix_retrieval_metrics(query_z, corpus_z, relevant, dims, k)


def read_text_pairs(queries: Path, documents: Path) -> tuple[list[str], list[str], list[list[int]]]:
    """(queries, corpus, relevant) from two text files, line i of one paired with line i of the other; repeated
    queries gather their documents, repeated documents are one corpus entry."""
    from matryoshka.data.pairs import PairsData, TextPair

    q_lines, d_lines = (p.read_text(encoding="utf-8").splitlines() for p in (queries, documents))
    if len(q_lines) != len(d_lines):
        raise InputError(f"{queries} has {len(q_lines)} lines and {documents} {len(d_lines)}; pair them line by line")
    pairs = [TextPair(q, d) for q, d in zip(q_lines, d_lines, strict=True) if q.strip() and d.strip()]
    if not pairs:
        raise InputError(f"{queries} and {documents} hold no non-empty pairs")
    return PairsData({"test": pairs}).retrieval_set("test")
