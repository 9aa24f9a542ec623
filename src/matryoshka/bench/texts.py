"""Distinct real texts found on a Debian machine, for the text corpus of ``mrl bench retrieval --corpus text``.

Nobody here wrote them: WordNet glosses and their examples (``wordnet-base``), Debian package descriptions (the
synopses and every paragraph of the long descriptions, from apt's ``Translation-en`` lists: ``apt-get update -o
Acquire::Languages=en``), English man pages (each paragraph, roff markup stripped) and ``/usr/share/doc``
(changelog entries and paragraphs of plain-text files). Texts are whitespace-normalised, kept when they hold 4 to
200 words, and deduplicated case-insensitively; the order is fixed, so the same machine gives the same list.

Example::

    from matryoshka.bench.texts import collect_texts
    texts, counts = collect_texts(limit=500_000)
    print(len(texts), counts)     # {'wordnet': ..., 'debian': ..., 'man': ..., 'doc': ...}
"""

from __future__ import annotations

import gzip
import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from matryoshka.data.wordnet import read_synsets
from matryoshka.errors import InputError

APT_LISTS = Path("/var/lib/apt/lists")
MAN_ROOT = Path("/usr/share/man")
DOC_ROOT = Path("/usr/share/doc")
MIN_WORDS, MAX_WORDS = 4, 200

_ROFF_ESCAPE = re.compile(r"\\f[BIRPC1-4]|\\f\[[A-Z]*\]|\\s[-+]?\d|\\[&|^%:]|\\\(\w\w|\\\[\w+\]|\\\*\(?\w+|\\e")
_SPACE = re.compile(r"\s+")


def wordnet_texts(root: str | Path | None = None) -> Iterator[str]:
    """Each synset's definition, then each of its examples."""
    for synset in read_synsets(root):
        yield synset.definition
        yield from synset.examples


def _read_list(path: Path) -> str:
    """An apt list file, decompressed by apt's own helper (lz4, gz, xz) when it is compressed."""
    if path.suffix in (".lz4", ".gz", ".xz", ".zst"):
        done = subprocess.run(
            ["/usr/lib/apt/apt-helper", "cat-file", str(path)], capture_output=True, text=True, check=False
        )
        return done.stdout if done.returncode == 0 else ""
    return path.read_text(errors="replace")


def debian_texts(lists: Path = APT_LISTS) -> Iterator[str]:
    """Package synopses and the paragraphs of their long descriptions (``Description-en`` records)."""
    for path in sorted(lists.glob("*Translation-en*")):
        paragraph: list[str] = []
        for line in _read_list(path).splitlines():
            if line.startswith("Description-en:"):
                yield line.split(":", 1)[1]
                paragraph = []
            elif line.startswith(" ") and line.strip() != ".":
                paragraph.append(line)
            elif paragraph:  # a " ." line or the record's end closes a paragraph
                yield " ".join(paragraph)
                paragraph = []
        if paragraph:
            yield " ".join(paragraph)


def debian_pairs(lists: Path = APT_LISTS) -> Iterator[tuple[str, str]]:
    """(synopsis, long description) of each package record that has both: real query -> document pairs."""
    for path in sorted(lists.glob("*Translation-en*")):
        synopsis, body = None, []
        for line in [*_read_list(path).splitlines(), ""]:
            if line.startswith("Description-en:"):
                synopsis, body = line.split(":", 1)[1].strip(), []
            elif line.startswith(" ") and synopsis is not None:
                if line.strip() != ".":
                    body.append(line.strip())
            elif synopsis is not None:
                if body:
                    yield synopsis, " ".join(body)
                synopsis = None


def _plain(line: str) -> str:
    return _ROFF_ESCAPE.sub("", line).replace("\\-", "-").replace("\\", "")


