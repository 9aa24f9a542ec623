"""Indexes and their plans on Qdrant (local mode), Milvus Lite (the Milvus engine, embedded) and PostgreSQL with
pgvector (the embedded server with pgvector 0.6, and a server over TCP with pgvector 0.8): the same ids and scores
as the library, resumable exports, string ids, the recorded plan, and one clear line for each bad input."""

import importlib.util

import numpy as np
import pytest
from typer.testing import CliRunner

from matryoshka.cli import app
from matryoshka.engines import EngineError, connect, export_index, parse_uri, search
from matryoshka.errors import InputError
from matryoshka.index import AdaptivePlan, FullPlan, FunnelPlan, MatryoshkaIndex

pytest.importorskip("qdrant_client", reason="qdrant-client is not installed (pip install 'matryoshka-mrl[qdrant]')")
pytest.importorskip("milvus_lite", reason="milvus-lite does not install here (pip install 'matryoshka-mrl[milvus]')")

PLANS = [FullPlan(), AdaptivePlan(8, 60, 64), FunnelPlan([(8, 120), (16, 60), (32, 30), (64, 10)])]
SPECTRUM = np.linspace(3, 0.1, 64)
ENGINES = ["qdrant", "milvus", "milvus-fetch", "postgres", "postgres-0.8"]
NO_PGSERVER = "pgserver is not installed (pip install 'matryoshka-mrl[postgres]')"


def _vectors(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, 64)) * SPECTRUM).astype(np.float32)


def _open(kind: str, folder, request):
    if kind == "qdrant":
        return connect(f"qdrant:{folder / 'qdrant'}")
    if kind == "postgres":
        if importlib.util.find_spec("pgserver") is None:
            pytest.skip(NO_PGSERVER)
        return connect(f"postgres:{folder / 'pg'}")
    if kind == "postgres-0.8":
        return connect(request.getfixturevalue("pg08").uri)
    return connect(f"milvus:{folder / 'milvus.db'}", rerank="fetch" if kind == "milvus-fetch" else "filter")


@pytest.fixture(scope="module", params=ENGINES)
def engine(request, tmp_path_factory):
    with _open(request.param, tmp_path_factory.mktemp(request.param), request) as opened:
        yield opened


@pytest.fixture(scope="module")
def indexes():
    x = _vectors(1500, 0)
    by_int = MatryoshkaIndex(64, [8])
    by_int.add(x, ids=np.arange(1000, 2500))
    by_str = MatryoshkaIndex(64, [8])
    by_str.add(x, ids=[f'doc\\{i}"é' for i in range(1500)])  # a backslash, a quote and non-ASCII survive
    return {"int": by_int, "str": by_str}


@pytest.mark.parametrize("id_kind", ["int", "str"])
def test_plans_on_the_engine_match_the_library(engine, indexes, id_kind):
    index, queries = indexes[id_kind], _vectors(8, 1)
    collection = f"docs_{id_kind}"
    engine.drop(collection)
    report = export_index(index, engine, collection, dims=[8, 16, 32, 64], progress=False)
    assert (report.sent, report.skipped) == (1500, 0)
    for plan in PLANS:
        scores, ids = search(engine, collection, queries, 10, plan)
        ref_scores, ref_ids = index.search(queries, 10, plan)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_allclose(scores, ref_scores, atol=1e-4)


def test_an_interrupted_export_resumes_without_duplicates(engine, indexes):
    index = indexes["str"]
    first = MatryoshkaIndex(64, [8])
    first.add(index.vectors(np.arange(600)), ids=index.arrays().ids[:600].tolist())  # what got in before a crash
    engine.drop("resumed")
    export_index(first, engine, "resumed", dims=[8, 64], progress=False, batch_size=128)
    report = export_index(index, engine, "resumed", dims=[8, 64], progress=False, batch_size=128)
    assert (report.sent, report.skipped) == (900, 600)
    assert engine.count("resumed") == 1500
    queries = _vectors(4, 2)
    np.testing.assert_array_equal(search(engine, "resumed", queries, 10)[1], index.search(queries, 10)[1])


def test_the_tuned_plan_travels_with_the_collection(engine, indexes):
    index, queries = indexes["int"], _vectors(16, 3)
    index.default_plan = "funnel:8x90,32x40,64x10"  # as autotune sets it
    try:
        engine.drop("tuned")
        export_index(index, engine, "tuned", progress=False)
        info = engine.collection("tuned")
        assert info.plan == index.default_plan and info.dims == [8, 32, 64]  # the plan's and the full dim
        np.testing.assert_array_equal(search(engine, "tuned", queries, 10)[1], index.search(queries, 10)[1])
        np.testing.assert_array_equal(search(engine, "tuned", queries, 20)[1], index.search(queries, 20)[1])
    finally:
        index.default_plan = None


