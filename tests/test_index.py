import json

import numpy as np
import pytest

from matryoshka.index import (
    AdaptivePlan,
    CorruptIndexError,
    FullPlan,
    FunnelPlan,
    IndexInputError,
    MatryoshkaIndex,
    parse_plan,
)


def _corpus(n=3000, d=64, seed=0):
    rng = np.random.default_rng(seed)
    # Coarse-to-fine spectrum: early dims carry more variance, like an MRL embedding.
    return (rng.standard_normal((n, d)) * np.linspace(3, 0.2, d)).astype(np.float32)


def _brute_force(x, q, d, k):
    xn = x[:, :d] / np.linalg.norm(x[:, :d], axis=1, keepdims=True)
    qn = q[:, :d] / np.linalg.norm(q[:, :d], axis=1, keepdims=True)
    s = qn @ xn.T
    return np.argsort(-s, axis=1)[:, :k], np.sort(s, axis=1)[:, ::-1][:, :k]


def test_full_plan_equals_brute_force():
    x = _corpus()
    q = _corpus(7, seed=1)
    index = MatryoshkaIndex(64, [8])
    index.add(x)
    scores, ids = index.search(q, 10)
    ref_ids, ref_scores = _brute_force(x, q, 64, 10)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-6)


def test_adaptive_plan_is_shortlist_then_rerank():
    x = _corpus()
    q = _corpus(5, seed=2)
    index = MatryoshkaIndex(64, [8])
    index.add(x, ids=np.arange(100, 3100))
    _, ids = index.search(q, 5, AdaptivePlan(8, 50, 64))
    short, _ = _brute_force(x, q, 8, 50)
    for row in range(5):
        cand = x[short[row]]
        expect, _ = _brute_force(cand, q[row : row + 1], 64, 5)
        np.testing.assert_array_equal(ids[row], short[row][expect[0]] + 100)
    # With K = corpus size the adaptive plan is exact.
    _, exact = index.search(q, 5, AdaptivePlan(8, 3000, 64))
    np.testing.assert_array_equal(exact, index.search(q, 5)[1])


def test_funnel_and_single_query_paths_agree():
    x = _corpus()
    index = MatryoshkaIndex(64, [8, 16])
    index.add(x)
    plan = FunnelPlan([(8, 400), (16, 100), (32, 40), (64, 10)])
    q = _corpus(6, seed=3)
    batch = index.search(q, 10, plan)[1]
    single = np.concatenate([index.search(q[i], 10, plan)[1] for i in range(6)])
    np.testing.assert_array_equal(batch, single)
    # A shortlist dim without a FAISS index is refused unless an exact (blocked full-scan) first stage is asked for.
    other = MatryoshkaIndex(64, [16])
    other.add(x)
    with pytest.raises(IndexInputError, match="shortlist structures only for"):
        other.search(q, 10, plan)
    np.testing.assert_array_equal(other.search(q, 10, plan, exact=True)[1], batch)


@pytest.mark.parametrize("encoding,tol", [("float16", 0.9), ("int8", 0.8)])
def test_compressed_storage_keeps_neighbours(encoding, tol):
    x = _corpus()
    q = _corpus(20, seed=4)
    ref = MatryoshkaIndex(64, [8])
    ref.add(x)
    comp = MatryoshkaIndex(64, [8], encoding=encoding)
    comp.add(x)
    a, b = ref.search(q, 10)[1], comp.search(q, 10)[1]
    overlap = np.mean([len(set(r) & set(c)) / 10 for r, c in zip(a, b, strict=True)])
    assert overlap >= tol
    assert comp.bytes_per_vector() < ref.bytes_per_vector()


def test_add_remove_ids():
    index = MatryoshkaIndex(64, [8])
    x = _corpus(100)
    assert index.add(x[:50]).tolist() == list(range(50))
    assert index.add(x[50:60]).tolist() == list(range(50, 60))
    index.add(x[60:], ids=range(1000, 1040))
    assert index.remove([3, 1000]) == 2 and index.ntotal == 98
    _, ids = index.search(x[3], 1)
    assert ids[0, 0] != 3
    _, ids = index.search(x[4], 1)
    assert ids[0, 0] == 4
    with pytest.raises(IndexInputError, match="already in the index"):
        index.add(x[:1], ids=[4])
    with pytest.raises(IndexInputError, match="not in the index"):
        index.remove([3])
    with pytest.raises(IndexInputError, match="unique"):
        index.add(x[:2], ids=[7000, 7000])