def roff_paragraphs(source: str) -> Iterator[str]:
    """Plain paragraphs of a man page: text lines between paragraph macros, markup removed."""
    paragraph: list[str] = []
    for line in source.splitlines():
        if line.startswith((".", "'")):  # a macro (.PP, .SH, .TP, ...) or a comment: ends the paragraph
            if line[1:3] in ("B ", "I ") or line[1:4] in ("BR ", "IR ", "RB ", "RI ", "BI ", "IB "):
                paragraph.append(_plain(line.split(" ", 1)[1].replace('"', "")))  # inline font macros carry words
                continue
            if paragraph:
                yield " ".join(paragraph)
            paragraph = []
        elif line.strip():
            paragraph.append(_plain(line))
        elif paragraph:
            yield " ".join(paragraph)
            paragraph = []
    if paragraph:
        yield " ".join(paragraph)


def man_texts(root: Path = MAN_ROOT) -> Iterator[str]:
    """Paragraphs of the English man pages (``man1`` ... ``man9``; translations live in other folders)."""
    for path in sorted(root.glob("man*/*")):
        try:
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
        yield from roff_paragraphs(raw.decode("utf-8", errors="replace"))


def doc_texts(root: Path = DOC_ROOT) -> Iterator[str]:
    """Changelog entries (``* ...`` items) and paragraphs of plain-text files under ``/usr/share/doc``."""
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        if path.name == "copyright" or path.suffix in (".html", ".png", ".svg", ".pdf", ".js", ".css", ".json"):
            continue  # licence texts repeat; markup and images are not prose
        try:
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
        if b"\0" in raw[:4096]:
            continue  # binary
        text = raw.decode("utf-8", errors="replace")
        if "changelog" in path.name.lower():
            yield from (_SPACE.sub(" ", item) for item in re.split(r"\n\s*[*+-] ", text)[1:])
        else:
            yield from re.split(r"\n\s*\n", text)


def clean(texts: Iterable[str]) -> Iterator[str]:
    """Whitespace-normalised texts of MIN_WORDS to MAX_WORDS words."""
    for text in texts:
        text = _SPACE.sub(" ", text).strip()
        if MIN_WORDS <= text.count(" ") + 1 <= MAX_WORDS:
            yield text


def collect_texts(limit: int | None = None, sources: dict | None = None) -> tuple[list[str], dict[str, int]]:
    """Distinct texts from every source in turn (at most ``limit``), and how many each source gave."""
    sources = sources or {"wordnet": wordnet_texts, "debian": debian_texts, "man": man_texts, "doc": doc_texts}
    seen: set[str] = set()
    texts: list[str] = []
    counts: dict[str, int] = {}
    for name, source in sources.items():
        before = len(texts)
        for text in clean(source()):
            key = text.lower()
            if key not in seen:
                seen.add(key)
                texts.append(text)
                if limit is not None and len(texts) >= limit:
                    break
        counts[name] = len(texts) - before
        if limit is not None and len(texts) >= limit:
            break
    return texts, counts


def debian_pairs_file(count: int, folder: Path) -> Path:
    """A CSV of ``count`` (query: synopsis, document: description) rows of distinct synopses, a seeded sample of
    this machine's apt lists, written once into ``folder`` (and read from there after)."""
    file = folder / f"debian-pairs-{count}.csv"
    if file.exists():
        return file
    import pandas as pd

    seen: dict[str, str] = {}
    for synopsis, description in debian_pairs():
        seen.setdefault(synopsis, description)
    rows = sorted(seen.items())
    if len(rows) < count:
        raise InputError(
            f"{len(rows):,} Debian package descriptions in {APT_LISTS}, fewer than the {count:,} pairs asked: "
            "`apt-get update -o Acquire::Languages=en` fetches them (the lists of a container often leave them out)"
        )
    pick = np.random.default_rng(0).permutation(len(rows))[:count]
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    pd.DataFrame([rows[i] for i in pick], columns=["query", "document"]).to_csv(tmp, index=False)
    tmp.rename(file)
    return file
