"""The user's own (query, document) pairs for text fine-tuning, from a CSV / TSV / JSON Lines / Parquet file.

Rows are split by a seeded shuffle into train / val / test. For evaluation each split becomes a retrieval set: every
distinct query of the split searches every distinct document of the split; relevant are the documents paired with
it. An optional hard-negative column adds one negative document per training pair to the loss.

Example::

    data = load_pairs("faq.csv", query_column="question", document_column="answer")
    queries, corpus, relevant = data.retrieval_set("test")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from matryoshka.data.errors import CorruptDataError
from matryoshka.data.sources import _need_columns, read_table
from matryoshka.errors import InputError


@dataclass(frozen=True)
class TextPair:
    query: str
    document: str
    negative: str | None = None


@dataclass
class PairsData:
    """Pairs split into train / val / test, with the same interface as the WordNet data."""

    splits: dict[str, list[TextPair]]

    @property
    def train(self) -> list[TextPair]:
        return self.splits["train"]

    def pairs(self, split: str) -> list[TextPair]:
        return self.splits[split]

    def retrieval_set(self, split: str = "test") -> tuple[list[str], list[str], list[list[int]]]:
        """(queries, corpus, relevant) of a split: distinct queries, distinct documents, relevant document indices."""
        if split not in self.splits:
            raise InputError(f"split must be train, val or test, got {split!r}")
        corpus: dict[str, int] = {}
        relevant: dict[str, list[int]] = {}
        for p in self.splits[split]:
            doc = corpus.setdefault(p.document, len(corpus))
            docs = relevant.setdefault(p.query, [])
            if doc not in docs:
                docs.append(doc)
        queries = list(relevant)
        return queries, list(corpus), [relevant[q] for q in queries]


def _texts(table: object, column: str, file: Path) -> list[str]:
    values = table[column]  # type: ignore[index]
    for row, v in enumerate(values):
        if not isinstance(v, str) or not v.strip():
            raise CorruptDataError(f"{file}: row {row + 1}, column {column!r}: empty or not text ({v!r})")
    return list(values)


def load_pairs(
    path: str | Path,
    query_column: str = "query",
    document_column: str = "document",
    negative_column: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    train_size: int | None = None,
) -> PairsData:
    """The rows of ``path`` split into train / val / test; ``train_size`` keeps a seeded subset of the train rows
    (val and test are unchanged, so runs of different sizes are scored on the same pairs)."""
    file = Path(path)
    table = read_table(file)
    _need_columns(table, [query_column, document_column] + ([negative_column] if negative_column else []), file)
    queries, documents = _texts(table, query_column, file), _texts(table, document_column, file)
    negatives = _texts(table, negative_column, file) if negative_column else [None] * len(queries)
    pairs = [TextPair(q, d, n) for q, d, n in zip(queries, documents, negatives, strict=True)]
    n = len(pairs)
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    if min(n_test, n_val) < 2 or n - n_test - n_val < 2:
        raise CorruptDataError(
            f"{file}: {n} pairs are too few for train / val / test splits of {1 - val_fraction - test_fraction:.0%} / "
            f"{val_fraction:.0%} / {test_fraction:.0%} (each needs at least 2 pairs)"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    if train_size is not None:
        train = train[:train_size]  # already a seeded shuffle
    return PairsData({name: [pairs[i] for i in idx] for name, idx in (("train", train), ("val", val), ("test", test))})