@pytest.mark.parametrize(
    "queries,k,plan,match",
    [
        (np.zeros((2, 63)), 5, None, r"shape \(n, 64\)"),
        (np.full((1, 64), np.nan), 5, None, "NaN"),
        (np.ones((1, 64)), 0, None, "positive int"),
        (np.ones((1, 64)), 5, AdaptivePlan(128, 50, 64), "must be in"),
        (np.ones((1, 64)), 5, AdaptivePlan(32, 50, 16), "must not shrink"),
        (np.ones((1, 64)), 5, FunnelPlan([(8, 50), (16, 100), (64, 5)]), "must not grow"),
    ],
)
def test_bad_queries(queries, k, plan, match):
    index = MatryoshkaIndex(64, [8])
    index.add(_corpus(100))
    with pytest.raises(IndexInputError, match=match):
        index.search(queries, k, plan)


def test_empty_index_and_small_corpus():
    index = MatryoshkaIndex(64, [8])
    with pytest.raises(IndexInputError, match="empty"):
        index.search(np.ones((1, 64)), 3)
    index.add(_corpus(4))
    _, ids = index.search(np.ones((1, 64)), 10, AdaptivePlan(8, 200, 64))
    assert ids.shape == (1, 4) and sorted(ids[0].tolist()) == [0, 1, 2, 3]


@pytest.mark.parametrize("encoding", ["float32", "int8"])
def test_save_load_roundtrip_and_versions(tmp_path, encoding):
    index = MatryoshkaIndex(64, [8, 16], encoding=encoding)
    x = _corpus(500)
    index.add(x)
    index.remove([7])
    index.save(tmp_path / "ix")
    q = _corpus(3, seed=9)
    plan = AdaptivePlan(16, 100, 64)
    for mmap in (False, True):
        loaded = MatryoshkaIndex.load(tmp_path / "ix", mmap=mmap)
        np.testing.assert_array_equal(loaded.search(q, 5, plan)[1], index.search(q, 5, plan)[1])
    index.add(x[:1], ids=[9999])
    index.save(tmp_path / "ix")
    assert (tmp_path / "ix" / "CURRENT").read_text() == "v-000002"
    assert [p.name for p in (tmp_path / "ix").iterdir() if p.name.startswith("v-")] == ["v-000002"]
    assert MatryoshkaIndex.load(tmp_path / "ix").ntotal == 500


def test_corrupt_index_is_refused(tmp_path):
    index = MatryoshkaIndex(64, [8])
    index.add(_corpus(200))
    folder = index.save(tmp_path / "ix")
    codes = folder / "codes.npy"
    data = codes.read_bytes()
    codes.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptIndexError, match="checksum"):
        MatryoshkaIndex.load(tmp_path / "ix")
    with pytest.raises(CorruptIndexError, match="not a readable array"):
        MatryoshkaIndex.load(tmp_path / "ix", verify=False)
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(CorruptIndexError, match="format"):
        MatryoshkaIndex.load(tmp_path / "ix")
    with pytest.raises(CorruptIndexError, match="no CURRENT"):
        MatryoshkaIndex.load(tmp_path / "nothing")


def test_parse_plan():
    assert parse_plan("full") == FullPlan()
    assert parse_plan("adaptive:16:200:512") == AdaptivePlan(16, 200, 512)
    assert parse_plan("funnel:16x200,32x100,512x10") == FunnelPlan([(16, 200), (32, 100), (512, 10)])
    with pytest.raises(ValueError, match="cannot parse"):
        parse_plan("adaptive:16:200")


