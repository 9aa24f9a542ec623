"""PostgreSQL + pgvector: an embedded server (``postgres:DIR``, the ``pgserver`` wheel) or any server with the
``vector`` extension (``postgresql://USER@HOST:5432/DB``), through psycopg 3.

Layout: one table per collection, ``id`` (``bigint`` or ``text``, the index's own ids, the primary key) and one
column per exported prefix, ``dim16``, ``dim512``, ... (unit length, so the inner product is the cosine); the
export's :class:`~matryoshka.engines.base.CollectionInfo` and the table's layout are JSON in the table's comment.
The server's pgvector version decides the layout:

* pgvector < 0.7 (the embedded server has 0.6.2): every prefix is a ``vector(d)`` column;
* pgvector >= 0.7, an index of raw (not rotated) prefixes: the table holds only the full-dim column, and each
  prefix is the expression ``subvector(dimN, 1, d)``, with an HNSW expression index on the first stage's, as the
  pgvector docs advise for Matryoshka embeddings (rotated prefixes are columns: they are no subvectors);
* ``halfvec=True`` on pgvector >= 0.7: prefixes below the full dim are ``halfvec(d)``, half the bytes in the table
  and in the HNSW graph. Their rounding moves a few candidates across the shortlist's boundary, so the top 10
  agrees a little less with the library's (``mrl bench engines`` measures it); the full dim stays ``vector``.

The first stage of the recorded plan gets an HNSW index (built once the rows are in: faster than growing it row by
row); the other prefixes only re-rank. A plan runs as ONE SQL statement for a whole batch of queries: a lateral
join of the queries with nested ``ORDER BY ... LIMIT`` subqueries, the innermost an HNSW scan of the first stage
(``hnsw.ef_search`` set from its K), each outer one a re-rank of the survivors with a larger prefix.

Rows go in with binary ``COPY``, one transaction per batch, so an interrupted export leaves whole batches and
resumes with the ids that are missing.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from matryoshka.engines.base import CollectionInfo, Engine, EngineError, error_line, field_name, ranked_arrays
from matryoshka.engines.uri import EngineURI
from matryoshka.errors import InputError
from matryoshka.normalize import normalize

LAYOUT_KEY = "pgvector"
MAX_EF_SEARCH = 1000  # pgvector's bound on hnsw.ef_search: an HNSW scan returns at most that many rows
MAX_NAME_BYTES = 63  # PostgreSQL's identifier length (it truncates longer names silently)
HNSW = {"m": 16, "ef_construction": 64}  # pgvector's defaults
BUILD_MEMORY = "512MB"  # maintenance_work_mem for the HNSW build: a graph that fits builds much faster
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)


def _modules():
    try:
        import psycopg
        from psycopg import sql
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("PostgreSQL needs psycopg (and pgserver): pip install 'matryoshka-mrl[postgres]'") from e
    return psycopg, sql


@dataclass
class TableLayout:
    """How a collection's prefixes are stored. half: prefixes below the full dim are ``halfvec``; subvector: they
    are expressions over the full-dim column (no column of their own); ann: the prefixes with an HNSW index."""

    dim: int
    half: bool = False
    subvector: bool = False
    ann: tuple[int, ...] = ()

    @classmethod
    def for_server(
        cls, info: CollectionInfo, ann_dims: list[int], version: tuple[int, ...], halfvec: bool = False
    ) -> TableLayout:
        modern = version >= (0, 7)  # halfvec and subvector() came with pgvector 0.7
        raw = info.basis is None and info.dim in info.dims
        return cls(info.dim, half=modern and halfvec, subvector=modern and raw, ann=tuple(sorted(ann_dims)))

    def kind(self, d: int) -> str:
        return "halfvec" if self.half and d < self.dim else "vector"

    def stored(self, dims: list[int]) -> list[int]:
        """The prefixes that are columns of the table."""
        return [d for d in dims if d == self.dim or not self.subvector]

    def columns(self, info: CollectionInfo) -> dict[str, str]:
        """Column name -> type, as ``format_type`` prints it."""
        id_type = "text" if info.id_kind == "str" else "bigint"
        return {"id": id_type, **{field_name(d): f"{self.kind(d)}({d})" for d in self.stored(info.dims)}}

    def value(self, d: int, sql) -> Any:
        """The SQL expression of the d-dim prefix of a row."""
        if d < self.dim and self.subvector:
            return sql.SQL("(subvector({}, 1, {})::{}({}))").format(
                sql.Identifier(field_name(self.dim)), sql.Literal(d), sql.SQL(self.kind(d)), sql.Literal(d)
            )
        return sql.Identifier(field_name(d))

    def distance(self, d: int) -> str:
        """The operator ordering the d-dim prefix: negative inner product over stored unit vectors, cosine distance
        over subvectors (not unit length)."""
        return "<=>" if d < self.dim and self.subvector else "<#>"

    def opclass(self, d: int) -> str:
        return f"{self.kind(d)}_{'cosine' if self.distance(d) == '<=>' else 'ip'}_ops"


class PostgresEngine(Engine):
    """A connection to PostgreSQL with pgvector: embedded (``postgres:DIR``) or a server (``postgresql://...``)."""

    name = "PostgreSQL"
    export_batch = 4096  # rows per COPY: one transaction each, so small batches pay a commit each

    def __init__(self, uri: EngineURI, timeout: float = 10.0, halfvec: bool = False) -> None:
        psycopg, _ = _modules()
        self.uri, self.halfvec, self.error_types = uri, halfvec, (psycopg.Error,)
        self._server_dir = None if uri.remote else _start_embedded(Path(uri.location))
        conninfo = uri.location if uri.remote else _embedded_uri(self._server_dir)
        try:
            self.conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=max(1, int(timeout)))
        except psycopg.Error as e:
            self._stop_embedded()
            raise EngineError(f"cannot reach PostgreSQL at {uri.host_port}: {error_line(e)}") from None
        self.version = self._pgvector_version()
        self._ef_search: int | None = None
        self._layouts: dict[str, TableLayout] = {}

    def _pgvector_version(self) -> tuple[int, ...]:
        psycopg, _ = _modules()
        database = self.conn.info.dbname
        found = self.conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        if found is None:
            try:  # a superuser (the embedded server's) may add it; pgvector is not a trusted extension
                self.conn.execute("CREATE EXTENSION vector")
            except psycopg.Error:
                self.close()
                raise EngineError(
                    f"database {database!r} on PostgreSQL at {self.uri.host_port} has no pgvector extension: "
                    f"install pgvector on the server and run CREATE EXTENSION vector; in {database!r} as a superuser"
                ) from None
            found = self.conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        return tuple(int(part) for part in str(found[0]).split(".")[:3] if part.isdigit())

    # -- collections -------------------------------------------------------------------------------------------
    def collection(self, name: str) -> CollectionInfo | None:
        found = self.conn.execute(  # one round trip: a search looks the collection up first
            "SELECT obj_description(c.oid, 'pg_class'), (SELECT json_agg(json_build_array(attname, "
            "format_type(atttypid, atttypmod)) ORDER BY attnum) FROM pg_attribute WHERE attrelid = c.oid "
            "AND attnum > 0 AND NOT attisdropped) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = %s AND n.nspname = current_schema() AND c.relkind IN ('r', 'p')",
            (name,),
        ).fetchone()
        if found is None:
            return None
        comment, attributes = found
        try:
            metadata = json.loads(comment or "{}")
            info = CollectionInfo.from_metadata(metadata)
            layout = TableLayout(**{**metadata[LAYOUT_KEY], "ann": tuple(metadata[LAYOUT_KEY]["ann"])})
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            info = None
        if info is None:
            raise EngineError(
                f"table {name!r} in database {self.conn.info.dbname!r} on {self.uri} was not exported by matryoshka "
                "(its comment holds no metadata): export to another collection"
            )
        held = {column: kind for column, kind in attributes or []}
        expected = layout.columns(info)
        if held != expected:
            shown = ", ".join(f"{k} {v}" for k, v in held.items())
            raise EngineError(
                f"table {name!r} on {self.uri} has the columns ({shown}), not the layout its export recorded "
                f"({', '.join(f'{k} {v}' for k, v in expected.items())}): it was changed since; export again with "
                "--replace, or to another collection"
            )
        self._layouts[name] = layout
        return info

    def _layout(self, name: str) -> TableLayout:
        if name not in self._layouts:
            self.collection(name)  # reads it from the table's comment
        return self._layouts[name]

    def create(self, name: str, info: CollectionInfo, ann_dims: list[int]) -> None:
        _, sql = _modules()
        _check_name(name)
        layout = TableLayout.for_server(info, ann_dims, self.version, self.halfvec)
        columns = [
            sql.SQL("{} {}{}").format(sql.Identifier(column), sql.SQL(kind), sql.SQL(" PRIMARY KEY" * (column == "id")))
            for column, kind in layout.columns(info).items()
        ]
        metadata = {**info.to_metadata(), LAYOUT_KEY: {**asdict(layout), "ann": list(layout.ann)}}
        with self.conn.transaction():
            self.conn.execute(sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(name), sql.SQL(", ").join(columns)))
            self.conn.execute(
                sql.SQL("COMMENT ON TABLE {} IS {}").format(sql.Identifier(name), sql.Literal(json.dumps(metadata)))
            )
        self._layouts[name] = layout

    def count(self, name: str) -> int:
        _, sql = _modules()
        return int(self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone()[0])

    def existing(self, name: str, ids: list) -> set:
        _, sql = _modules()
        kind = "text" if isinstance(ids[0], str) else "bigint"
        query = sql.SQL("SELECT id FROM {} WHERE id = ANY(%s::{}[])").format(sql.Identifier(name), sql.SQL(kind))
        return {row[0] for row in self.conn.execute(query, ([str(i) if kind == "text" else int(i) for i in ids],))}

    def insert(self, name: str, ids: list, prefixes: dict[int, np.ndarray]) -> None:
        _, sql = _modules()
        layout = self._layout(name)
        dims = layout.stored(sorted(prefixes))
        fields = [(prefixes[d], layout.kind(d) == "halfvec") for d in dims]
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in ["id", *map(field_name, dims)])
        statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT BINARY)").format(sql.Identifier(name), columns)
        with self.conn.transaction(), self.conn.cursor() as cursor, cursor.copy(statement) as copy:
            copy.write(copy_rows(ids, fields))

    def finish(self, name: str) -> None:
        _, sql = _modules()
        layout = self._layout(name)
        self.conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(BUILD_MEMORY)))
        build = sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw ({} {}) WITH (m = {}, ef_construction = {})")
        for d in layout.ann:
            self.conn.execute(
                build.format(
                    sql.Identifier(_index_name(name, d)), sql.Identifier(name), layout.value(d, sql),
                    sql.SQL(layout.opclass(d)), sql.Literal(HNSW["m"]), sql.Literal(HNSW["ef_construction"]),
                )
            )  # fmt: skip
        self.conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(name)))  # row estimates for the planner
        self.conn.execute("RESET maintenance_work_mem")

    def drop(self, name: str) -> None:
        _, sql = _modules()
        self.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
        self._layouts.pop(name, None)

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.close()
        self._stop_embedded()

    def _stop_embedded(self) -> None:
        if self._server_dir is not None:
            _stop_embedded(self._server_dir)
            self._server_dir = None

    # -- search ------------------------------------------------------------------------------------------------
    def run_stages(self, name, info, queries, stages):
        _, sql = _modules()
        layout = self._layout(name)
        d0, k0 = stages[0]
        if d0 in layout.ann and k0 > MAX_EF_SEARCH:
            raise InputError(
                f"pgvector's HNSW returns at most {MAX_EF_SEARCH} candidates per search (hnsw.ef_search); the plan "
                f"asks {k0}"
            )
        # HNSW's candidate list at twice the shortlist keeps its true top K in (it is cheap at a small prefix)
        ef = min(MAX_EF_SEARCH, max(2 * k0, 40))  # 40: pgvector's default
        if ef != self._ef_search:
            self.conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(ef),))
            self._ef_search = ef
        statement = plan_statement(name, layout, stages, sql)
        params = [_vector_texts(self._stage_queries(info, layout, queries, d)) for d, _ in stages]
        rows = self.conn.execute(statement, params).fetchall()
        scores: list[list[float]] = [[] for _ in range(len(queries))]
        ids: list[list] = [[] for _ in range(len(queries))]
        for query, id_, score in rows:
            ids[query - 1].append(id_)
            scores[query - 1].append(score)
        return ranked_arrays(scores, ids, info.id_kind)

    @staticmethod
    def _stage_queries(info: CollectionInfo, layout: TableLayout, queries: np.ndarray, d: int) -> np.ndarray:
        if d < info.dim and layout.subvector:
            return queries[:, :d]  # the cosine operator normalises
        return normalize(info.query_prefix(queries, d))


