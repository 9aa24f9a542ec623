"""Compact shortlist structures: HNSW graphs whose prefixes are float16, int8, int4 or product-quantised codes, and
autotune's memory budget."""

import faiss
import numpy as np
import pytest

from matryoshka.index import IndexInputError, IndexStore, MatryoshkaIndex
from matryoshka.index.autotune import autotune, candidate_structures
from matryoshka.index.basis import fit_basis
from matryoshka.index.plans import FullPlan


def _corpus(n=3000, d=64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)) * np.linspace(3, 0.2, d)).astype(np.float32)


# int4 rounds the prefix scores more: it needs a longer shortlist for the same agreement (0.94 at K=100 here).
@pytest.mark.parametrize(("codes", "shortlist_k"), [("float16", 100), ("int8", 100), ("int4", 200)])
def test_compact_graphs_find_what_the_float_graph_finds_in_fewer_bytes(codes, shortlist_k, tmp_path):
    x, q = _corpus(), _corpus(50, seed=1)
    full = MatryoshkaIndex(64, [16], shortlist="hnsw")
    full.add(x)
    small = MatryoshkaIndex(64, [16], shortlist="hnsw", shortlist_codes=codes)
    small.add(x)
    plan = f"adaptive:16:{shortlist_k}:64"
    assert _agreement(full.search(q, 10, plan)[1], small.search(q, 10, plan)[1]) > 0.95
    assert small.bytes_per_vector() == full.bytes_per_vector() - 16 * (
        4 - {"float16": 2, "int8": 1, "int4": 0.5}[codes]
    )
    assert small.memory_bytes() < full.memory_bytes()
    _check_reloaded(small, q, plan, tmp_path)


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b, strict=True)]))


def _check_reloaded(index: MatryoshkaIndex, q: np.ndarray, plan: str, tmp_path) -> None:
    """A saved compact graph opens with its codes and answers as before."""
    index.save(tmp_path / "i")
    back = MatryoshkaIndex.load(tmp_path / "i")
    assert back.shortlist_codes == index.shortlist_codes
    np.testing.assert_array_equal(back.search(q, 10, plan)[1], index.search(q, 10, plan)[1])


def test_a_rotated_index_reranks_from_its_decoded_prefix_codes(tmp_path):
    x = _corpus(4000)
    index = MatryoshkaIndex(64, [16, 32], shortlist="hnsw", shortlist_codes="int8").with_basis(fit_basis(x))
    index.add(x)
    _, ids = index.search(x[:20], 1, "funnel:16x200,32x50,64x10")  # the 32-dim stage reads decoded int8 codes
    np.testing.assert_array_equal(ids[:, 0], np.arange(20))
    index.save(tmp_path / "s")
    with IndexStore.open(tmp_path / "s", compact_threshold=0) as store:
        store.add(x[:10] * 1.5 + 0.01, ids=np.arange(5000, 5010))
        store.delete([0])
        store.compact()
        assert store.index.shortlist_codes == "int8" and store.index.rotated
        assert store.search(x[1:2], 1, "funnel:16x200,32x50,64x10")[1][0, 0] in (1, 5001)


def test_compact_codes_need_a_graph():
    with pytest.raises(IndexInputError, match="unknown shortlist codes 'int2'"):
        MatryoshkaIndex(64, [16], shortlist="hnsw", shortlist_codes="int2")
    with pytest.raises(IndexInputError, match="with shortlist='hnsw' only"):
        MatryoshkaIndex(64, [16], shortlist_codes="int8")


def test_compact_tuning_tries_compact_prefix_codes():
    index = MatryoshkaIndex(512, [32])
    plain = {s["shortlist_codes"] for s in candidate_structures(index)}
    compact = {(s["shortlist_dims"][0], s["shortlist_codes"]) for s in candidate_structures(index, compact=True)}
    assert plain == {"float32"}
    assert compact == {(d, c) for d in (32, 64, 128) for c in ("float32", "float16", "int8", "int4")} | {
        (d, c) for d in (128, 256) for c in ("pq4", "pq2")
    }


@pytest.mark.parametrize("codes", ["pq4", "pq2"])
def test_product_quantised_graphs_are_linked_over_float_prefixes(codes, tmp_path):
    """A pq graph's links come from float distances (faiss's own add to IndexHNSWPQ compares codes with codes and
    links a graph that finds far fewer neighbours), whether its rows arrive at once or in several adds."""
    x, q = _corpus(4000), _corpus(60, seed=4)
    plan = "adaptive:32:100:64"
    reference = MatryoshkaIndex(64, [32], shortlist="hnsw")
    reference.add(x)
    expected = reference.search(q, 10, plan)[1]
    at_once = MatryoshkaIndex(64, [32], shortlist="hnsw", shortlist_codes=codes)
    at_once.add(x)
    in_parts = MatryoshkaIndex(64, [32], shortlist="hnsw", shortlist_codes=codes)
    for part in np.array_split(x, 4):
        in_parts.add(part)
    assert in_parts._shortlist[32].ntotal == at_once._shortlist[32].ntotal == 4000
    for index in (at_once, in_parts):
        assert _agreement(index.search(q, 10, plan)[1], expected) > 0.9
    assert at_once.bytes_per_vector() == reference.bytes_per_vector() - 32 * 4 + 32 * {"pq4": 0.5, "pq2": 0.25}[codes]
    _check_reloaded(at_once, q, plan, tmp_path)
    assert _pq(MatryoshkaIndex.load(tmp_path / "i"), 32).sdc_table.size() == 0  # skipped on load


