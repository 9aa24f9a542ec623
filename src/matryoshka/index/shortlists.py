"""The shortlist structures of a :class:`~matryoshka.index.MatryoshkaIndex`: one FAISS index per shortlist dim
holding every row's unit prefix (raw, or rotated into the index's basis), flat or an HNSW graph whose prefixes are
float32, float16, int8 or int4 codes."""

from __future__ import annotations

import faiss
import numpy as np

from matryoshka.index.stages import EXACT_CHUNK
from matryoshka.index.storage import normalize

SHORTLIST_CODES = {"float32": 4, "float16": 2, "int8": 1, "int4": 0.5}  # bytes per prefix dim
QUANTIZERS = {
    "float16": faiss.ScalarQuantizer.QT_fp16,
    "int8": faiss.ScalarQuantizer.QT_8bit,
    "int4": faiss.ScalarQuantizer.QT_4bit,
}


def structure_bytes(shortlist: str, dims: list[int], hnsw_m: int, codes: str) -> int:
    """Bytes per vector of the shortlist structures: each prefix in its codes (int4 packs two dims a byte) and,
    for HNSW, the bottom layer of each graph (2M links of 4 bytes)."""
    links = 8 * hnsw_m * len(dims) if shortlist == "hnsw" else 0
    return sum(int(np.ceil(SHORTLIST_CODES[codes] * d)) for d in dims) + links


class ShortlistStructures:
    """Building and filling the shortlist structures, and the prefixes they compare by."""

    def _new_shortlist(self, d: int) -> faiss.Index:
        if self.shortlist == "hnsw":
            if self.shortlist_codes == "float32":
                index = faiss.IndexHNSWFlat(d, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            else:
                quantizer = QUANTIZERS[self.shortlist_codes]
                index = faiss.IndexHNSWSQ(d, quantizer, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 64
            return index
        return faiss.IndexFlatIP(d)

    def _fill_shortlist(self) -> None:
        """(Re)build every shortlist index from the stored vectors."""
        self._shortlist = {d: self._new_shortlist(d) for d in self.shortlist_dims}
        for start in range(0, self.rows, EXACT_CHUNK):
            rows = self._rows(np.arange(start, min(start + EXACT_CHUNK, self.rows)), self.dim, bulk=True)
            self._add_to_shortlists(rows)

    def _add_to_shortlists(self, rows: np.ndarray) -> None:
        """Add full-dim rows to every shortlist structure, as their (rotated) unit prefixes."""
        for d, index in self._shortlist.items():
            prefixes = normalize(self.query_prefix(rows, d))
            if not index.is_trained:  # int8 codes: the quantiser's ranges come from the first rows added
                index.train(prefixes)
            index.add(prefixes)

    def structure_rows(self, d: int, positions: np.ndarray) -> np.ndarray:
        """The d-dim prefixes the shortlist structure of dim ``d`` holds for rows at ``positions`` (any shape),
        decoded to float32."""
        flat = positions.reshape(-1)
        rows = self._shortlist[d].reconstruct_batch(flat) if len(flat) else np.zeros((0, d), np.float32)
        return rows.reshape(*positions.shape, d)

    def query_prefix(self, x: np.ndarray, d: int) -> np.ndarray:
        """The d-dim prefix the index compares rows by: the first d dims, or with a basis (d below the full dim)
        the first d coordinates in it (one (dim x d) product)."""
        if self.basis is None or d >= self.dim:
            return x[:, :d]
        rows = self._basis_rows.get(d)  # one contiguous row per coordinate
        if rows is None:
            rows = self._basis_rows[d] = np.ascontiguousarray(self.basis[:, :d].T)
        if len(x) == 1:
            # One query: FAISS's compiled loop on the calling thread (BLAS would split a gemv this size over its
            # threads, which stall beside a busy process; see threads.py).
            out = np.empty((1, d), dtype=np.float32)
            query = np.ascontiguousarray(x[0], dtype=np.float32)
            faiss.fvec_inner_products_ny(
                faiss.swig_ptr(out[0]), faiss.swig_ptr(query), faiss.swig_ptr(rows), self.dim, d
            )
            return out
        return x @ rows.T

    @property
    def rotated(self) -> bool:
        """Whether the shortlist prefixes are coordinates in a fitted basis (see :meth:`with_basis`)."""
        return self.basis is not None
