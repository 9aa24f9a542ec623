"""PostgreSQL + pgvector beyond what every engine shares (tests/test_engines.py): the layout the server's pgvector
version decides, one transaction per COPY batch, and one clear line for a database without pgvector, a table that
is not ours or was changed, a shortlist beyond HNSW's reach, and addresses."""

import numpy as np
import pytest

from matryoshka.engines import EngineError, connect, export_index, parse_uri, search
from matryoshka.errors import InputError
from matryoshka.index import AdaptivePlan, FunnelPlan, MatryoshkaIndex
from matryoshka.index.basis import fit_basis

pytest.importorskip("pgserver", reason="pgserver is not installed (pip install 'matryoshka-mrl[postgres]')")
pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'matryoshka-mrl[postgres]')")

SPECTRUM = np.linspace(3, 0.1, 64)


def _vectors(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, 64)) * SPECTRUM).astype(np.float32)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    with connect(f"postgres:{tmp_path_factory.mktemp('pg') / 'data'}") as engine:
        yield engine


@pytest.fixture(scope="module")
def index():
    built = MatryoshkaIndex(64, [8])
    built.add(_vectors(2000, 0))
    return built


def _columns(engine, table: str) -> dict[str, str]:
    rows = engine.conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass "
        "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (table,),
    ).fetchall()
    return dict(rows)


def test_the_servers_pgvector_decides_the_layout(embedded, pg08, index):
    queries, plan = _vectors(16, 1), FunnelPlan([(8, 200), (16, 60), (64, 10)])
    with connect(pg08.uri) as modern, connect(pg08.uri, halfvec=True) as half:
        assert embedded.version < (0, 7) <= modern.version
        rotated = index.with_basis(fit_basis(_vectors(2000, 0)))
        full = {"id": "bigint", "dim64": "vector(64)"}  # prefixes as subvector() expressions of the full dim
        floats = {"id": "bigint", "dim8": "vector(8)", "dim16": "vector(16)", "dim64": "vector(64)"}
        halves = {"id": "bigint", "dim8": "halfvec(8)", "dim16": "halfvec(16)", "dim64": "vector(64)"}
        for engine, source, table, columns in [
            (embedded, index, "raw", floats),
            (modern, index, "raw", full),
            (modern, rotated, "rotated", floats),  # rotated prefixes are no subvectors: columns
            (half, index, "half", full),
            (half, rotated, "rotated_half", halves),
        ]:
            engine.drop(table)
            rerank_at_full = AdaptivePlan(8, 200, 64) if source is rotated else plan
            export_index(source, engine, table, dims=[8, 16, 64], plan=rerank_at_full, progress=False)
            assert _columns(engine, table) == columns
            found = search(engine, table, queries, 10)[1]  # the recorded plan
            expected = source.search(queries, 10, rerank_at_full)[1]
            agreement = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, expected, strict=True)])
            assert agreement >= (0.9 if engine is half else 0.99), (table, agreement)
        graphs = dict(modern.conn.execute("SELECT tablename, indexdef FROM pg_indexes WHERE indexdef LIKE '%hnsw%'"))
        assert "(subvector(dim64, 1, 8))::halfvec(8)) halfvec_cosine_ops" in graphs["half"]
        assert "(subvector(dim64, 1, 8))::vector(8)) vector_cosine_ops" in graphs["raw"]
        assert "(dim8 halfvec_ip_ops)" in graphs["rotated_half"]
        # a subvector layout (no prefix columns) serves the layout checks and resumes like any other
        report = export_index(index, modern, "raw", dims=[8, 16, 64], plan=plan, progress=False)
        assert (report.sent, report.skipped) == (0, 2000)