def _pq(index: MatryoshkaIndex, d: int):
    return faiss.downcast_index(index._shortlist[d].storage).pq


def test_a_pq_graph_of_few_rows_uses_fewer_bits_until_it_has_enough_and_a_store_keeps_its_codes(tmp_path):
    one = MatryoshkaIndex(64, [16], shortlist="hnsw", shortlist_codes="pq2")
    one.add(_corpus(1))  # one row: trained on it twice, 1-bit codes
    one.add(_corpus(0))
    assert one.rows == one._shortlist[16].ntotal == 1 and _pq(one, 16).nbits == 1
    x = _corpus(40)
    index = MatryoshkaIndex(64, [16], shortlist="hnsw", shortlist_codes="pq4")
    index.add(x)  # 40 rows cannot fit 256 centroids a byte: 5-bit codes
    assert _pq(index, 16).nbits == 5
    _, ids = index.search(x[:5], 1, "adaptive:16:20:64")
    np.testing.assert_array_equal(ids[:, 0], np.arange(5))
    grown = MatryoshkaIndex(64, [16], shortlist="hnsw", shortlist_codes="pq4")
    grown.add(x)
    grown.add(_corpus(300, seed=6))  # enough rows now: fitted again with 8-bit codes
    assert _pq(grown, 16).nbits == 8 and grown._shortlist[16].ntotal == 340
    assert _pq(grown, 16).sdc_table.size() == 0  # faiss's code-to-code table is never kept
    index.save(tmp_path / "s")
    with IndexStore.open(tmp_path / "s", compact_threshold=0) as store:
        store.add(_corpus(500, seed=5), ids=np.arange(1000, 1500))
        store.compact()
        assert store.index.shortlist_codes == "pq4" and store.index.rows == 540
        assert _pq(store.index, 16).nbits == 8 and _pq(store.index, 16).sdc_table.size() == 0
        assert store.search(x[3:4], 1, "adaptive:16:20:64")[1][0, 0] == 3


def test_pq_codes_need_dims_they_divide():
    with pytest.raises(IndexInputError, match="pq2 codes need shortlist dims divisible by 4; 18 is not"):
        MatryoshkaIndex(64, [16, 18], shortlist="hnsw", shortlist_codes="pq2")
    with pytest.raises(IndexInputError, match="with shortlist='hnsw' only"):
        MatryoshkaIndex(64, [16], shortlist_codes="pq4")


def test_autotune_within_a_memory_budget():
    x, q = _corpus(6000), _corpus(100, seed=2)
    index = MatryoshkaIndex(64, [16])
    index.add(x)
    float32_bytes = index.bytes_per_vector()
    tuned = autotune(index, q, 10, 0.9, structures="keep", max_bytes_per_vector=0.5 * float32_bytes)
    assert tuned.structure["bytes_per_vector"] <= 0.5 * float32_bytes
    assert index.bytes_per_vector() == tuned.structure["bytes_per_vector"] and index.encoding == "int8"
    # A budget no structure fits: the smallest one, said in a line.
    tuned = autotune(index, q, 10, 0.9, structures="keep", max_bytes_per_vector=10, verbose=True)
    assert tuned.structure["encoding"] == "int8"


def test_the_budget_counts_ram_only_for_rows_kept_in_a_file():
    from matryoshka.index.autotune import structure_of

    in_ram = structure_of(MatryoshkaIndex(64, [16]))
    on_disk = structure_of(MatryoshkaIndex(64, [16], full_vectors="disk"))
    assert in_ram["ram_bytes_per_vector"] == in_ram["bytes_per_vector"]
    assert on_disk["ram_bytes_per_vector"] == on_disk["bytes_per_vector"] - 64 * 4  # the float32 rows


