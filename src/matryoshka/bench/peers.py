"""The ANN libraries a search engineer would run instead, at the full dim, behind one small interface.

Each peer builds over unit vectors (inner product = cosine), exposes its speed/recall knob as a list of settings
(cheapest first), searches a batch of one on the calling thread alone and larger batches with every core (the
same rule as ours, :mod:`matryoshka.index.threads`), and saves itself to a file whose resident memory a fresh
process measures (:mod:`matryoshka.bench.rss`). A peer whose package is not installed is skipped with the line
that installs it (``pip install 'matryoshka-mrl[bench]'``).
"""

from __future__ import annotations

import atexit
import importlib.util
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from matryoshka.index.storage import normalize
from matryoshka.index.threads import is_small, search_threads

K = 10


@dataclass
class Peer:
    """A built peer index. ``search(q, setting)`` returns (Q, K) positions; ``save(path)`` writes it for
    :mod:`matryoshka.bench.rss`, which re-opens it with ``load_kind``."""

    name: str
    family: str
    settings: list[Any]
    index: Any
    load_kind: str

    def search(self, q: np.ndarray, setting: Any) -> np.ndarray:
        raise NotImplementedError

    def save(self, path: Path) -> None:
        raise NotImplementedError

    def describe(self, setting: Any) -> str:
        return f"{self.name} {setting}"


class Faiss(Peer):
    """A faiss index whose knob is one search parameter (:meth:`params` of a setting)."""

    knob = ""

    def params(self, setting) -> faiss.SearchParameters:
        raise NotImplementedError

    def search(self, q, setting):
        with search_threads(len(q)):
            return self.index.search(normalize(q), K, params=self.params(setting))[1]

    def save(self, path):
        faiss.write_index(self.index, str(path))

    def describe(self, setting):
        return f"{self.name} {self.knob}={setting}"


class FaissHNSW(Faiss):
    knob = "efSearch"

    def params(self, setting):
        return faiss.SearchParametersHNSW(efSearch=setting)


class FaissIVF(Faiss):
    knob = "nprobe"

    def params(self, setting):
        return faiss.SearchParametersIVF(nprobe=setting)


class FaissRefined(Faiss):
    """A compressed faiss index re-ranked by exact float32 vectors (``IndexRefineFlat``): a setting is (the base
    index's knob, k_factor: how many times k candidates the refine re-scores)."""

    def __init__(self, *args, knob: str, base_params) -> None:
        super().__init__(*args)
        self.knob, self.base_params = knob, base_params

    def params(self, setting):
        knob, factor = setting
        return faiss.IndexRefineSearchParameters(k_factor=factor, base_index_params=self.base_params(knob))

    def describe(self, setting):
        return f"{self.name} {self.knob}={setting[0]} k_factor={setting[1]}"


class Hnswlib(Peer):
    def search(self, q, setting):
        self.index.set_ef(max(setting, K))
        return self.index.knn_query(normalize(q), K, num_threads=1 if is_small(len(q)) else -1)[0]

    def save(self, path):
        self.index.save_index(str(path))

    def describe(self, setting):
        return f"{self.name} ef={setting}"


class Usearch(Peer):
    def search(self, q, setting):
        self.index.expansion_search = setting
        matches = self.index.search(normalize(q), K, threads=1 if is_small(len(q)) else 0)
        keys = np.asarray(matches.keys, dtype=np.int64)
        return keys.reshape(len(q), -1)

    def save(self, path):
        self.index.save(str(path))

    def describe(self, setting):
        return f"{self.name} expansion={setting}"


class Scann(Peer):
    def search(self, q, setting):
        leaves, reorder = setting
        qn = normalize(q)
        if len(q) == 1:
            ids, _ = self.index.search(qn[0], K, reorder, leaves)
            return np.asarray(ids, dtype=np.int64)[None, :]
        ids, _ = self.index.search_batched_parallel(qn, K, reorder, leaves)
        return np.asarray(ids, dtype=np.int64)

    def save(self, path):
        path.mkdir(parents=True, exist_ok=True)
        self.index.serialize(str(path))

    def describe(self, setting):
        return f"{self.name} leaves={setting[0]} reorder={setting[1]}"


@dataclass
class DiskANN(Peer):
    """DiskANN's static disk index (``diskannpy``, the bindings of the Rust DiskANN): the graph and the full
    vectors in one file read with direct I/O per search, PQ codes of every vector in RAM; the knob is the search
    list size ("complexity"). Built on L2 over unit vectors, which ranks as the inner product does."""

    folder: Path = Path()  # the index files (``save`` copies them)

    def search(self, q, setting):
        qn = normalize(q)
        if len(q) == 1:
            return np.asarray(self.index.search(qn[0], K, setting).identifiers, dtype=np.int64)[None, :]
        found = self.index.batch_search(qn, K, setting, num_threads=1 if is_small(len(q)) else 0)
        return np.asarray(found.identifiers, dtype=np.int64)

    def save(self, path):
        shutil.copytree(self.folder, path, dirs_exist_ok=True)

    def describe(self, setting):
        return f"{self.name} L={setting}"


