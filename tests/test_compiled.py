"""The one-call search chain (index/compiled.py) and the rows laid out for it (index/faiss_rows.py): the same
results as the staged search, no copy of the rows, and the general path wherever the chain does not apply."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from matryoshka.bench.overhead import overhead_line, search_overhead
from matryoshka.index import IndexInputError, MatryoshkaIndex
from matryoshka.index.basis import fit_basis
from matryoshka.index.faiss_rows import as_faiss_rows, flat_view, load_rows

DIM = 64


def _corpus(n: int, seed: int = 0) -> np.ndarray:
    """Vectors whose energy is spread over all dims (a rotation then helps the prefixes)."""
    rng = np.random.default_rng(seed)
    mixing = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0]
    return ((rng.standard_normal((n, DIM)) * np.linspace(3, 0.3, DIM)) @ mixing).astype(np.float32)


def _index(rotated: bool = False, shortlist: str = "hnsw", codes: str = "float32", n: int = 3000) -> MatryoshkaIndex:
    x = _corpus(n)
    index = MatryoshkaIndex(DIM, [16], shortlist=shortlist, shortlist_codes=codes, hnsw_ef_search=64)
    index.add(x)
    return index.with_basis(fit_basis(x)) if rotated else index


def _staged(index: MatryoshkaIndex, monkeypatch, queries: np.ndarray, plan: str, k: int = 10):
    """The same search with both compiled paths switched off."""
    with monkeypatch.context() as patch:
        patch.setattr(index, "_one_query", lambda *args: None)
        patch.setattr(index, "_compiled_positions", lambda *args: None)
        return index.search(queries, k, plan)


def _no_staged(index: MatryoshkaIndex, monkeypatch) -> None:
    def refuse(*args):
        raise AssertionError("the staged search ran")

    monkeypatch.setattr(index, "_shortlist_search", refuse)
    monkeypatch.setattr(index, "_exact", refuse)


@pytest.mark.parametrize(
    ("rotated", "shortlist", "codes"),
    [(False, "hnsw", "float32"), (True, "hnsw", "float32"), (False, "flat", "float32"), (True, "hnsw", "int8")],
)
def test_the_chain_returns_what_the_staged_search_returns(monkeypatch, rotated, shortlist, codes):
    index = _index(rotated, shortlist, codes)
    queries = _corpus(40, seed=1)
    plan = "adaptive:16:100:64"
    want_scores, want_ids = _staged(index, monkeypatch, queries, plan)
    few = _staged(index, monkeypatch, queries, "adaptive:16:10:64")[1]
    _no_staged(index, monkeypatch)
    assert index.compiled_search(16) is not None
    scores, ids = index.search(queries, 10, plan)  # a batch: one chain call for all of them
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
    for i in range(5):  # one query at a time: the prepared path (float64 queries too)
        assert index._one_query(queries[i : i + 1].astype(np.float64), 10, plan, False) is not None
        s, found = index.search(queries[i : i + 1], 10, plan)
        np.testing.assert_array_equal(found, want_ids[i : i + 1])
        np.testing.assert_allclose(s, want_scores[i : i + 1], rtol=1e-5, atol=1e-6)
    # The candidate count matters (the chain asks its base for K, not k): fewer candidates, other results.
    assert np.array_equal(index.search(queries, 10, "adaptive:16:10:64")[1], few)
    assert not np.array_equal(few, want_ids)


def test_the_chain_views_the_stored_rows_and_survives_a_reload(tmp_path):
    index = _index()
    index.search(_corpus(1, seed=2), 10, "adaptive:16:50:64")
    chain = index.compiled_search(16)
    rows = index.arrays().codes
    assert faiss.rev_swig_ptr(chain.flat.get_xb(), 1).ctypes.data == rows.ctypes.data  # a view, not a copy
    index.save(tmp_path / "index")
    opened = MatryoshkaIndex.load(tmp_path / "index")
    loaded = opened.arrays().codes
    assert opened.compiled_search(16) is not None
    assert opened.arrays().codes is loaded  # read into place: the chain needed no copy
    q = _corpus(3, seed=3)
    np.testing.assert_array_equal(
        opened.search(q, 10, "adaptive:16:50:64")[1], index.search(q, 10, "adaptive:16:50:64")[1]
    )


def test_added_and_removed_rows(monkeypatch):
    index = _index()
    plan = "adaptive:16:60:64"
    queries = _corpus(6, seed=4)
    index.search(queries[:1], 10, plan)  # prepares the single-query path
    index.add(queries[:1] * 3, ids=[10_000])  # a new row equal (in direction) to the first query
    assert index.search(queries[:1], 1, plan)[1][0, 0] == 10_000
    first = index.search(queries, 10, plan)[1][:, 0]
    index.remove(first[1:3].tolist())
    want_scores, want_ids = _staged(index, monkeypatch, queries, plan)
    scores, ids = index.search(queries, 10, plan)  # deletions: the chain filters them in the graph walk
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
    assert not np.isin(first[1:3], ids).any()
    for i in range(3):
        np.testing.assert_array_equal(index.search(queries[i : i + 1], 10, plan)[1], want_ids[i : i + 1])


def test_a_changed_default_plan_is_followed():
    index = _index()
    q = _corpus(1, seed=5)
    index.default_plan = "adaptive:16:10:64"
    few = index.search(q, 10)[1]
    index.default_plan = "full"
    np.testing.assert_array_equal(index.search(q, 10)[1], index.search(q, 10, "full")[1])
    index.default_plan = "adaptive:16:10:64"
    np.testing.assert_array_equal(index.search(q, 10)[1], few)


def test_where_the_chain_does_not_apply_the_staged_search_runs(tmp_path, monkeypatch):
    queries = _corpus(4, seed=6)
    half = MatryoshkaIndex(DIM, [16], encoding="float16", shortlist="hnsw")
    half.add(_corpus(2000))
    assert half.compiled_search(16) is None
    assert half.search(queries[:1], 5, "adaptive:16:50:64")[1].shape == (1, 5)
    index = _index()
    index.save(tmp_path / "index")
    mapped = MatryoshkaIndex.load(tmp_path / "index", full_vectors="mmap")
    assert mapped.compiled_search(16) is None
    np.testing.assert_array_equal(
        mapped.search(queries, 10, "adaptive:16:50:64")[1], index.search(queries, 10, "adaptive:16:50:64")[1]
    )
    ran = []
    original = index._shortlist_search
    monkeypatch.setattr(index, "_shortlist_search", lambda *a: ran.append(1) or original(*a))
    index.search(queries[:1], 10, "funnel:16x200,32x50,64x10")  # three stages: no single chain
    index.search(queries[:1], 10, "adaptive:16:50:32")  # a re-rank below the full dim
    assert len(ran) == 2


def test_bad_queries_get_the_same_errors_on_every_path():
    index = _index()
    plan = "adaptive:16:50:64"
    zero_head = _corpus(2, seed=7)
    zero_head[:, :16] = 0
    for batch in (zero_head[:1], zero_head):
        with pytest.raises(IndexInputError, match="all zeros in its first 16 dims"):
            index.search(batch, 10, plan)
    nan = _corpus(1, seed=8)
    nan[0, 3] = np.nan
    with pytest.raises(IndexInputError, match="NaN"):
        index.search(nan, 10, plan)
    with pytest.raises(IndexInputError, match="all zeros"):
        index.search(np.zeros((1, DIM), np.float32), 10, plan)
    with pytest.raises(IndexInputError, match="shape"):
        index.search(np.ones((1, DIM + 1), np.float32), 10, plan)


@pytest.mark.parametrize("d", [1, 2, 8, 256, 384])
def test_rows_behind_a_header_are_viewed_or_left_alone(d, tmp_path):
    x = np.random.default_rng(d).standard_normal((17, d)).astype(np.float32)
    rows = as_faiss_rows(x)
    np.testing.assert_array_equal(rows, x)
    flat = flat_view(rows)
    assert flat is not None and flat.ntotal == 17 and flat.d == d
    np.testing.assert_array_equal(faiss.rev_swig_ptr(flat.get_xb(), 17 * d), x.ravel())
    assert flat_view(rows[:5]) is None and flat_view(x) is None  # a slice or a plain array: no header before it
    np.save(tmp_path / "rows.npy", x)
    loaded = load_rows(tmp_path / "rows.npy")
    np.testing.assert_array_equal(loaded, x)
    assert flat_view(loaded) is not None
    (tmp_path / "cut.npy").write_bytes((tmp_path / "rows.npy").read_bytes()[:-4])
    with pytest.raises(ValueError, match="truncated"):
        load_rows(tmp_path / "cut.npy")


def test_the_overhead_row():
    index = _index()
    queries = _corpus(20, seed=9)
    compiled = search_overhead(index, queries, 10, "adaptive:16:50:64")
    assert compiled["path"] == "compiled" and compiled["call_us"] > 0
    assert compiled["overhead_us"] == pytest.approx(compiled["search_us"] - compiled["call_us"])
    assert "goal <= 5 us" in overhead_line(compiled, "adaptive:16:50:64")
    staged = search_overhead(index, queries, 10, "funnel:16x200,32x50,64x10")
    assert staged["path"] == "staged" and staged["overhead_us"] is None and staged["search_us"] > 0
    assert "stage by stage" in overhead_line(staged, "funnel")


def test_a_store_takes_the_prepared_path_until_something_is_written(tmp_path, monkeypatch):
    from matryoshka.index import IndexStore

    x = _corpus(3000)
    index = MatryoshkaIndex(DIM, [16], shortlist="hnsw", default_plan="adaptive:16:60:64")
    index.add(x)
    index.save(tmp_path / "store")
    q = _corpus(1, seed=10)
    with IndexStore.open(tmp_path / "store") as store:
        prepared = []
        original = store.index._one_query
        monkeypatch.setattr(store.index, "_one_query", lambda *a: prepared.append(1) or original(*a))
        ids = store.search(q, 5)[1]
        found = original(q, 5, None, False)
        assert prepared and found is not None
        np.testing.assert_array_equal(ids, found[1])
        store.add(q * 2, ids=[77_777])  # now in the write segment: merged by the general path
        assert store.search(q, 5)[1][0, 0] == 77_777 and len(prepared) == 1


def test_prepared_searches_follow_the_index_and_let_old_rows_go(monkeypatch):
    import gc
    import weakref

    index = _index()
    q = _corpus(1, seed=11)
    plan = "adaptive:16:60:64"
    index.search(q, 5, plan)
    with pytest.raises(IndexInputError, match="positive int"):
        index.search(q, 5.0, plan)  # equal to 5 as a key, refused as a k
    old = weakref.ref(index.arrays().codes)
    index.add(_corpus(10, seed=12))
    index.search(q, 6, plan)  # another (plan, k): the entry of k=5 must not keep the former rows alive
    gc.collect()
    assert old() is None
    index.hnsw_ef_search = 400  # a wider walk, followed by the prepared path as by the staged one
    np.testing.assert_array_equal(index.search(q, 5, plan)[1], _staged(index, monkeypatch, q, plan, k=5)[1])
    assert (60, 5, 400) in index._prepared[(plan, 5, False)].chain._params  # (K, k, efSearch)


def test_rows_that_cannot_be_viewed_are_copied_once(monkeypatch):
    import matryoshka.index.compiled as compiled

    index = _index()
    monkeypatch.setattr(compiled, "flat_view", lambda rows: None)  # a FAISS release that copies on read
    q = _corpus(4, seed=13)
    index.search(q, 5, "adaptive:16:60:64")
    rows = index.arrays().codes
    for _ in range(3):
        index.search(q, 5, "adaptive:16:60:64")
        index.search(q[:1], 5, "adaptive:16:60:64")
    assert index.arrays().codes is rows and index.compiled_search(16) is None


def test_compaction_lays_the_rows_out_for_the_chain():
    index = _index()
    index.remove([1, 2, 3])
    compacted = index.compacted()
    rows = compacted.arrays().codes
    assert flat_view(rows) is not None and compacted.compiled_search(16) is not None
    assert compacted.arrays().codes is rows  # no copy at the first search