def test_near_duplicates_that_int8_rounding_flips_get_float16_codes():
    """Compact codes are measured, not assumed: groups of near-duplicates (the image corpus's shifted copies) whose
    score gaps int8 rounding exceeds keep float16 codes when the target needs their order."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((150, 64)).astype(np.float32)
    x = (np.repeat(centres, 20, axis=0) + 1e-2 * rng.standard_normal((3000, 64))).astype(np.float32)
    q = (x[::60] + 2.5e-3 * rng.standard_normal((50, 64))).astype(np.float32)
    index = MatryoshkaIndex(64, [16])
    index.add(x)
    tuned = autotune(index, q, 10, 0.95, structures="keep", objective="memory")
    assert tuned.structure["encoding"] == "float16" and tuned.recall >= 0.95
    assert any(c["structure"]["encoding"] == "int8" and c["recall"] < 0.95 for c in tuned.candidates)


def test_a_budget_builds_only_the_structures_that_fit_it():
    """Under a budget of bytes per vector, autotune tunes no graph (and no recoding) whose modelled RAM exceeds it;
    when nothing fits, the smallest is still tried. The model is the built index's own count."""
    from matryoshka.index.autotune import _pairs_to_try, _ram_bytes, _Siblings, structure_of

    x = _corpus(20_000, 128)
    for tier in ("ram", "disk"):
        index = MatryoshkaIndex(128, [16], full_vectors=tier)
        index.add(x)
        current = structure_of(index)
        every = _pairs_to_try(index, current, "auto", True, None)
        assert every[0] == (current, index.encoding) and len(every) == len({str(p) for p in every})
        builder = _Siblings()
        for structure, encoding in every:
            built, sibling = builder.get(index, current, structure, encoding)
            assert built["ram_bytes_per_vector"] == _ram_bytes(index, structure, encoding)
            assert (sibling.encoding, sibling.shortlist_dims) == (encoding, structure["shortlist_dims"])
        graphs = {str(s) for s, _ in every if s is not current}
        assert len(builder.graphs) == len(graphs)  # each graph built once, its recodings share it
        sizes = sorted(_ram_bytes(index, *p) for p in every[1:])
        budget = sizes[len(sizes) // 2]
        kept = _pairs_to_try(index, current, "auto", True, None, budget)
        assert kept[0] == every[0] and all(_ram_bytes(index, *p) <= budget for p in kept[1:])
        assert len(kept) == 1 + sum(size <= budget for size in sizes)
    tiny = _pairs_to_try(index, current, "auto", True, None, 1)
    assert len(tiny) <= 2  # the index itself, which is always tuned, and the smallest


def test_tuning_for_memory_stops_at_the_first_size_that_reaches_the_target():
    """The memory objective tunes the pairs from the smallest modelled RAM up and tries none larger than the first
    that reaches the target: the same choice as trying them all, at a fraction of the builds."""
    from matryoshka.index.autotune import _pairs_to_try, structure_of

    x = _corpus(20_000, 128)
    q = (x[::400] + 0.05 * _corpus(50, 128, seed=9)).astype(np.float32)
    index = MatryoshkaIndex(128, [16])
    index.add(x)
    pairs = _pairs_to_try(index, structure_of(index), "auto", True, None)
    tuned = autotune(index, q, 10, 0.9, objective="memory", rotate="raw")
    chosen = tuned.structure["ram_bytes_per_vector"]
    tried = {id(c["structure"]): c["structure"] for c in tuned.candidates if not isinstance(c["plan"], FullPlan)}
    assert all(s["ram_bytes_per_vector"] <= chosen for s in tried.values())
    assert any(c["recall"] >= 0.9 for c in tuned.candidates if c["structure"] is tuned.structure)
    assert all(c["recall"] < 0.9 for c in tuned.candidates if c["structure"]["ram_bytes_per_vector"] < chosen)
    assert len(tried) < len(pairs)
    assert index.bytes_per_vector() == tuned.structure["bytes_per_vector"]


def test_the_graph_codes_table_measures_each_code():
    """`mrl bench fidelity --graph-codes`: per dims and codes, the graph's bytes and recall per K, measured."""
    from matryoshka.bench.fidelity import graph_codes_table
    from matryoshka.index.storage import normalize

    x, q = normalize(_corpus(3000)), normalize(_corpus(40, seed=3))
    rows = graph_codes_table(x, q, ks=(10, 200))["graphs"]
    expected = [(d, c) for d in (8, 16) for c in ("float32", "int8", "int4")]
    assert [(r["dims"], r["codes"]) for r in rows] == expected + [(d, c) for d in (16, 32) for c in ("pq4", "pq2")]
    for d in (8, 16):
        sizes = [r["bytes_per_vector"] for r in rows[:6] if r["dims"] == d]
        assert sizes[0] > sizes[1] > sizes[2] == 8 * 16 + 16 + 8 + d // 2  # links, bookkeeping, id, half a byte a dim
    for r in rows:
        assert r["recall"]["10"] < r["recall"]["200"]  # K=10 candidates cannot all be the exact ten
    assert min(r["recall"]["200"] for r in rows if r["dims"] == 16) > 0.9
    pq = {(r["dims"], r["codes"]): r["bytes_per_vector"] for r in rows[6:]}
    assert pq == {(16, "pq4"): 160, (16, "pq2"): 156, (32, "pq4"): 168, (32, "pq2"): 160}