def plan_statement(name: str, layout: TableLayout, stages: list[tuple[int, int]], sql) -> Any:
    """One statement running ``stages`` for a batch of queries: parameter j is the array of the queries' prefixes
    for stage j; rows (query number from 1, id, score), each query's best first."""
    later = {field_name(d if not (layout.subvector and d < layout.dim) else layout.dim) for d, _ in stages[1:]}
    carried = [sql.Identifier(c) for c in sorted(later)]
    source: Any = sql.Identifier(name)
    for j, (d, keep) in enumerate(stages):
        last = j == len(stages) - 1
        query = sql.Identifier(f"q{j}")
        distance = sql.SQL("{} {} {}").format(layout.value(d, sql), sql.SQL(layout.distance(d)), query)
        selected = [sql.Identifier("id")]
        if last:
            score = "-({})" if layout.distance(d) == "<#>" else "1 - ({})"
            selected.append(sql.SQL(score + " AS score").format(distance))
        else:
            selected += carried
        source = sql.SQL("(SELECT {} FROM {} ORDER BY {} LIMIT {}) AS {}").format(
            sql.SQL(", ").join(selected), source, distance, sql.Literal(keep), sql.Identifier(f"s{j}")
        )
    arrays = sql.SQL(", ").join(sql.SQL("%s::{}[]").format(sql.SQL(layout.kind(d))) for d, _ in stages)
    names = sql.SQL(", ").join(sql.Identifier(f"q{j}") for j in range(len(stages)))
    return sql.SQL(
        "SELECT q.i, hits.id, hits.score FROM unnest({}) WITH ORDINALITY AS q({}, i) "
        "CROSS JOIN LATERAL (SELECT * FROM {}) AS hits ORDER BY q.i, hits.score DESC"
    ).format(arrays, names, source)