def test_bad_input_gets_one_clear_line(engine, indexes):
    index = indexes["int"]
    engine.drop("checked")
    export_index(index, engine, "checked", dims=[8, 64], progress=False)
    with pytest.raises(InputError, match=r"holds prefixes \[8, 64\] of 64-d vectors.*--dims 8,64"):
        export_index(index, engine, "checked", dims=[8, 32, 64], progress=False)
    with pytest.raises(InputError, match="holds 64-d vectors"):
        search(engine, "checked", np.ones((2, 32), np.float32), 10)
    with pytest.raises(InputError, match=r"asks for prefix 16, which collection 'checked'.*holds \[8, 64\]"):
        search(engine, "checked", _vectors(2, 4), 10, AdaptivePlan(16, 50, 64))
    with pytest.raises(InputError, match="there is no collection 'absent'"):
        search(engine, "absent", _vectors(2, 4), 10)
    with pytest.raises(InputError, match="must be in"):
        export_index(index, engine, "other", dims=[128], progress=False)
    with pytest.raises(InputError, match="must not shrink"):
        export_index(index, engine, "other", plan="funnel:16x100,8x10", progress=False)
    if engine.name == "PostgreSQL":  # a quoted identifier may hold any character, but no more than 63 bytes
        with pytest.raises(InputError, match="table name takes 1 to 63 bytes"):
            export_index(index, engine, "x" * 64, dims=[8, 64], progress=False)
    else:
        with pytest.raises(EngineError, match=r"(Qdrant|Milvus) at .* refused the request: .*name"):
            export_index(index, engine, "no/such-name", dims=[8, 64], progress=False)


def test_addresses():
    assert parse_uri("milvus:/data/docs.db").location == "/data/docs.db"
    assert parse_uri("milvus+http://milvus-0:19530").host_port == "milvus-0:19530"
    with pytest.raises(InputError, match="unknown engine URI scheme 'weaviate'.*qdrant:PATH"):
        parse_uri("weaviate://x")
    with pytest.raises(InputError, match="names no host"):
        parse_uri("qdrant+http:6333")


@pytest.mark.parametrize(
    "uri", ["qdrant+http://127.0.0.1:9", "milvus+http://127.0.0.1:9", "postgresql://postgres@127.0.0.1:9/docs"]
)
def test_an_engine_that_cannot_be_reached_is_named(uri):
    with pytest.raises(EngineError, match=r"cannot reach (Qdrant|Milvus|PostgreSQL) at 127\.0\.0\.1:9"):
        connect(uri, timeout=2)


@pytest.mark.parametrize("scheme", ["milvus", "postgres"])
def test_cli_export_and_search_write_what_a_local_search_writes(tmp_path, scheme):
    if scheme == "postgres" and importlib.util.find_spec("pgserver") is None:
        pytest.skip(NO_PGSERVER)
    runner = CliRunner()
    np.save(tmp_path / "x.npy", _vectors(1200, 5))
    np.save(tmp_path / "q.npy", _vectors(6, 6))
    folder = tmp_path / "index"
    uri = f"milvus:{tmp_path / 'cli.db'}" if scheme == "milvus" else f"postgres:{tmp_path / 'pg'}"
    build = ["index", "build", "--embeddings", tmp_path / "x.npy", "--out", folder, "--shortlist", "flat"]
    assert runner.invoke(app, [str(a) for a in [*build, "--shortlist-dims", "8"]]).exit_code == 0
    export = ["index", "export", "--index", folder, "--to", uri, "--collection", "docs", "--dims", "8,64"]
    result = runner.invoke(app, [str(a) for a in export])
    assert result.exit_code == 0, result.output
    assert "exported 1200 vectors" in result.output
    again = runner.invoke(app, [str(a) for a in export])
    assert "exported 0 vectors" in again.output and "1200 were already there" in again.output
    for index, extra in [(uri, ["--collection", "docs"]), (str(folder), [])]:
        out = tmp_path / f"{len(extra)}.npz"
        args = ["index", "search", "--index", index, "--queries", tmp_path / "q.npy", "--plan", "adaptive:8:80:64"]
        result = runner.invoke(app, [str(a) for a in [*args, *extra, "--out", out]])
        assert result.exit_code == 0, result.output
    engine_out, local_out = np.load(tmp_path / "2.npz"), np.load(tmp_path / "0.npz")
    np.testing.assert_array_equal(engine_out["ids"], local_out["ids"])
    np.testing.assert_allclose(engine_out["scores"], local_out["scores"], atol=1e-4)
    bad = runner.invoke(app, ["index", "search", "--index", "pinecone:x", "--queries", str(tmp_path / "q.npy")])
    assert bad.exit_code == 2 and "unknown engine URI scheme 'pinecone'" in bad.output
    missing = runner.invoke(app, ["index", "search", "--index", uri, "--queries", str(tmp_path / "q.npy")])
    assert missing.exit_code == 2 and "needs --collection NAME" in missing.output
    if scheme == "postgres":  # a refused connection answers at once (Milvus's client waits out its timeout)
        down = ["--index", "postgresql://mrl@127.0.0.1:9/docs", "--collection", "docs"]
        refused = runner.invoke(app, ["index", "search", *down, "--queries", str(tmp_path / "q.npy")])
        assert refused.exit_code == 2 and "cannot reach PostgreSQL at 127.0.0.1:9" in refused.output


