"""The shortlist structures of a :class:`~matryoshka.index.MatryoshkaIndex`: one FAISS index per shortlist dim
holding every row's unit prefix (raw, or rotated into the index's basis), flat or an HNSW graph whose prefixes are
float32, float16, int8 or int4 codes (faiss's scalar quantiser), or product-quantised codes of 4 or 2 bits a dim
("pq4", "pq2": one byte for each pair or quad of dims, the codes DiskANN keeps in RAM)."""

from __future__ import annotations

import faiss
import numpy as np

from matryoshka.index.errors import IndexInputError
from matryoshka.index.stages import EXACT_CHUNK
from matryoshka.index.storage import normalize

SHORTLIST_CODES = {"float32": 4, "float16": 2, "int8": 1, "int4": 0.5, "pq4": 0.5, "pq2": 0.25}  # bytes per dim
PQ_DIMS = {"pq4": 2, "pq2": 4}  # dims per product-quantiser byte
PQ_MIN_TRAINING = 256  # rows a product quantiser needs for 8-bit codes (one per centroid); fewer get fewer bits
QUANTIZERS = {
    "float16": faiss.ScalarQuantizer.QT_fp16,
    "int8": faiss.ScalarQuantizer.QT_8bit,
    "int4": faiss.ScalarQuantizer.QT_4bit,
}
IP = faiss.METRIC_INNER_PRODUCT


def structure_bytes(shortlist: str, dims: list[int], hnsw_m: int, codes: str) -> int:
    """Bytes per vector of the shortlist structures: each prefix in its codes (int4 packs two dims a byte) and,
    for HNSW, each graph's bottom layer (2M links of 4 bytes) and its bookkeeping: an offset and a level per vector
    and the upper layers' links, 16 bytes at M=16 (measured: 144.3 bytes a vector of links, offsets and levels
    on 67k vectors)."""
    links = (8 * hnsw_m + 16) * len(dims) if shortlist == "hnsw" else 0
    return sum(int(np.ceil(SHORTLIST_CODES[codes] * d)) for d in dims) + links


def check_shortlist_codes(shortlist: str, codes: str, dims: list[int]) -> None:
    """Refuses codes that are unknown, compact codes on a flat shortlist and product-quantised codes of a prefix
    size they do not divide."""
    if codes not in SHORTLIST_CODES or (shortlist == "flat" and codes != "float32"):
        raise IndexInputError(
            f"unknown shortlist codes {codes!r}; choose one of {', '.join(SHORTLIST_CODES)} (compact codes with "
            "shortlist='hnsw' only)"
        )
    step = PQ_DIMS.get(codes, 1)
    uneven = [d for d in dims if d % step]
    if uneven:
        raise IndexInputError(f"{codes} codes need shortlist dims divisible by {step}; {uneven[0]} is not")


class ShortlistStructures:
    """Building and filling the shortlist structures, and the prefixes they compare by."""

    def _new_shortlist(self, d: int, training_rows: int = PQ_MIN_TRAINING) -> faiss.Index:
        if self.shortlist == "hnsw":
            if self.shortlist_codes == "float32":
                index = faiss.IndexHNSWFlat(d, self.hnsw_m, IP)
            elif self.shortlist_codes in PQ_DIMS:
                bits = min(8, max(1, int(np.log2(max(training_rows, 2)))))  # k-means needs a row per centroid
                index = faiss.IndexHNSWPQ(d, d // PQ_DIMS[self.shortlist_codes], self.hnsw_m, bits, IP)
                faiss.downcast_index(index.storage).pq.cp.min_points_per_centroid = 1  # few rows: no warning printed
            else:
                quantizer = QUANTIZERS[self.shortlist_codes]
                index = faiss.IndexHNSWSQ(d, quantizer, self.hnsw_m, IP)
            index.hnsw.efConstruction = 64
            return index
        return faiss.IndexFlatIP(d)

    def _fill_shortlist(self) -> None:
        """(Re)build every shortlist index from the stored vectors."""
        self._shortlist = {d: self._new_shortlist(d) for d in self.shortlist_dims}
        builders: dict[int, faiss.IndexHNSWFlat] = {}  # product-quantised graphs, built over float prefixes
        for start in range(0, self.rows, EXACT_CHUNK):
            rows = self._rows(np.arange(start, min(start + EXACT_CHUNK, self.rows)), self.dim, bulk=True)
            self._add_to_shortlists(rows, builders)
        self._take_graphs(builders)

    def _add_to_shortlists(self, rows: np.ndarray, builders: dict | None = None) -> None:
        """Add full-dim rows (already appended to the stored rows) to every shortlist structure, as their (rotated)
        unit prefixes. A product-quantised graph grows in ``builders`` (kept across calls, then
        :meth:`_take_graphs`; None: taken now)."""
        if not len(rows):
            return
        if builders is None and self._narrow_pq_codes() and self.rows >= PQ_MIN_TRAINING:
            self._fill_shortlist()  # fitted on fewer rows than 8-bit codes need: fitted again on all of them
            return
        pq = self.shortlist_codes in PQ_DIMS
        pending = {} if builders is None else builders
        for d, index in self._shortlist.items():
            prefixes = normalize(self.query_prefix(rows, d))
            if not index.is_trained:  # compact codes: the quantiser is fitted on the first rows added
                training = np.repeat(prefixes, 2, axis=0) if len(prefixes) == 1 else prefixes  # k-means: 2 or more
                if pq and len(training) < PQ_MIN_TRAINING:
                    index = self._shortlist[d] = self._new_shortlist(d, len(training))
                index.train(training)
                if pq:  # its code-to-code table (12 MiB at 48 bytes) goes unused
                    faiss.downcast_index(index.storage).pq.sdc_table.swap(faiss.Float32Vector())
            if pq:
                if d not in pending:
                    pending[d] = _float_builder(index)
                pending[d].add(prefixes)
                index.storage.add(prefixes)
            else:
                index.add(prefixes)
        if builders is None:
            self._take_graphs(pending)

    def _narrow_pq_codes(self) -> bool:
        """Whether a product-quantised graph has codes of fewer than 8 bits (fitted on fewer rows than that needs)."""
        return self.shortlist_codes in PQ_DIMS and any(
            index.is_trained and faiss.downcast_index(index.storage).pq.nbits < 8 for index in self._shortlist.values()
        )

    def _take_graphs(self, builders: dict) -> None:
        for d, builder in builders.items():
            index = self._shortlist[d]
            index.hnsw, index.ntotal = builder.hnsw, index.storage.ntotal  # a copy of the links
        builders.clear()

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


def _float_builder(graph: faiss.IndexHNSWPQ) -> faiss.IndexHNSWFlat:
    """An HNSW index over float vectors holding ``graph``'s links (a copy) and its rows decoded, to which new rows
    are added (while it lives, 4 bytes a prefix dim of every row: the RAM of a float32 graph). The links are built
    from float distances and then given back to ``graph``: faiss's own add to a product-quantised graph compares
    codes with codes, and its graphs found about half the neighbours (recall@10 0.47 against 0.96 at the same K, 67k
    texts, 96 dims)."""
    builder = faiss.IndexHNSWFlat(graph.d, graph.hnsw.nb_neighbors(1), IP)
    builder.hnsw = graph.hnsw
    if graph.ntotal:
        builder.storage.add(graph.storage.reconstruct_n(0, graph.ntotal))
        builder.ntotal = graph.ntotal
    return builder
