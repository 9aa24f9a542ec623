"""The disk tier: full-dim rows read per query with direct I/O give the in-RAM results; bad files are refused."""

import os

import numpy as np
import pytest
from typer.testing import CliRunner

from matryoshka.cli import app
from matryoshka.index import CorruptIndexError, IndexInputError, IndexStore, MatryoshkaIndex, disk
from matryoshka.index.disk import DiskRows


def _data(n=6000, d=96, queries=40, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((40, d)).astype(np.float32)
    x = centers[rng.integers(0, 40, n)] + 0.6 * rng.standard_normal((n, d)).astype(np.float32)
    q = centers[rng.integers(0, 40, queries)] + 0.6 * rng.standard_normal((queries, d)).astype(np.float32)
    return x, q


PLANS = ["adaptive:12:80:96", "funnel:12x200,48x50,96x10", "full", "adaptive:24:60:96"]


@pytest.mark.parametrize("shortlist", ["flat", "hnsw"])
@pytest.mark.parametrize("encoding", ["float32", "int8"])
def test_disk_tier_returns_the_in_ram_results(tmp_path, shortlist, encoding):
    x, q = _data()
    ids = [f"doc-{i}" for i in range(len(x))]
    index = MatryoshkaIndex.build(x, ids, shortlist_dims=[12], shortlist=shortlist, encoding=encoding)
    index.save(tmp_path / "ix")
    on_disk = MatryoshkaIndex.load(tmp_path / "ix", full_vectors="disk")
    assert isinstance(on_disk.arrays().codes, DiskRows) and on_disk.arrays().codes.direct
    for plan in PLANS:
        ram_s, ram_ids = index.search(q, 10, plan, exact=True)
        for batch in (q, q[:1]):  # a batch and a single query (its own path through the threads)
            disk_s, disk_ids = on_disk.search(batch, 10, plan, exact=True)
            np.testing.assert_array_equal(disk_ids, ram_ids[: len(batch)])
            np.testing.assert_allclose(disk_s, ram_s[: len(batch)], rtol=1e-6, atol=1e-6)


def test_rows_straddling_blocks_and_many_candidates_read_right(tmp_path):
    x = np.random.default_rng(1).standard_normal((3000, 100)).astype(np.float32)  # 400-byte rows: odd offsets
    np.save(tmp_path / "rows.npy", x)
    rows = DiskRows(tmp_path / "rows.npy")
    assert rows.direct  # (a file system that refuses O_DIRECT is covered by the fallback test)
    positions = np.random.default_rng(2).integers(0, 3000, (3, 700))  # more than one submission per call
    np.testing.assert_array_equal(rows.take(positions, 100), x[positions])
    np.testing.assert_array_equal(rows.take(positions[:, :5], 37), x[positions[:, :5], :37])
    assert rows.nbytes == 0 and len(rows) == 3000 and np.array_equal(np.asarray(rows), x)


def test_falls_back_with_a_warning_where_direct_io_is_refused(tmp_path, monkeypatch):
    x, q = _data(2000)
    index = MatryoshkaIndex.build(x, shortlist_dims=[12])
    index.save(tmp_path / "ix")
    real_open = os.open

    def no_direct(path, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(22, "Invalid argument")  # what tmpfs answers
        return real_open(path, flags, *args)

    monkeypatch.setattr(disk.os, "open", no_direct)
    with pytest.warns(UserWarning, match="direct I/O is not available here"):
        fallback = MatryoshkaIndex.load(tmp_path / "ix", full_vectors="disk")
    assert not fallback.arrays().codes.direct
    np.testing.assert_array_equal(
        fallback.search(q, 10, "adaptive:12:50:96")[1], index.search(q, 10, "adaptive:12:50:96")[1]
    )


def test_a_truncated_or_changed_file_is_refused_in_one_line(tmp_path):
    x, q = _data(2000)
    MatryoshkaIndex.build(x, shortlist_dims=[12]).save(tmp_path / "ix")
    codes = next((tmp_path / "ix").glob("v-*/codes.npy"))
    opened = MatryoshkaIndex.load(tmp_path / "ix", full_vectors="disk")
    with open(codes, "r+b") as f:
        f.truncate(codes.stat().st_size - 1000)
    with pytest.raises(CorruptIndexError, match="was changed after the index was opened"):
        opened.search(q[:1], 10, "adaptive:12:50:96")
    with pytest.raises(CorruptIndexError, match="the file is truncated or was changed after the build"):
        MatryoshkaIndex.load(tmp_path / "ix", full_vectors="disk", verify=False)
    with pytest.raises(CorruptIndexError, match="does not match its checksum"):
        MatryoshkaIndex.load(tmp_path / "ix", full_vectors="disk")


def test_unknown_tier_is_one_clear_line(tmp_path):
    with pytest.raises(IndexInputError, match="unknown --full-vectors 'ssd'"):
        MatryoshkaIndex(8, shortlist_dims=[4], full_vectors="ssd")
    np.save(tmp_path / "x.npy", _data(500, 16)[0])
    build = ["index", "build", "--embeddings", str(tmp_path / "x.npy"), "--out", str(tmp_path / "ix")]
    result = CliRunner().invoke(app, [*build, "--full-vectors", "ssd"])
    assert result.exit_code == 2 and "unknown --full-vectors 'ssd'; choose one of ram, mmap, disk" in result.output


def test_built_for_the_disk_tier_the_store_opens_and_compacts_there(tmp_path):
    x, q = _data(3000)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "q.npy", q)
    args = ["index", "build", "--embeddings", str(tmp_path / "x.npy"), "--out", str(tmp_path / "ix")]
    result = CliRunner().invoke(app, [*args, "--shortlist-dims", "12", "--full-vectors", "disk"])
    assert result.exit_code == 0, result.output
    with IndexStore.open(tmp_path / "ix", compact_threshold=0) as store:
        assert isinstance(store.index.arrays().codes, DiskRows)
        store.add(x[:100] + 0.01)
        store.compact()
        assert isinstance(store.index.arrays().codes, DiskRows)  # the new version's rows stay on the disk too
        after = store.search(q, 10, "adaptive:12:60:96")
    in_ram = MatryoshkaIndex.load(tmp_path / "ix", full_vectors="ram").search(q, 10, "adaptive:12:60:96")
    np.testing.assert_array_equal(after[1], in_ram[1])
    search = ["index", "search", "--index", str(tmp_path / "ix"), "--queries", str(tmp_path / "q.npy")]
    result = CliRunner().invoke(app, [*search, "--plan", "adaptive:12:60:96"])
    assert result.exit_code == 0 and "query 0:" in result.output


def test_a_removed_old_version_still_serves_the_searches_that_hold_it(tmp_path):
    import shutil

    x, q = _data(2000)
    MatryoshkaIndex.build(x, shortlist_dims=[12]).save(tmp_path / "ix")
    opened = MatryoshkaIndex.load(tmp_path / "ix", full_vectors="disk")
    expected = opened.search(q, 10, "adaptive:12:50:96")
    for version in (tmp_path / "ix").glob("v-*"):
        shutil.rmtree(version)  # what a compaction does to the version it replaced
    np.testing.assert_array_equal(opened.search(q, 10, "adaptive:12:50:96")[1], expected[1])


def test_a_failed_read_leaves_no_stray_completion_for_the_next_one(tmp_path):
    x = np.random.default_rng(3).standard_normal((1000, 64)).astype(np.float32)
    np.save(tmp_path / "rows.npy", x)
    rows = DiskRows(tmp_path / "rows.npy")
    beyond = np.array([5, 10_000_000, 7, 12])  # one read past the end of the file comes back short
    with pytest.raises(OSError, match="too few"):
        rows.take(beyond, 64)
    for _ in range(3):  # the reads of the failed call are gone: each later call gets its own rows
        positions = np.random.default_rng(4).integers(0, 1000, 300)
        np.testing.assert_array_equal(rows.take(positions, 64), x[positions])


def test_the_disk_tier_takes_no_appends_and_says_where_to_add(tmp_path):
    x, _ = _data(2000)
    MatryoshkaIndex.build(x, shortlist_dims=[12]).save(tmp_path / "ix")
    on_disk = MatryoshkaIndex.load(tmp_path / "ix", full_vectors="disk")
    with pytest.raises(IndexInputError, match="add through IndexStore"):
        on_disk.add(x[:3])
    with IndexStore.open(tmp_path / "ix", compact_threshold=0) as store:
        store.add(x[:3])
    with pytest.warns(UserWarning, match="reads every row into RAM"):
        folded = MatryoshkaIndex.load(tmp_path / "ix", full_vectors="disk")
    assert folded.ntotal == 2003


def test_built_for_the_disk_tier_plans_are_tuned_and_timed_on_it(tmp_path, monkeypatch):
    """`mrl index build --full-vectors disk` times its plans on the disk tier: the timed searches read their rows
    from a file beside the index with direct I/O, each read is priced in the cost model (so the plans timed are
    those that read fewest rows), and where reads are slow (here 3 ms each, far beyond any machine's scan of this
    corpus) the exact scan, which reads nothing per query, is chosen. In RAM no row is read or priced."""
    import time

    import matryoshka.index.autotune as tune_module
    from matryoshka.index.autotune import build_tuned, plan_reads
    from matryoshka.index.plans import FullPlan

    x, _ = _data(n=3000)
    np.save(tmp_path / "x.npy", x)
    folders, original_take = [], DiskRows.take

    def slow_take(self, positions, d):
        folders.append(self.path.parent)
        time.sleep(0.003)
        return original_take(self, positions, d)

    timed_on, original_batch1 = [], tune_module.batch1_ms

    def recording_batch1(index, *args, **kwargs):
        timed_on.append(type(index.arrays().codes))
        return original_batch1(index, *args, **kwargs)

    priced = []
    monkeypatch.setattr(DiskRows, "take", slow_take)
    monkeypatch.setattr(tune_module, "batch1_ms", recording_batch1)
    monkeypatch.setattr(tune_module, "read_cost_flops", lambda rows: priced.append(rows) or 1e9)
    runner = CliRunner()
    build = ["index", "build", "--embeddings", str(tmp_path / "x.npy"), "--shortlist-dims", "12,24"]
    ram = runner.invoke(app, [*build, "--out", str(tmp_path / "ram")])
    assert ram.exit_code == 0, ram.output
    assert folders == [] and priced == [] and set(timed_on) == {np.ndarray}
    timed_on.clear()
    result = runner.invoke(app, [*build, "--out", str(tmp_path / "ix"), "--full-vectors", "disk"])
    assert result.exit_code == 0, result.output
    assert set(timed_on) == {DiskRows} and set(folders) == {tmp_path / "ix"}  # on rows on the index's device
    assert len(priced) == 1 and priced[0].direct  # a read was priced once, on the direct-I/O rows
    assert "plan: full" in result.output  # every read costs 3 ms: the plans that read rows lose
    assert not list((tmp_path / "ix").glob(".tuning-*"))  # the tuning file is gone
    index = MatryoshkaIndex.load(tmp_path / "ix")
    assert isinstance(index.arrays().codes, DiskRows) and index.ntotal == 3000 and index.default_plan == "full"
    monkeypatch.setattr(DiskRows, "take", original_take)
    index, tuned = build_tuned(x, shortlist_dims=[12, 24], full_vectors="disk", tier_folder=tmp_path / "lib")
    reached = [c for c in tuned.candidates if c["recall"] >= 0.95 and not isinstance(c["plan"], FullPlan)]
    timed = [plan_reads(c["plan"], index, 10) for c in reached if "latency_ms" in c]
    untimed = [plan_reads(c["plan"], index, 10) for c in reached if "latency_ms" not in c]
    assert timed and untimed and max(timed) <= min(untimed)  # priced reads: the fewest-read plans are timed


def test_on_the_disk_tier_the_graph_search_breadth_is_tuned_and_kept(tmp_path):
    """Reads cost more than graph work on the disk tier, so autotune also tries wider HNSW searches
    (:data:`~matryoshka.index.autotune.DISK_EF_SEARCH`): each breadth is measured, a wider one reaches the target
    with a shortlist no longer than the narrowest's, and the index keeps (and saves) the breadth of the winner. In
    RAM only the index's own breadth is tuned."""
    from matryoshka.index.autotune import DISK_EF_SEARCH, autotune
    from matryoshka.index.disk import DiskTier
    from matryoshka.index.plans import AdaptivePlan

    x, q = _data(n=6000, queries=100)
    index = MatryoshkaIndex.build(x, shortlist_dims=[12], shortlist="hnsw", hnsw_m=4, hnsw_ef_search=16)
    ram = autotune(index, q, k=10, target_recall=0.95, structures="keep")
    assert {c["structure"]["hnsw_ef_search"] for c in ram.candidates} == {16}

    index = MatryoshkaIndex.build(x, shortlist_dims=[12], shortlist="hnsw", hnsw_m=4, hnsw_ef_search=16)
    tuned = autotune(index, q, k=10, target_recall=0.95, structures="keep", disk_tier=DiskTier(tmp_path))
    assert {c["structure"]["hnsw_ef_search"] for c in tuned.candidates} >= set(DISK_EF_SEARCH)

    def shortest_k(ef):
        reached = [c for c in tuned.candidates if c["recall"] >= 0.95 and isinstance(c["plan"], AdaptivePlan)]
        return min(c["plan"].shortlist_k for c in reached if c["structure"]["hnsw_ef_search"] == ef)

    assert shortest_k(max(DISK_EF_SEARCH)) <= shortest_k(min(DISK_EF_SEARCH))
    assert index.hnsw_ef_search == tuned.structure["hnsw_ef_search"]
    index.save(tmp_path / "ix")
    assert MatryoshkaIndex.load(tmp_path / "ix", full_vectors="disk").hnsw_ef_search == index.hnsw_ef_search
