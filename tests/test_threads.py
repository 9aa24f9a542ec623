"""Small batches search on the calling thread alone; results do not depend on the thread count."""

import threading

import faiss
import numpy as np
import pytest

from matryoshka.index import AdaptivePlan, IndexStore, MatryoshkaIndex
from matryoshka.index.threads import PARALLEL_MIN_BATCH, search_threads


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((50, 64)).astype(np.float32)
    x = centers[rng.integers(0, 50, 6000)] + 0.5 * rng.standard_normal((6000, 64)).astype(np.float32)
    q = centers[rng.integers(0, 50, PARALLEL_MIN_BATCH + 44)] + 0.5 * rng.standard_normal((300, 64)).astype("f4")
    return x, q


def test_small_batches_run_single_threaded_and_restore_the_setting():
    if faiss.omp_get_max_threads() < 2:
        pytest.skip("one core: nothing to switch")
    before = faiss.omp_get_max_threads()
    with search_threads(1):
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == before
    with search_threads(PARALLEL_MIN_BATCH):
        assert faiss.omp_get_max_threads() == before
    with pytest.raises(RuntimeError), search_threads(2):
        raise RuntimeError("a failing search")
    assert faiss.omp_get_max_threads() == before


def test_the_setting_is_per_thread():
    if faiss.omp_get_max_threads() < 2:
        pytest.skip("one core: nothing to switch")
    seen = {}
    inside, release = threading.Event(), threading.Event()

    def small_search():
        with search_threads(1):
            inside.set()
            release.wait(5)

    worker = threading.Thread(target=small_search)
    worker.start()
    inside.wait(5)
    seen["main"] = faiss.omp_get_max_threads()  # while the other thread runs single-threaded
    release.set()
    worker.join()
    assert seen["main"] >= 2


@pytest.mark.parametrize("shortlist", ["flat", "hnsw"])
def test_same_results_with_one_and_all_threads(corpus, shortlist):
    x, q = corpus
    index = MatryoshkaIndex.build(x, shortlist_dims=[8], shortlist=shortlist, hnsw_m=16)
    plan = AdaptivePlan(8, 60, 64)
    batch_s, batch_ids = index.search(q, 10, plan)  # a large batch: every thread
    singles = [index.search(q[i : i + 1], 10, plan) for i in range(len(q))]  # batch 1: one thread
    np.testing.assert_array_equal(batch_ids, np.concatenate([ids for _, ids in singles]))
    np.testing.assert_allclose(batch_s, np.concatenate([s for s, _ in singles]), rtol=1e-5, atol=1e-6)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        one_s, one_ids = index.search(q, 10, plan)
    finally:
        faiss.omp_set_num_threads(before)
    np.testing.assert_array_equal(one_ids, batch_ids)
    np.testing.assert_allclose(one_s, batch_s, rtol=1e-5, atol=1e-6)


def test_store_with_a_segment_gives_the_same_results_per_batch_size(corpus, tmp_path):
    x, q = corpus
    MatryoshkaIndex.build(x[:5000], shortlist_dims=[8]).save(tmp_path / "store")
    with IndexStore.open(tmp_path / "store", compact_threshold=0) as store:
        store.add(x[5000:])  # rows in the write segment: scored without BLAS for small batches
        big_s, big_ids = store.search(q, 10, "adaptive:8:60:64")
        singles = [store.search(q[i : i + 1], 10, "adaptive:8:60:64") for i in range(len(q))]
    np.testing.assert_array_equal(big_ids, np.concatenate([ids for _, ids in singles]))
    np.testing.assert_allclose(big_s, np.concatenate([s for s, _ in singles]), rtol=1e-5, atol=1e-6)


def test_a_search_runs_single_threaded_below_the_cut_over_and_on_every_thread_above(corpus, monkeypatch):
    if faiss.omp_get_max_threads() < 2:
        pytest.skip("one core: nothing to switch")
    x, q = corpus
    index = MatryoshkaIndex.build(x, shortlist_dims=[8], shortlist="hnsw", hnsw_m=16)
    seen = []
    real = index.search_positions

    def spy(queries, stages):
        seen.append(faiss.omp_get_max_threads())
        return real(queries, stages)

    class ChainSpy:
        """Stands in for the prepared single query's FAISS chain and records the threads it runs with."""

        def __init__(self, chain):
            self.chain, self.inner = self, chain

        def search_c(self, *args):
            seen.append(faiss.omp_get_max_threads())
            return self.inner.search_c(*args)

    monkeypatch.setattr(index, "search_positions", spy)
    plan = "adaptive:8:60:64"
    index.search(q[:1], 10, plan)  # prepares the single-query path (one compiled call, no search_positions)
    key = (plan, 10, False)
    index._prepared[key] = index._prepared[key]._replace(chain=ChainSpy(index._prepared[key].chain.chain))
    threads = faiss.omp_get_max_threads()
    index.search(q[:1], 10, plan)
    assert faiss.omp_get_max_threads() == threads  # restored after the call
    index.search(q[: PARALLEL_MIN_BATCH - 1], 10, plan)
    index.search(q[:PARALLEL_MIN_BATCH], 10, plan)
    assert seen == [1, 1, faiss.omp_get_max_threads()] and seen[-1] >= 2