def test_kill_9_during_save_keeps_previous_version(tmp_path):
    import subprocess
    import sys
    import time

    script = f"""
import numpy as np
from matryoshka.index import MatryoshkaIndex
index = MatryoshkaIndex(64, [8])
index.add(np.random.default_rng(0).standard_normal((100000, 64)).astype(np.float32))
while True:
    index.save({str(tmp_path / "ix")!r})
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (tmp_path / "ix" / "CURRENT").exists():
            time.sleep(0.01)
        time.sleep(0.7)  # several saves in, very likely in the middle of one
    finally:
        proc.kill()
        proc.wait()
    loaded = MatryoshkaIndex.load(tmp_path / "ix")
    assert loaded.ntotal == 100000


def test_autotune_meets_target_and_picks_the_fastest_timed_plan():
    from matryoshka.index.autotune import autotune, plan_flops

    x = _corpus(4000)
    index = MatryoshkaIndex(64, [8, 16])
    index.add(x)
    q = _corpus(50, seed=5)
    best = index.search(q, 10)[1]
    tuned = autotune(index, q, k=10, target_recall=0.95)
    assert tuned.recall >= 0.95
    _, ids = index.search(q, 10, tuned.plan)
    measured = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, best, strict=True)])
    assert measured == pytest.approx(tuned.recall)
    assert tuned.flops_per_query <= plan_flops(FullPlan(), index, 10)
    # The exhaustive search is always timed too, and the fastest measured plan wins.
    timed = [c for c in tuned.candidates if "latency_ms" in c]
    assert any(isinstance(c["plan"], FullPlan) for c in timed)
    assert tuned.latency_ms == min(c["latency_ms"] for c in timed) > 0 and len(tuned.candidates) > 10
    assert tuned.flops_saving == pytest.approx(plan_flops(FullPlan(), index, 10) / tuned.flops_per_query)
    with pytest.raises(ValueError, match="target_recall"):
        autotune(index, q, target_recall=1.5)


def test_hnsw_shortlist_add_remove_save_load(tmp_path):
    x = _corpus(3000)
    q = _corpus(20, seed=11)
    flat = MatryoshkaIndex(64, [16])
    flat.add(x)
    hnsw = MatryoshkaIndex(64, [16], shortlist="hnsw", hnsw_ef_search=64)
    hnsw.add(x[:2000])
    hnsw.add(x[2000:])
    plan = AdaptivePlan(16, 100, 64)
    a, b = flat.search(q, 10, plan)[1], hnsw.search(q, 10, plan)[1]
    assert np.mean([len(set(r) & set(c)) / 10 for r, c in zip(a, b, strict=True)]) >= 0.9
    hnsw.remove([int(b[0, 0])])
    assert int(b[0, 0]) not in hnsw.search(q[:1], 10, plan)[1][0]
    hnsw.save(tmp_path / "ix")
    loaded = MatryoshkaIndex.load(tmp_path / "ix")
    assert loaded.shortlist == "hnsw" and loaded.ntotal == 2999
    np.testing.assert_array_equal(loaded.search(q, 10, plan)[1], hnsw.search(q, 10, plan)[1])
    with pytest.raises(IndexInputError, match="flat or hnsw"):
        MatryoshkaIndex(64, [16], shortlist="ivf")


def test_build_takes_the_dim_from_the_vectors():
    x = _corpus(300)
    index = MatryoshkaIndex.build(x, np.arange(300) + 1000, shortlist_dims=[8], encoding="float16")
    assert (index.dim, index.ntotal, index.shortlist_dims, index.encoding) == (64, 300, [8], "float16")
    assert index.search(x[:2], 1)[1][:, 0].tolist() == [1000, 1001]
    with pytest.raises(IndexInputError, match="2-D"):
        MatryoshkaIndex.build(x[0])


def test_bad_ids_zero_vectors_and_plan_rules_are_refused():
    from matryoshka.index import AdaptivePlan, FunnelPlan, IndexInputError, MatryoshkaIndex

    rng = np.random.default_rng(0)
    index = MatryoshkaIndex(16, [4])
    index.add(rng.standard_normal((50, 16)).astype(np.float32))
    one = rng.standard_normal((1, 16)).astype(np.float32)
    for bad in ([-1], [2**63], [1.5], [True]):
        with pytest.raises(IndexInputError, match=r"ids must be integers in \[0, 2\^63 - 1\]"):
            index.add(one, bad)
    with pytest.raises(IndexInputError, match="ids must be integers"):
        index.remove([-1])
    zero = np.zeros((2, 16), dtype=np.float32)
    with pytest.raises(IndexInputError, match="row 0 is all zeros"):
        index.add(zero)
    with pytest.raises(IndexInputError, match="row 0 is all zeros"):
        index.search(zero, 5)
    with pytest.raises(IndexInputError, match="K must be > 0"):
        index.search(one, 5, AdaptivePlan(4, 0, 16))
    with pytest.raises(IndexInputError, match="keeps fewer than the k=10"):
        index.search(one, 10, AdaptivePlan(4, 5, 16))
    with pytest.raises(IndexInputError, match="keeps fewer than the k=10"):
        index.search(one, 10, FunnelPlan([(4, 20), (8, 5), (16, 10)]))
    assert index.ntotal == 50


@pytest.mark.parametrize("overfetch", [2048, 0])
def test_deleted_rows_never_come_back_and_searches_match_a_fresh_index(monkeypatch, overfetch):
    import matryoshka.index.stages as stages_module

    monkeypatch.setattr(stages_module, "MAX_OVERFETCH", overfetch)  # 0: FAISS selector path
    x = _corpus(3000)
    q = _corpus(20, seed=11)
    index = MatryoshkaIndex(64, [8])
    index.add(x)
    gone = np.arange(0, 3000, 3)
    index.remove(gone)
    fresh = MatryoshkaIndex(64, [8])
    keep = np.setdiff1d(np.arange(3000), gone)
    fresh.add(x[keep], ids=keep)
    for plan in (None, AdaptivePlan(8, 100, 64), FunnelPlan([(8, 200), (32, 50), (64, 10)])):
        np.testing.assert_array_equal(index.search(q, 10, plan)[1], fresh.search(q, 10, plan)[1])
    assert index.ntotal == 2000 and not np.isin(index.ids, gone).any()
    assert index.compacted().rows == 2000


def test_hnsw_with_most_rows_deleted_returns_distinct_live_results():
    x = _corpus(2000, d=32)
    index = MatryoshkaIndex(32, [8], shortlist="hnsw")
    index.add(x)
    keep = np.arange(0, 2000, 100)  # 20 rows stay
    index.remove(np.setdiff1d(np.arange(2000), keep))
    q = _corpus(50, d=32, seed=12)
    _, ids = index.search(q, 10, AdaptivePlan(8, 15, 32))
    assert all(len(set(row)) == 10 and set(row) <= set(keep.tolist()) for row in ids.tolist())
    fresh = MatryoshkaIndex(32, [8])
    fresh.add(x[keep], ids=keep)
    np.testing.assert_array_equal(index.search(q, 10, AdaptivePlan(8, 20, 32))[1], fresh.search(q, 10)[1])


@pytest.mark.parametrize("plan", [AdaptivePlan(8, 100, 64), AdaptivePlan(8, 100, 32), AdaptivePlan(16, 60, 48)])
def test_compiled_reranking_scores_are_prefix_cosines(plan):
    # Full dim and prefixes that divide it are scored in FAISS from the stored rows; 48 does not divide 64 and
    # goes through the numpy gather. Every path must give the cosine of the re-normalised prefixes.
    x, q = _corpus(2000), _corpus(30, seed=3)
    index = MatryoshkaIndex(64, [8, 16])
    index.add(x)
    scores, ids = index.search(q, 10, plan)
    d = plan.rerank_dim
    xn = x[:, :d] / np.linalg.norm(x[:, :d], axis=1, keepdims=True)
    qn = q[:, :d] / np.linalg.norm(q[:, :d], axis=1, keepdims=True)
    expected = np.take_along_axis(qn @ xn.T, ids, axis=1)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-7).all()  # best first
    empty_scores, empty_ids = index.search(np.zeros((0, 64), np.float32), 10, plan)
    assert empty_scores.shape == empty_ids.shape == (0, 10)


def test_autotune_builds_prefix_graphs_and_keeps_the_winner(monkeypatch):
    import matryoshka.index.autotune as tune_module

    monkeypatch.setattr(tune_module, "STRUCTURE_MIN_ROWS", 1000)
    x, q = _corpus(4000, d=256), _corpus(60, d=256, seed=5)
    index = MatryoshkaIndex(256, [16])
    index.add(x)
    tuned = tune_module.autotune(index, q, k=10, target_recall=0.9)
    tried = {(*c["structure"]["shortlist_dims"], c["structure"]["shortlist"]) for c in tuned.candidates}
    assert {(16, "flat"), (16, "hnsw"), (32, "hnsw"), (64, "hnsw")} <= tried
    # The index now has the structure of the chosen plan, and the plan reaches the target on it.
    assert index.shortlist == tuned.structure["shortlist"] and index.shortlist_dims == tuned.structure["shortlist_dims"]
    truth = index.search(q, 10, FullPlan())[1]  # (a plan-less search now follows the tuned plan)
    ids = index.search(q, 10, tuned.plan)[1]
    np.testing.assert_array_equal(index.search(q, 10)[1], ids)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)]) == pytest.approx(tuned.recall)
    assert tuned.recall >= 0.9
    kept = MatryoshkaIndex(256, [16])
    kept.add(x)
    tune_module.autotune(kept, q, k=10, target_recall=0.9, structures="keep")
    assert kept.shortlist == "flat" and kept.shortlist_dims == [16]
    with pytest.raises(ValueError, match="structures"):
        tune_module.autotune(kept, q, structures="all")
    with pytest.raises(ValueError, match="Q >= 1"):
        tune_module.autotune(kept, q[:0])
    sibling = kept.with_shortlists([32], "hnsw")
    kept.remove([0])
    with pytest.raises(ValueError, match="changed"):
        kept.adopt_shortlists(sibling)


def test_autotune_for_memory_keeps_compact_codes_only_where_the_recall_holds():
    from matryoshka.index.autotune import autotune

    x, q = _corpus(3000), _corpus(40, seed=5)
    loose = MatryoshkaIndex(64, [16])
    loose.add(x)
    truth = loose.search(q, 10, FullPlan())[1]
    tuned = autotune(loose, q, k=10, target_recall=0.8, objective="memory")
    assert tuned.structure["encoding"] in ("float16", "int8") and loose.encoding == tuned.structure["encoding"]
    assert loose.bytes_per_vector() == tuned.structure["bytes_per_vector"] < 64 * 4
    ids = loose.search(q, 10)[1]  # the compact codes and the tuned plan, as saved
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)]) == pytest.approx(tuned.recall)
    strict = MatryoshkaIndex(64, [16])
    strict.add(x)
    exact = autotune(strict, q, k=10, target_recall=1.0, objective="memory")  # compact codes cannot be exact
    assert exact.structure["encoding"] == "float32" and strict.encoding == "float32"
    with pytest.raises(ValueError, match="objective"):
        autotune(strict, q, objective="size")


def test_the_default_plan_scales_to_a_larger_k():
    index = MatryoshkaIndex(64, [8], default_plan="adaptive:8:30:64", default_plan_k=10)
    index.add(_corpus(2000))
    q = _corpus(10, seed=3)
    np.testing.assert_array_equal(index.search(q, 10)[1], index.search(q, 10, "adaptive:8:30:64")[1])
    np.testing.assert_array_equal(index.search(q, 50)[1], index.search(q, 50, "adaptive:8:150:64")[1])
    graph = index.with_shortlists([16], "hnsw")
    assert graph.default_plan is None  # a plan tuned for other structures does not carry over


def test_state_api_round_trip_and_memory(tmp_path):
    from matryoshka.index.state import IndexArrays

    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 32)).astype(np.float32)
    index = MatryoshkaIndex(32, [8], encoding="int8")
    index.add(x)
    index.remove([3, 4])
    state = index.arrays()
    assert isinstance(state, IndexArrays) and state.dead.sum() == 2 and state.scales is not None
    copy = MatryoshkaIndex.from_arrays(state, **index.options())
    assert copy.ntotal == index.ntotal == 298 and copy.n_deleted == 2
    q = x[:5]
    for a, b in zip(copy.search(q, 5), index.search(q, 5), strict=True):
        np.testing.assert_array_equal(a, b)
    # RAM: int8 rows + scales + ids + flags + the 8-dim flat shortlist; a memory map holds none of the rows.
    expected = 300 * 32 + 300 * 4 + 300 * 8 + 300 + 300 * 8 * 4
    assert index.memory_bytes() == expected
    index.compacted().save(tmp_path / "ix")
    mapped = MatryoshkaIndex.load(tmp_path / "ix", full_vectors="mmap")
    assert mapped.memory_bytes() == 298 * (4 + 8 + 1 + 8 * 4)  # scales, ids, flags, shortlist; no rows
