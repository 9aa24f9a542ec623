"""Writes logged since an index version, applied to it: the id map and write segment an
:class:`~matryoshka.index.IndexStore` serves from, and the one compacted index that
:meth:`MatryoshkaIndex.load <matryoshka.index.MatryoshkaIndex.load>` returns. Both apply the same records the
same way through these functions.

* An add appends unit rows to the segment and maps each id to its segment row (``-row - 1``); an id already there
  is a ``KeyError``.
* A delete marks the row of each id, in the main index (``>= 0``) or in the segment; an unknown id is a
  ``KeyError``.
* :func:`replay` applies a log's records in order; a record that does not apply means the log does not belong to
  the version, a :class:`~matryoshka.index.CorruptIndexError`.

The functions take the main index as any object with the :class:`~matryoshka.index.MatryoshkaIndex` interface
(this module sits below it).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from matryoshka.errors import InputError
from matryoshka.index import wal
from matryoshka.index.disk import DiskRows
from matryoshka.index.errors import CorruptIndexError
from matryoshka.index.ids import check_ids
from matryoshka.index.segment import Segment
from matryoshka.index.texts import check_texts

if TYPE_CHECKING:
    from matryoshka.index.index import MatryoshkaIndex


def live_where(base: MatryoshkaIndex) -> dict:
    """id -> row of every live row of the main index."""
    alive = base.alive_positions()
    return dict(zip(base.arrays().ids[alive].tolist(), alive.tolist(), strict=True))


def add_rows(where: dict, segment: Segment, unit: np.ndarray, ids: np.ndarray, texts: np.ndarray | None) -> None:
    """Append checked unit rows to ``segment`` and map their ids (``KeyError`` for an id already mapped)."""
    kind = "str" if ids.dtype == object else "int"
    start = segment.append(unit, ids, kind, texts)
    for offset, id_ in enumerate(ids.tolist()):
        if id_ in where:
            raise KeyError(f"id {id_!r} is already in the index")
        where[id_] = -(start + offset) - 1  # negative: a segment row


def delete_rows(base: MatryoshkaIndex, where: dict, segment: Segment, ids: np.ndarray) -> None:
    """Mark the rows of ``ids`` deleted, in the main index or the segment (``KeyError`` for an unknown id)."""
    in_base = []
    for id_ in ids.tolist():
        position = where.pop(id_)
        if position >= 0:
            in_base.append(position)
        else:
            segment.delete(-position - 1)
    if in_base:
        base.delete_positions(np.array(in_base))  # one call for the batch


def replay(
    records: list[wal.Record],
    id_kind: Callable[[], str | None],
    add: Callable[[np.ndarray, np.ndarray, np.ndarray | None], None],
    delete: Callable[[np.ndarray], None],
    root: Path,
) -> None:
    """Apply logged ``records`` in order through ``add`` and ``delete``; ``id_kind()``: the ids' kind so far."""
    for number, record in enumerate(records):
        try:
            if record.op == wal.DELETE:
                delete(check_ids(record.ids, id_kind())[0])
            else:
                add(record.vectors, check_ids(record.ids, id_kind())[0], check_texts(record.texts, len(record.ids)))
        except (KeyError, ValueError, InputError) as e:
            raise CorruptIndexError(f"{root}: log record {number} does not apply: {e}") from e


def folded(base: MatryoshkaIndex, segment: Segment, root: Path, stacklevel: int = 3) -> MatryoshkaIndex:
    """The main index with the segment's live rows folded in and deleted rows dropped (``base`` itself when there
    is nothing to fold: a memory-mapped index stays mapped)."""
    if segment.n == 0 and base.n_deleted == 0:
        return base
    vectors, ids, dead = segment.rows()
    if isinstance(base.arrays().codes, DiskRows):
        warnings.warn(
            f"{root} has writes logged since its last compaction: folding them in reads every row into RAM; "
            "serve it through IndexStore (mrl serve) or run mrl index compact to keep the rows on the disk",
            stacklevel=stacklevel,
        )
    texts = segment.texts()[~dead] if segment.n_texts else None
    return base.compacted(vectors[~dead], ids[~dead], texts=texts)


def with_log(base: MatryoshkaIndex, records: list[wal.Record], root: Path) -> MatryoshkaIndex:
    """``base`` with the logged ``records`` applied, as one compacted index (what a store would fold them into)."""
    if not records and not base.n_deleted:
        return base  # nothing logged: no id map to build (a dict of every id, transient but large)
    where, segment = live_where(base), Segment(base.dim, base.id_kind)

    def id_kind() -> str | None:
        return base.id_kind or segment.kind

    replay(
        records,
        id_kind,
        lambda unit, ids, texts: add_rows(where, segment, unit, ids, texts),
        lambda ids: delete_rows(base, where, segment, ids),
        root,
    )
    return folded(base, segment, root, stacklevel=4)
