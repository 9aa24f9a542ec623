"""Variants of one :class:`~matryoshka.index.MatryoshkaIndex` that autotune builds and compares: the same rows
under other shortlist structures, in another code encoding, or with rotated prefixes; the index then adopts the
winner's parts."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import numpy as np

from matryoshka.index import storage
from matryoshka.index.basis import check_basis
from matryoshka.index.errors import IndexInputError
from matryoshka.index.shortlists import check_shortlist_codes
from matryoshka.index.stages import EXACT_CHUNK


class IndexVariants:
    """Copies of an index sharing its rows; :meth:`adopt_shortlists` takes one's parts back."""

    def _snapshot(self):
        out = copy.copy(self)
        out._dead, out._dead_bits = self._dead.copy(), self._dead_bits.copy()  # a snapshot, like _n_dead
        out._norms, out._compiled, out._prepared = {}, {}, {}
        return out

    def with_shortlists(
        self, dims: Iterable[int], shortlist: str, hnsw_m: int = 16, hnsw_ef_search: int = 16, codes: str = "float32"
    ):
        """This index's rows (shared, not copied) under other shortlist structures (in its basis, their prefixes
        stored as ``codes``), built now."""
        dims = sorted(set(int(d) for d in dims))
        check_shortlist_codes(shortlist, codes, dims)
        out = self._snapshot()
        out.shortlist_dims, out.shortlist = dims, shortlist
        out.shortlist_codes = codes
        out.hnsw_m, out.hnsw_ef_search, out._params = hnsw_m, hnsw_ef_search, {}
        out.default_plan = None  # tuned for other structures
        out._fill_shortlist()
        return out

    def with_ef_search(self, hnsw_ef_search: int):
        """This index's rows and structures (shared) searched with another HNSW breadth: on the disk tier a wider
        graph search can buy a shorter shortlist, and so fewer reads."""
        out = self._snapshot()
        out.hnsw_ef_search, out._params = int(hnsw_ef_search), {}
        return out

    def with_basis(self, basis: np.ndarray | None):
        """This index's rows (shared) with its shortlist structures rebuilt over the first coordinates of each row
        in ``basis`` (a (dim, dim) orthogonal matrix; see :mod:`matryoshka.index.basis`), or over the raw prefixes
        (None). Full-dim scores are unchanged: the rows themselves are not rotated."""
        out = self._snapshot()
        out.basis = None if basis is None else check_basis(basis, self.dim)
        out._basis_rows, out._params = {}, {}
        out.default_plan = None
        out._fill_shortlist()
        return out

    def with_encoding(self, encoding: str):
        """This index's structures (shared) over its rows stored in another encoding (re-encoded now, in blocks)."""
        if encoding not in storage.ENCODINGS:
            raise IndexInputError(f"unknown encoding {encoding!r}; choose one of {storage.ENCODINGS}")
        out = self._snapshot()
        out.encoding = encoding
        blocks = [
            self._rows(np.arange(start, min(start + EXACT_CHUNK, self.rows)), self.dim, bulk=True)
            for start in range(0, self.rows, EXACT_CHUNK)
        ]
        out._codes, out._scales = storage.encode(np.concatenate(blocks or [np.zeros((0, self.dim))]), encoding)
        return out

    def adopt_shortlists(self, other) -> None:
        """Take ``other``'s shortlist structures, basis and code encoding (made by :meth:`with_shortlists`,
        :meth:`with_basis` or :meth:`with_encoding` from this index, unchanged since)."""
        if other.rows != self.rows or other._n_dead != self._n_dead:
            raise IndexInputError("this index changed after its structures were built: build them again")
        keys = ("shortlist_dims", "shortlist", "shortlist_codes", "hnsw_m", "hnsw_ef_search", "_shortlist", "_params")
        keys += ("encoding", "_codes", "_scales", "basis", "_basis_rows", "_compiled", "_prepared")
        self.__dict__.update({key: other.__dict__[key] for key in keys})
