"""WordNet 3.0 as query -> document pairs for text retrieval: a lemma (the query) and its synset's gloss (the document).

Read from the Debian package ``wordnet-base`` (``/usr/share/wordnet/data.{noun,verb,adj,adv}``); another folder with
the same files can be given as ``root`` or in $MATRYOSHKA_WORDNET. Each data line is

    offset lex_filenum ss_type w_cnt(hex) word lex_id [word lex_id ...] p_cnt [pointers ...] [frames ...] | gloss

and the gloss is a definition followed by quoted examples: ``definition; "example one"; "example two"``.

Splits are by synset (seeded), so no test gloss is ever seen in training. Evaluation follows the usual
text-retrieval set-up: the corpus is every test gloss, each distinct test lemma is a query, and a gloss is relevant
to a query when its synset holds that lemma (a word with two test senses has two relevant glosses).

Example::

    from matryoshka.data.wordnet import load_wordnet
    wn = load_wordnet(test_size=2000)
    print(len(wn.train), wn.train[0])          # 110659 WordNetPair(query='...', document='...', synset='n00001740')
    queries, corpus, relevant = wn.retrieval_set("test")
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from matryoshka.data.errors import CorruptDataError, DataNotFoundError
from matryoshka.errors import InputError

DEFAULT_ROOT = "/usr/share/wordnet"
PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")
_ADJ_MARKER = re.compile(r"\((a|p|ip)\)$")  # syntactic markers on some adjectives, e.g. "galore(ip)"


@dataclass(frozen=True)
class Synset:
    id: str  # part-of-speech letter + offset, e.g. "n00217014"
    lemmas: tuple[str, ...]  # with spaces, e.g. ("laying waste", "ruin")
    definition: str
    examples: tuple[str, ...]


@dataclass(frozen=True)
class WordNetPair:
    query: str
    document: str
    synset: str


@dataclass
class WordNetData:
    """Synsets split into train / val / test; pairs for training, retrieval sets for evaluation."""

    train_synsets: list[Synset]
    val_synsets: list[Synset]
    test_synsets: list[Synset]
    query_style: str = "lemma"
    seed: int = 0
    _pairs: dict[str, list[WordNetPair]] = field(default_factory=dict, repr=False)

    @property
    def train(self) -> list[WordNetPair]:
        return self.pairs("train")

    def pairs(self, split: str) -> list[WordNetPair]:
        """One (query, gloss) pair per synset of ``split``, the query a seeded random lemma of the synset.

        One pair per synset keeps a gloss from appearing twice in a batch, where it would be its own negative.
        """
        if split not in self._pairs:
            rng = random.Random(f"{self.seed}-{split}")
            self._pairs[split] = [
                WordNetPair(_query(s, rng.choice(s.lemmas), self.query_style, rng), s.definition, s.id)
                for s in self._synsets(split)
            ]
        return self._pairs[split]

    def retrieval_set(self, split: str = "test") -> tuple[list[str], list[str], list[list[int]]]:
        """(queries, corpus, relevant): every distinct lemma of the split's synsets, every gloss, and per query the
        indices of the glosses whose synset holds the lemma."""
        synsets = self._synsets(split)
        corpus = [s.definition for s in synsets]
        relevant: dict[str, list[int]] = {}
        for i, s in enumerate(synsets):
            for lemma in s.lemmas:
                docs = relevant.setdefault(lemma, [])
                if i not in docs:
                    docs.append(i)
        queries = sorted(relevant)
        return queries, corpus, [relevant[q] for q in queries]

    def _synsets(self, split: str) -> list[Synset]:
        if split not in ("train", "val", "test"):
            raise InputError(f"split must be train, val or test, got {split!r}")
        return {"train": self.train_synsets, "val": self.val_synsets, "test": self.test_synsets}[split]


def _query(synset: Synset, lemma: str, style: str, rng: random.Random) -> str:
    if style == "lemma" or not synset.examples:
        return lemma
    return f"{lemma}: {rng.choice(synset.examples)}"


def parse_data_line(line: str, pos: str) -> Synset | None:
    """One synset from a ``data.<pos>`` line; None for the licence header (lines starting with spaces)."""
    if line.startswith("  ") or not line.strip():
        return None
    head, sep, gloss = line.partition(" | ")
    fields = head.split()
    if not sep or len(fields) < 6:
        raise CorruptDataError(f"malformed WordNet data line in data.{pos}: {line[:80]!r}")
    try:
        count = int(fields[3], 16)
    except ValueError:
        raise CorruptDataError(f"bad word count {fields[3]!r} in data.{pos}") from None
    words = fields[4 : 4 + 2 * count : 2]
    lemmas = tuple(dict.fromkeys(_ADJ_MARKER.sub("", w).replace("_", " ") for w in words))
    parts = [p.strip() for p in gloss.strip().split(";")]
    definition = "; ".join(p for p in parts if not p.startswith('"')) or gloss.strip()
    examples = tuple(p.strip('"') for p in parts if p.startswith('"') and len(p) > 2)
    return Synset(f"{pos[0]}{fields[0]}", lemmas, definition, examples)


def read_synsets(root: str | Path | None = None) -> list[Synset]:
    """Every synset of WordNet, in file order (nouns, verbs, adjectives, adverbs)."""
    folder = Path(root or os.environ.get("MATRYOSHKA_WORDNET") or DEFAULT_ROOT)
    synsets: list[Synset] = []
    for pos in PARTS_OF_SPEECH:
        path = folder / f"data.{pos}"
        if not path.exists():
            raise DataNotFoundError(
                f"WordNet file {path} not found; install it with `apt-get install wordnet-base` "
                "or point $MATRYOSHKA_WORDNET at a folder holding data.noun/verb/adj/adv"
            )
        with open(path, encoding="utf-8", errors="replace") as f:
            synsets.extend(s for line in f if (s := parse_data_line(line, pos)) is not None)
    if not synsets:
        raise CorruptDataError(f"no synsets found under {folder}")
    return synsets


def load_wordnet(
    root: str | Path | None = None,
    val_size: int = 1000,
    test_size: int = 5000,
    train_size: int | None = None,
    seed: int = 0,
    query_style: str = "lemma",
) -> WordNetData:
    """Synsets split by a seeded shuffle: ``test_size`` for test, ``val_size`` for validation, the rest (or a
    ``train_size`` subset of it) for training. ``query_style``: "lemma" or "lemma_example" (lemma + an example)."""
    if query_style not in ("lemma", "lemma_example"):
        raise InputError(f"query_style must be 'lemma' or 'lemma_example', got {query_style!r}")
    synsets = read_synsets(root)
    if val_size < 0 or test_size < 1 or val_size + test_size >= len(synsets):
        raise InputError(f"val_size={val_size} and test_size={test_size} leave no training synsets of {len(synsets)}")
    order = list(range(len(synsets)))
    random.Random(seed).shuffle(order)
    shuffled = [synsets[i] for i in order]
    test, val, train = (
        shuffled[:test_size],
        shuffled[test_size : test_size + val_size],
        shuffled[test_size + val_size :],
    )
    if train_size is not None:
        train = train[:train_size]
    return WordNetData(train, val, test, query_style, seed)
