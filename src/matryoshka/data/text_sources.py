"""The text pair sources behind one loader: WordNet's lemma -> gloss pairs, or the user's own pairs file.

Example::

    from matryoshka.data.config import TextDataConfig
    from matryoshka.data.text_sources import load_text_data

    data = load_text_data(TextDataConfig(name="wordnet", train_size=100, val_size=20, test_size=50))
    queries, corpus, relevant = data.retrieval_set("test")
"""

from __future__ import annotations

from matryoshka.data.config import TextDataConfig
from matryoshka.data.pairs import PairsData, load_pairs
from matryoshka.data.wordnet import WordNetData, load_wordnet


def load_text_data(cfg: TextDataConfig) -> WordNetData | PairsData:
    """The WordNet pairs, or the user's own pairs file, a ``data:`` section of a text config describes."""
    if cfg.name == "pairs":
        return load_pairs(
            cfg.path,
            query_column=cfg.query_column,
            document_column=cfg.document_column,
            negative_column=cfg.negative_column,
            val_fraction=cfg.val_fraction,
            test_fraction=cfg.test_fraction,
            seed=cfg.seed,
            train_size=cfg.train_size,
        )
    return load_wordnet(
        cfg.root,
        val_size=cfg.val_size,
        test_size=cfg.test_size,
        train_size=cfg.train_size,
        seed=cfg.seed,
        query_style=cfg.query_style,
    )