def test_an_index_folder_on_the_disk_tier_exports_alike(engine, indexes, tmp_path):
    x = indexes["int"].vectors(np.arange(1500))
    folder = tmp_path / "disk_index"
    MatryoshkaIndex.build(x, shortlist_dims=[8], full_vectors="disk").save(folder)
    engine.drop("from_disk")
    assert export_index(folder, engine, "from_disk", dims=[8, 64], progress=False).sent == 1500
    queries = _vectors(4, 7)
    expected = MatryoshkaIndex.load(folder).search(queries, 10, AdaptivePlan(8, 60, 64))[1]
    np.testing.assert_array_equal(search(engine, "from_disk", queries, 10, AdaptivePlan(8, 60, 64))[1], expected)


def test_a_rotated_index_exports_its_rotated_prefixes_and_the_engine_projects_queries(engine, indexes):
    from matryoshka.index.basis import fit_basis

    raw = indexes["int"]
    rotated = raw.with_basis(fit_basis(_vectors(1500, 0)))
    queries, plan = _vectors(8, 1), AdaptivePlan(8, 60, 64)
    engine.drop("rotated")
    export_index(rotated, engine, "rotated", dims=[8, 64], plan=plan, progress=False)
    scores, ids = search(engine, "rotated", queries, 10)  # the recorded plan, over the rotated 8-dim field
    ref_scores, ref_ids = rotated.search(queries, 10, plan)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-4)
    with pytest.raises(InputError, match="re-ranks with the 8-dim prefix, but .* holds rotated prefixes"):
        search(engine, "rotated", queries, 10, FunnelPlan([(8, 60), (8, 30), (64, 10)]))
    with pytest.raises(InputError, match="another basis than this index's"):
        export_index(raw, engine, "rotated", dims=[8, 64], progress=False)


def test_the_hint_for_a_missing_prefix_is_a_command_that_works(engine, indexes):
    """Neither engine adds fields to a collection: the hint's --dims go with --replace, which drops and re-exports."""
    import re

    index, queries = indexes["int"], _vectors(4, 8)
    engine.drop("hinted")
    export_index(index, engine, "hinted", dims=[8, 64], progress=False)
    with pytest.raises(InputError, match=r"--dims 8,16,64 --replace") as refused:
        search(engine, "hinted", queries, 10, AdaptivePlan(16, 50, 64))
    with pytest.raises(InputError, match=r"--replace to drop it"):  # the same dims without --replace are refused
        export_index(index, engine, "hinted", dims=[8, 16, 64], progress=False)
    dims = [int(d) for d in re.search(r"--dims ([\d,]+) --replace", str(refused.value)).group(1).split(",")]
    report = export_index(index, engine, "hinted", dims=dims, progress=False, replace=True)
    assert (report.sent, report.skipped) == (1500, 0) and engine.collection("hinted").dims == [8, 16, 64]
    found = search(engine, "hinted", queries, 10, AdaptivePlan(16, 50, 64))[1]
    np.testing.assert_array_equal(found, index.search(queries, 10, AdaptivePlan(16, 50, 64), exact=True)[1])


def test_cli_export_replace_follows_the_search_hint(tmp_path):
    import re
    import shlex

    runner = CliRunner()
    np.save(tmp_path / "x.npy", _vectors(300, 9))
    np.save(tmp_path / "q.npy", _vectors(3, 10))
    folder, uri = tmp_path / "index", f"qdrant:{tmp_path / 'qdrant'}"
    build = ["index", "build", "--embeddings", tmp_path / "x.npy", "--out", folder, "--shortlist", "flat"]
    assert runner.invoke(app, [str(a) for a in [*build, "--shortlist-dims", "8,16"]]).exit_code == 0
    export = ["index", "export", "--index", str(folder), "--to", uri, "--collection", "docs"]
    assert runner.invoke(app, [*export, "--dims", "8,64"]).exit_code == 0
    ask = ["index", "search", "--index", uri, "--collection", "docs", "--queries", str(tmp_path / "q.npy")]
    refused = runner.invoke(app, [*ask, "--plan", "adaptive:16:50:64"])
    assert refused.exit_code == 2, refused.output
    hint = re.search(r"mrl (index export .*? --replace)", " ".join(refused.output.split())).group(1)
    again = runner.invoke(app, shlex.split(hint.replace("INDEX_DIR", str(folder))))  # the hint, as it is
    assert again.exit_code == 0 and "exported 300 vectors" in again.output, again.output
    assert runner.invoke(app, [*ask, "--plan", "adaptive:16:50:64"]).exit_code == 0