def copy_rows(ids: list, fields: list[tuple[np.ndarray, bool]]) -> bytes:
    """A binary COPY stream of rows (id, field...): ids int or str; each field (n, d) floats, stored as ``halfvec``
    where its flag is set, else ``vector`` (both: int16 dim, int16 unused, then big-endian values)."""
    n = len(ids)
    tail = [("nfields", ">i2")] if isinstance(ids[0], str) else [("nfields", ">i2"), ("idlen", ">i4"), ("id", ">i8")]
    for j, (values, half) in enumerate(fields):
        d = values.shape[1]
        tail += [(f"len{j}", ">i4"), (f"dim{j}", ">i2"), (f"unused{j}", ">i2"), (f"v{j}", ">f2" if half else ">f4", d)]
    rows = np.zeros(n, np.dtype(tail))
    rows["nfields"] = 1 + len(fields)
    for j, (values, half) in enumerate(fields):
        d = values.shape[1]
        rows[f"len{j}"], rows[f"dim{j}"], rows[f"v{j}"] = 4 + d * (2 if half else 4), d, values
    if not isinstance(ids[0], str):
        rows["idlen"], rows["id"] = 8, np.asarray(ids, np.int64)
        return COPY_HEADER + rows.tobytes() + COPY_TRAILER
    # text ids vary in length: the fixed part after nfields follows each id's bytes
    packed = rows.view(np.uint8).reshape(n, rows.dtype.itemsize)
    parts = [COPY_HEADER]
    for i, id_ in enumerate(ids):
        raw = str(id_).encode()
        parts += [packed[i, :2].tobytes(), struct.pack(">i", len(raw)), raw, packed[i, 2:].tobytes()]
    parts.append(COPY_TRAILER)
    return b"".join(parts)


