"""Texts kept beside ids: at most one string per row (the document a hit shows), None for a row kept without one.

An index keeps them as an object array aligned with its rows, or keeps none at all (None instead of the array, as
in every folder written before texts were kept). On disk they are one UTF-8 blob plus offsets, like string ids,
and a flag per row saying whether it has a text; in the write-ahead log they travel inside the add record that
carries the rows, under the same checksum.

Example::

    from matryoshka.index.texts import check_texts
    texts = check_texts(["a small dog barks", None], 2)   # object array: a text, and a row without one
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from matryoshka.index.errors import IndexInputError

FILES = ("text_bytes", "text_offsets", "text_kept")  # the arrays a version folder keeps texts in


def check_texts(texts, n: int, what: str = "texts") -> np.ndarray | None:
    """``texts`` for ``n`` new rows as an object array of str or None, or None when no row gets a text.

    Each text must be a string that UTF-8 can write (no lone surrogates); the count must be ``n``."""
    if texts is None:
        return None
    values = texts.ravel().tolist() if isinstance(texts, np.ndarray) else list(texts)
    if len(values) != n:
        raise IndexInputError(f"got {len(values)} {what} for {n} vectors: give one text per vector, in order")
    for i, text in enumerate(values):
        if text is not None and not isinstance(text, str):
            raise IndexInputError(f"{what}[{i}] must be a string or None, got {type(text).__name__}")
        if text is not None and not text.isascii():
            try:
                text.encode()
            except UnicodeEncodeError:
                raise IndexInputError(f"{what}[{i}] is not valid Unicode text (it holds a lone surrogate)") from None
    out = np.empty(n, dtype=object)
    out[:] = values
    return out if kept_any(out) else None


def kept_any(texts: np.ndarray | None) -> bool:
    """Whether any row of ``texts`` (an object array, or None) has a text."""
    return texts is not None and bool(np.not_equal(texts, None).any())


def no_texts(n: int) -> np.ndarray:
    """The texts of ``n`` rows kept without one."""
    return np.full(n, None, dtype=object)


def joined(old: np.ndarray | None, n_old: int, new: np.ndarray | None, n_new: int) -> np.ndarray | None:
    """The texts of ``n_old`` rows then ``n_new`` more (None stands for rows without texts), or None if none has one."""
    if old is None and new is None:
        return None
    return np.concatenate([no_texts(n_old) if old is None else old, no_texts(n_new) if new is None else new])


def save_texts(folder: Path, texts: np.ndarray) -> dict[str, Path]:
    """Write ``texts`` into ``folder``; returns {name: file} of what was written (for checksums)."""
    kept = np.not_equal(texts, None)
    encoded = [text.encode() if text is not None else b"" for text in texts.tolist()]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    files = {name: folder / f"{name}.npy" for name in FILES}
    np.save(files["text_bytes"], np.frombuffer(b"".join(encoded), dtype=np.uint8))
    np.save(files["text_offsets"], offsets)
    np.save(files["text_kept"], kept)
    return files


def load_texts(arrays: dict[str, np.ndarray], n: int) -> np.ndarray | None:
    """Texts from the arrays :func:`save_texts` wrote (already read by the caller), or None if the folder has none."""
    if not any(name in arrays for name in FILES):
        return None
    blob, offsets, kept = bytes(arrays["text_bytes"]), arrays["text_offsets"], arrays["text_kept"]
    if offsets.shape != (n + 1,) or kept.shape != (n,) or offsets[-1] != len(blob):
        raise ValueError(f"the text arrays ({offsets.shape}, {kept.shape}) do not match {n} rows")
    starts, ends = offsets[:-1].tolist(), offsets[1:].tolist()
    out = np.empty(n, dtype=object)
    out[:] = [blob[a:b].decode() if keep else None for a, b, keep in zip(starts, ends, kept.tolist(), strict=True)]
    return out


def texts_bytes(texts: np.ndarray | None) -> int:
    """RAM held by kept texts: the array, and a Python str object (49 bytes and its text) per text."""
    if texts is None:
        return 0
    return texts.nbytes + sum(len(t) + 49 for t in texts.tolist() if t is not None)
