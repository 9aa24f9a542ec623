"""Hard negatives mined with the model being trained: one per training pair, found before the first step.

A pair's mined negative is the training document that the model, at its starting weights, ranks highest for the
pair's query among those that are no positive of it (every document paired with the same query text is one) and
that score at most ``1 - margin`` times the positive's cosine: a margin keeps near-copies of the positive, which
are often unlabelled positives, out. The search is sentence-transformers'
:func:`~sentence_transformers.util.mine_hard_negatives` (``relative_margin``, ``sampling_strategy="top"``) over the
distinct training documents. In training the negative joins the batch's candidates, as a negative column of the
data does (:class:`~matryoshka.train.text_trainer.TextTrainer`); pairs that come with their own negative keep it.

    mrl train -c configs/wordnet_minilm.yaml --set model.mine_negatives=true

Example::

    from sentence_transformers import SentenceTransformer
    from matryoshka.data.pairs import TextPair
    from matryoshka.train.mined_negatives import mine_negatives

    model = SentenceTransformer("path/to/all-MiniLM-L6-v2")
    pairs = [TextPair("car", "a motor vehicle"), TextPair("bus", "a large vehicle for passengers"),
             TextPair("cat", "a small feline pet"), TextPair("dog", "a domesticated canine")]
    for pair in mine_negatives(model, pairs, margin=0.05):
        print(pair.query, "->", pair.negative)
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from matryoshka.data.pairs import TextPair
from matryoshka.nn.text_encoder import bars_on_terminal

# Best-ranked documents searched for one that keeps the margin (sentence-transformers' default, 10 + the most
# positives of a query, left 34 of 128 WordNet pairs of the tests without one).
CANDIDATES = 100


def mine_negatives(
    model: Any, pairs: list, margin: float = 0.05, batch_size: int = 64, verbose: bool = True
) -> list[TextPair]:
    """``pairs`` with a mined hard negative each (``negative`` stays None where no document passes the margin, and
    a negative already there is kept). ``verbose``: one line with what was mined, and sentence-transformers' table
    of scores on a terminal (its encoding bars it always shows)."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    todo = [p for p in pairs if getattr(p, "negative", None) is None]
    if not todo:
        return list(pairs)
    started = time.perf_counter()
    dataset = Dataset.from_dict({"query": [p.query for p in todo], "document": [p.document for p in todo]})
    mined = mine_hard_negatives(
        dataset,
        model,
        anchor_column_name="query",
        positive_column_name="document",
        relative_margin=margin,
        range_max=CANDIDATES,
        num_negatives=1,
        sampling_strategy="top",
        output_format="triplet",
        batch_size=batch_size,
        use_faiss=True,  # a compiled top-k over the documents; no (queries x documents) matrix is held
        verbose=verbose and bars_on_terminal(),  # its table of scores and skips, a screenful in a log file
    )
    found = {(row["query"], row["document"]): row["negative"] for row in mined}
    out = [
        p if getattr(p, "negative", None) is not None else _with_negative(p, found.get((p.query, p.document)))
        for p in pairs
    ]
    if verbose:
        mined_count = sum((p.query, p.document) in found for p in todo)
        seconds = time.perf_counter() - started
        print(f"mined hard negatives for {mined_count:,} of {len(todo):,} pairs (margin {margin}) in {seconds:.0f} s")
    return out


def _with_negative(pair, negative: str | None) -> TextPair:
    if isinstance(pair, TextPair):
        return dataclasses.replace(pair, negative=negative)
    return TextPair(pair.query, pair.document, negative)