def _vector_texts(rows: np.ndarray) -> list[str]:
    # pgvector's text form; repr of a float32 value as a double reads back to the same float32
    return ["[" + ",".join(map(repr, row)) + "]" for row in rows.astype(np.float64).tolist()]


def _check_name(name: str) -> None:
    if not name or len(name.encode()) > MAX_NAME_BYTES:
        size = len(name.encode())
        raise InputError(f"a PostgreSQL table name takes 1 to {MAX_NAME_BYTES} bytes; {name!r} has {size}")


def _index_name(table: str, d: int) -> str:
    # derived from a hash: the table's name plus a suffix could pass PostgreSQL's 63 bytes and be truncated
    return f"mrl_{hashlib.sha1(table.encode()).hexdigest()[:12]}_{field_name(d)}_hnsw"


# -- the embedded server: one per folder and process, stopped when its last connection closes --------------------
_servers: dict[Path, list] = {}  # folder -> [pgserver's handle, connections open]
_servers_lock = threading.Lock()


def _start_embedded(folder: Path) -> Path:
    try:
        with warnings.catch_warnings():  # platformdirs warns on import where XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("postgres:DIR runs an embedded server: pip install 'matryoshka-mrl[postgres]'") from e
    folder = folder.expanduser().resolve()
    with _servers_lock:
        if folder not in _servers:
            if folder.exists() and any(folder.iterdir()) and not (folder / "PG_VERSION").exists():
                raise InputError(f"{folder} is not an embedded PostgreSQL's data folder: name an empty or new folder")
            folder.parent.mkdir(parents=True, exist_ok=True)
            try:
                _servers[folder] = [pgserver.get_server(folder, cleanup_mode="stop"), 0]
            except Exception as e:  # initdb / pg_ctl failures come as CalledProcessError, AssertionError, OSError
                raise EngineError(f"cannot start the embedded PostgreSQL in {folder}: {error_line(e)}") from None
        _servers[folder][1] += 1
    return folder


def _embedded_uri(folder: Path) -> str:
    return _servers[folder][0].get_uri()


def _stop_embedded(folder: Path) -> None:
    with _servers_lock:
        held = _servers.get(folder)
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _servers[folder]
            held[0].cleanup()  # pgserver stops the server when no other process holds it