def missing(package: str) -> bool:
    return importlib.util.find_spec(package) is None


def build_faiss_hnsw(x: np.ndarray, m: int = 32) -> Peer:
    index = faiss.IndexHNSWFlat(x.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.add(x)
    return FaissHNSW(f"faiss HNSW M={m}", "faiss HNSWFlat", EF_SEARCH, index, "faiss")


EF_SEARCH = [4, 6, 8, 12, 16, 24, 32, 64, 128, 256]
REFINE_FACTORS = (1, 2, 4, 8)


def build_faiss_hnsw_sq8(x: np.ndarray, m: int = 32) -> Peer:
    """int8 scalar-quantised graph at the full dim (a quarter of HNSWFlat's vector bytes)."""
    index = faiss.IndexHNSWSQ(x.shape[1], faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    index.add(x)
    return FaissHNSW(f"faiss HNSW M={m},SQ8", "faiss HNSW-SQ8", EF_SEARCH, index, "faiss")


def build_faiss_hnsw_panorama(x: np.ndarray, m: int = 32, levels: int = 8) -> Peer:
    """faiss's Panorama graph: distances pruned level by level over the dims (made for energy in the first
    dims). It supports L2 only, which ranks unit vectors as the inner product does."""
    index = faiss.IndexHNSWFlatPanorama(x.shape[1], m, levels)
    index.add(x)
    return FaissHNSW(f"faiss HNSW M={m} Panorama{levels}", "faiss HNSW Panorama", EF_SEARCH, index, "faiss")


def build_faiss_hnsw_rabitq(x: np.ndarray, m: int = 32) -> Peer:
    """A graph over 1-bit RaBitQ codes (L2 only, as Panorama), re-ranked by the exact vectors."""
    base = faiss.IndexHNSWRaBitQ(x.shape[1], m)
    base.train(x)
    index = faiss.IndexRefineFlat(base)
    index.add(x)
    settings = [(ef, f) for ef in (16, 32, 64, 128, 256) for f in REFINE_FACTORS]
    return FaissRefined(f"faiss HNSW M={m},RaBitQ+refine", "faiss HNSW-RaBitQ", settings, index, "faiss",
                        knob="efSearch", base_params=lambda ef: faiss.SearchParametersHNSW(efSearch=ef))  # fmt: skip


def build_faiss_ivf_rabitq(x: np.ndarray) -> Peer:
    """IVF over RaBitQ codes scanned with FastScan (SIMD lookups), re-ranked by the exact vectors."""
    n, d = x.shape
    nlist = max(1, int(4 * math.sqrt(n)))
    index = faiss.index_factory(d, f"IVF{nlist},RaBitQfs,Refine(Flat)", faiss.METRIC_INNER_PRODUCT)
    index.train(x[:: max(1, n // (64 * nlist))])
    index.add(x)
    settings = [(p, f) for p in (1, 2, 4, 8, 16, 32, 64, 128) for f in REFINE_FACTORS]
    return FaissRefined(f"faiss IVF{nlist},RaBitQfs+refine", "faiss IVF-RaBitQ-FastScan", settings, index, "faiss",
                        knob="nprobe", base_params=lambda nprobe: faiss.SearchParametersIVF(nprobe=nprobe))  # fmt: skip


def build_faiss_ivf(x: np.ndarray) -> Peer:
    n, d = x.shape
    nlist = max(1, int(4 * math.sqrt(n)))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(x[:: max(1, n // (64 * nlist))])
    index.add(x)
    return FaissIVF(f"faiss IVF{nlist}", "faiss IVFFlat", [1, 2, 4, 8, 16, 32, 64, 128], index, "faiss")


def build_faiss_ivf_mapped(x: np.ndarray) -> Peer:
    """A disk-regime peer beside DiskANN: faiss IVF with its inverted lists memory-mapped from a file
    (``IO_FLAG_MMAP``), so only the centroids are resident; its list reads go through the page cache."""
    built = build_faiss_ivf(x)
    folder = Path(tempfile.mkdtemp(prefix="mrl-bench-ivf-"))
    atexit.register(shutil.rmtree, folder, True)
    faiss.write_index(built.index, str(folder / "ivf"))
    mapped = faiss.read_index(str(folder / "ivf"), faiss.IO_FLAG_MMAP)
    return FaissIVF(f"{built.name} lists mmapped", "faiss IVFFlat, lists on disk", built.settings, mapped, "faiss-mmap")


DISKANN_BEAM = 4  # reads in flight per search step (DiskANN's default range is 2-8)


def open_diskann(folder: Path):
    import diskannpy

    return diskannpy.StaticDiskIndex(str(folder), num_threads=1, beam_width=DISKANN_BEAM, distance_metric="l2")


def build_diskann(x: np.ndarray, degree: int = 32) -> Peer:
    """DiskANN's disk index (R=32, L=64 when building), PQ codes of d/8 bytes a vector in RAM."""
    import diskannpy

    d = x.shape[1]
    folder = Path(tempfile.mkdtemp(prefix="mrl-bench-diskann-"))
    atexit.register(shutil.rmtree, folder, True)
    memory_gb = max(0.25, 4 * x.nbytes / 2**30)
    chunks = max(1, d // 8)
    diskannpy.build_disk_index(
        x, "l2", str(folder), complexity=64, graph_degree=degree, build_memory_maximum=memory_gb, num_threads=0,
        num_of_pq_chunks=chunks,
    )  # fmt: skip
    settings = [10, 12, 16, 24, 32, 48, 64, 100, 150, 200, 300]
    index = open_diskann(folder)
    return DiskANN(f"DiskANN R={degree} PQ{chunks}", "DiskANN, graph on disk", settings, index, "diskann", folder)


def build_hnswlib(x: np.ndarray, m: int = 16) -> Peer:
    import hnswlib

    index = hnswlib.Index(space="ip", dim=x.shape[1])
    index.init_index(max_elements=len(x), ef_construction=100, M=m)
    index.add_items(x, np.arange(len(x)), num_threads=-1)
    return Hnswlib(f"hnswlib M={m}", "hnswlib", [10, 12, 16, 24, 32, 48, 64, 128, 256], index, "hnswlib")


def build_usearch(x: np.ndarray, dtype: str) -> Peer:
    from usearch.index import Index

    # "cos" on unit vectors ranks as "ip" does, and lets usearch scale the rows before it quantises them to i8.
    index = Index(ndim=x.shape[1], metric="cos", dtype=dtype, connectivity=16, expansion_add=128)
    index.add(np.arange(len(x)), x, threads=0)
    settings = [10, 12, 16, 24, 32, 48, 64, 128, 256]
    return Usearch(f"usearch {dtype}", f"usearch {dtype}", settings, index, "usearch")


def build_scann(x: np.ndarray) -> Peer:
    import scann

    n = len(x)
    leaves = max(2, int(math.sqrt(n)))
    builder = scann.scann_ops_pybind.builder(x, K, "dot_product")
    builder = builder.tree(num_leaves=leaves, num_leaves_to_search=max(1, leaves // 20), training_sample_size=n)
    index = builder.score_ah(2, anisotropic_quantization_threshold=0.2).reorder(400).build()
    reorders = (20, 50, 100, 200, 400, 800, 1600)
    settings = [(lv, r) for lv in (2, 4, 8, 16, 32, 64, 128, 256) for r in reorders if lv <= leaves]
    return Scann(f"ScaNN tree{leaves}+AH+reorder", "ScaNN", settings, index, "scann")


# name -> (package it needs, builder); the order of the benchmark's tables
PEERS = {
    "faiss-hnsw": ("faiss", build_faiss_hnsw),
    "faiss-hnsw-sq8": ("faiss", build_faiss_hnsw_sq8),
    "faiss-hnsw-panorama": ("faiss", build_faiss_hnsw_panorama),
    "faiss-hnsw-rabitq": ("faiss", build_faiss_hnsw_rabitq),
    "faiss-ivf-rabitq": ("faiss", build_faiss_ivf_rabitq),
    "faiss-ivf": ("faiss", build_faiss_ivf),
    "faiss-ivf-disk": ("faiss", build_faiss_ivf_mapped),
    "diskann": ("diskannpy", build_diskann),
    "hnswlib": ("hnswlib", build_hnswlib),
    "usearch-f32": ("usearch", lambda x: build_usearch(x, "f32")),
    "usearch-f16": ("usearch", lambda x: build_usearch(x, "f16")),
    "usearch-i8": ("usearch", lambda x: build_usearch(x, "i8")),
    "scann": ("scann", build_scann),
}


def available(names: list[str]) -> tuple[list[str], list[str]]:
    """(names whose package imports, one skip message per other name)."""
    ok, skipped = [], []
    for name in names:
        package = PEERS[name][0]
        if missing(package):
            skipped.append(f"{name}: skipped, `{package}` is not installed (pip install 'matryoshka-mrl[bench]')")
        else:
            ok.append(name)
    return ok, skipped