def test_a_failed_copy_leaves_whole_batches_and_the_export_resumes(embedded, index, monkeypatch):
    import matryoshka.engines.postgres as postgres

    real, calls = postgres.copy_rows, []

    def broken_third_batch(ids, fields):
        calls.append(len(ids))
        stream = real(ids, fields)
        return stream[: len(stream) // 2] if len(calls) == 3 else stream  # the server sees a cut COPY stream

    embedded.drop("resumed")
    monkeypatch.setattr(postgres, "copy_rows", broken_third_batch)
    with pytest.raises(EngineError, match="PostgreSQL at .* refused the request"):
        export_index(index, embedded, "resumed", dims=[8, 64], batch_size=300, progress=False)
    held = embedded.count("resumed")  # whole batches (the one queued behind the failed one may have gone in)
    assert held % 300 == 0 and 600 <= held < 2000
    assert not embedded.existing("resumed", list(range(600, 900)))  # the cut batch rolled back as a whole
    monkeypatch.setattr(postgres, "copy_rows", real)
    report = export_index(index, embedded, "resumed", dims=[8, 64], batch_size=300, progress=False)
    assert (report.sent, report.skipped) == (2000 - held, held) and embedded.count("resumed") == 2000
    queries = _vectors(4, 2)
    np.testing.assert_array_equal(search(embedded, "resumed", queries, 10)[1], index.search(queries, 10)[1])


def test_a_database_without_pgvector_is_refused_with_the_fix(pg08_server):
    for statement in ["DROP DATABASE IF EXISTS plain", "DROP ROLE IF EXISTS plain", "CREATE ROLE plain LOGIN",
                      "CREATE DATABASE plain OWNER plain"]:  # fmt: skip
        pg08_server.psql(statement)  # one each: psql -c runs them in one transaction, where DROP DATABASE may not run
    uri = f"postgresql://plain@127.0.0.1:{pg08_server.port}/plain"  # not a superuser: it may not add pgvector itself
    with pytest.raises(EngineError, match=r"database 'plain' on PostgreSQL at 127\.0\.0\.1:\d+ has no pgvector "
                       r"extension: install pgvector on the server and run CREATE EXTENSION vector;"):  # fmt: skip
        connect(uri)


def test_tables_that_are_not_ours_or_were_changed_get_one_line(embedded, index):
    embedded.drop("foreign")
    embedded.conn.execute('CREATE TABLE "foreign" (id int, embedding vector(3))')
    with pytest.raises(EngineError, match="table 'foreign' .* was not exported by matryoshka"):
        search(embedded, "foreign", _vectors(1, 3), 10)
    with pytest.raises(EngineError, match="was not exported by matryoshka"):
        export_index(index, embedded, "foreign", dims=[8, 64], progress=False)
    embedded.drop("changed")
    export_index(index, embedded, "changed", dims=[8, 64], progress=False)
    embedded.conn.execute('ALTER TABLE "changed" ALTER COLUMN dim8 TYPE vector USING dim8')
    with pytest.raises(EngineError, match=r"has the columns \(id bigint, dim8 vector, dim64 vector\(64\)\), not "
                       r"the layout its export recorded .*--replace"):  # fmt: skip
        search(embedded, "changed", _vectors(1, 3), 10)
    assert export_index(index, embedded, "changed", dims=[8, 64], progress=False, replace=True).sent == 2000


def test_a_shortlist_beyond_hnsw_reach_is_refused(embedded, index):
    embedded.drop("wide")
    export_index(index, embedded, "wide", dims=[8, 64], plan="adaptive:8:100:64", progress=False)
    with pytest.raises(InputError, match="at most 1000 candidates per search .* asks 1500"):
        search(embedded, "wide", _vectors(1, 4), 10, AdaptivePlan(8, 1500, 64))
    found = search(embedded, "wide", _vectors(2, 4), 10, AdaptivePlan(64, 1500, 64))[1]  # no graph: an exact scan
    np.testing.assert_array_equal(found, index.search(_vectors(2, 4), 10)[1])


def test_addresses_and_folders(tmp_path):
    assert parse_uri("postgres:/data/pg") == parse_uri("postgres:/data/pg")
    assert not parse_uri("postgres:/data/pg").remote
    remote = parse_uri("postgresql://mrl:s3cret@db-0:5433/docs?sslmode=require")
    assert remote.remote and remote.host_port == "db-0:5433" and "s3cret" not in str(remote)
    assert parse_uri("postgres://mrl@db-0/docs").host_port == "db-0:5432"
    with pytest.raises(InputError, match="no connection URI; write postgresql://USER@HOST:5432/DB"):
        parse_uri("postgresql:docs")
    with pytest.raises(InputError, match="port is not a number"):
        parse_uri("postgresql://mrl:s3cret@db-0:x/docs")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("a folder of something else")
    with pytest.raises(InputError, match="is not an embedded PostgreSQL's data folder"):
        connect(f"postgres:{tmp_path / 'notes'}")
