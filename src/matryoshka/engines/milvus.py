"""Milvus: Milvus Lite (the engine embedded, one ``.db`` file) or a Milvus server / cluster, through pymilvus.

Layout: one ``FLOAT_VECTOR`` field per prefix size (``dim16``, ``dim512``, ...; inner product over unit-length
prefixes, so scores are cosines as in the library), the primary key ``id`` (``INT64`` or ``VARCHAR``, the index's
own ids) and the export's :class:`~matryoshka.engines.base.CollectionInfo` as JSON in the collection description.

A plan runs as an ANN search over its first (smallest) prefix field, then each re-rank stage is a search on the
larger field filtered to the previous stage's survivors (``rerank="filter"``, the default), or a fetch of their
vectors re-scored here (``rerank="fetch"``). ``mrl bench engines`` measures both; on Milvus Lite the filtered search
is the faster (a fetch of a few hundred 512-d rows costs more than the search).

The shortlist fields get an HNSW index on a server and an exact FLAT one on Milvus Lite (which offers only FLAT and
IVF_FLAT, and serves collections small enough for a scan); re-rank fields get FLAT (no graph to build).
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings

import numpy as np

from matryoshka.engines.base import (
    CollectionInfo,
    Engine,
    EngineError,
    error_line,
    field_name,
    ranked_arrays,
    rerank_fetched,
)
from matryoshka.engines.uri import EngineURI
from matryoshka.errors import InputError
from matryoshka.normalize import normalize

MAX_ID_BYTES = 512  # the index's own limit on string ids
MAX_TOPK = 16_384  # Milvus's limit on a search's results
FETCH_CHUNK = 200  # a get of many ids at once slows down faster than linearly on Milvus Lite
HNSW = {"M": 16, "efConstruction": 200}


def _pymilvus():
    try:
        with warnings.catch_warnings():  # milvus-lite 2.5 imports the deprecated pkg_resources
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            import pymilvus

            with contextlib.suppress(ImportError):  # absent: servers only
                import milvus_lite  # noqa: F401 - pymilvus imports it on opening a .db file
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("Milvus needs pymilvus (and milvus-lite): pip install 'matryoshka-mrl[milvus]'") from e
    return pymilvus


class MilvusEngine(Engine):
    """A connection to Milvus Lite (``milvus:FILE.db``) or a server (``milvus+http://HOST:19530``)."""

    name = "Milvus"
    insert_workers = 2  # packing the next batch overlaps the engine's write of this one (about 1.5x on 2 cores)

    def __init__(self, uri: EngineURI, rerank: str = "filter", timeout: float = 10.0) -> None:
        if rerank not in ("filter", "fetch"):
            raise InputError(f"rerank must be 'filter' or 'fetch', got {rerank!r}")
        pymilvus = _pymilvus()
        self.uri, self.rerank, self.lite = uri, rerank, not uri.remote
        quiet = logging.getLogger("pymilvus")
        if quiet.level == logging.WARNING:  # pymilvus's own default: its error log repeats each error raised here
            quiet.setLevel(logging.CRITICAL)
        try:
            self.client = pymilvus.MilvusClient(uri=uri.location, timeout=timeout)
        except Exception as e:  # pymilvus raises MilvusException or grpc errors alike
            where = f"Milvus at {uri.host_port}" if uri.remote else f"Milvus Lite on {uri.location}"
            raise EngineError(f"cannot reach {where}: {error_line(e)}") from None
        self._loaded: set[str] = set()
        self.error_types = (pymilvus.exceptions.MilvusException,)

    # -- collections -------------------------------------------------------------------------------------------
    def collection(self, name: str) -> CollectionInfo | None:
        if not self.client.has_collection(name):
            return None
        described = self.client.describe_collection(name)
        try:
            info = CollectionInfo.from_metadata(json.loads(described.get("description") or "{}"))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            info = None
        if info is None:
            raise EngineError(f"collection {name!r} on {self.uri} was not exported by matryoshka (no metadata)")
        return info

    def create(self, name: str, info: CollectionInfo, ann_dims: list[int]) -> None:
        pymilvus = _pymilvus()
        dtype = pymilvus.DataType
        schema = pymilvus.MilvusClient.create_schema(auto_id=False, description=json.dumps(info.to_metadata()))
        if info.id_kind == "str":
            schema.add_field("id", dtype.VARCHAR, is_primary=True, max_length=MAX_ID_BYTES)
        else:
            schema.add_field("id", dtype.INT64, is_primary=True)
        params = self.client.prepare_index_params()
        for d in info.dims:
            schema.add_field(field_name(d), dtype.FLOAT_VECTOR, dim=d)
            if d in ann_dims and not self.lite:
                params.add_index(field_name(d), index_type="HNSW", metric_type="IP", params=HNSW)
            else:
                params.add_index(field_name(d), index_type="FLAT", metric_type="IP")
        # Strong consistency: a search sees every insert acknowledged before it, like the library's index.
        self.client.create_collection(name, schema=schema, index_params=params, consistency_level="Strong")
        self._loaded.add(name)

    def count(self, name: str) -> int:
        return int(self.client.get_collection_stats(name)["row_count"])

    def existing(self, name: str, ids: list) -> set:
        kind = "str" if isinstance(ids[0], str) else "int"
        return {row["id"] for row in self.client.query(name, filter=id_in(ids, kind), output_fields=["id"])}

    def insert(self, name: str, ids: list, prefixes: dict[int, np.ndarray]) -> None:
        fields = {field_name(d): v for d, v in prefixes.items()}
        rows = [{"id": id_, **{f: v[i] for f, v in fields.items()}} for i, id_ in enumerate(ids)]
        self.client.insert(name, rows)

    def finish(self, name: str) -> None:
        self.client.flush(name)

    def drop(self, name: str) -> None:
        self.client.drop_collection(name)
        self._loaded.discard(name)
        # pymilvus 2.5 keeps the dropped collection's schema in its client-side cache and checks inserts into a new
        # collection of the same name against it ("unexpected field dim16"): forget it.
        handler = getattr(self.client, "_get_connection", lambda: None)()
        getattr(handler, "schema_cache", {}).pop(name, None)

    def close(self) -> None:
        self.client.close()

    # -- search ------------------------------------------------------------------------------------------------
    def _search(self, name: str, queries: np.ndarray, d: int, limit: int, id_filter: str = "") -> list[list[dict]]:
        params = {"metric_type": "IP", "params": {"ef": max(limit, 64)} if not self.lite else {}}
        return self.client.search(
            name, data=list(normalize(queries[:, :d])), anns_field=field_name(d), limit=limit,
            filter=id_filter, search_params=params,
        )  # fmt: skip

    def run_stages(self, name, info, queries, stages):
        if stages[0][1] > MAX_TOPK:
            raise InputError(f"Milvus returns at most {MAX_TOPK} candidates per search; the plan asks {stages[0][1]}")
        if name not in self._loaded:
            self.client.load_collection(name)  # a no-op when loaded; a collection is searchable only once loaded
            self._loaded.add(name)
        d0, k0 = stages[0]
        hits = self._search(name, info.query_prefix(queries, d0), d0, k0)
        if len(stages) == 1:
            return _as_arrays(hits, info.id_kind)
        rerank = self._rerank_by_filter if self.rerank == "filter" else self._rerank_by_fetch
        return rerank(name, info, queries, [[h["id"] for h in row] for row in hits], stages[1:])

    def _rerank_by_filter(self, name, info, queries, shortlists, stages):
        out: list[list[dict]] = []
        for q, ids in zip(queries, shortlists, strict=True):  # a filter holds one query's candidates
            row = [{"id": i} for i in ids]
            for d, keep in stages:
                row = self._search(name, q[None], d, keep, id_in([h["id"] for h in row], info.id_kind))[0]
            out.append(row)
        return _as_arrays(out, info.id_kind)

    def _rerank_by_fetch(self, name, info, queries, shortlists, stages):
        widest = max(d for d, _ in stages)
        unique = list(dict.fromkeys(i for ids in shortlists for i in ids))
        where = {id_: p for p, id_ in enumerate(unique)}
        vectors = np.zeros((len(unique), widest), np.float32)
        field = field_name(widest)
        for start in range(0, len(unique), FETCH_CHUNK):
            chunk = id_in(unique[start : start + FETCH_CHUNK], info.id_kind)  # not get(): it quotes ids badly
            for row in self.client.query(name, filter=chunk, output_fields=[field]):
                vectors[where[row["id"]]] = row[field]
        width = max(len(ids) for ids in shortlists)
        rows = np.full((len(shortlists), width), -1, np.int64)
        for qi, ids in enumerate(shortlists):
            rows[qi, : len(ids)] = [where[i] for i in ids]
        scores, rows = rerank_fetched(queries, rows, vectors, stages)
        ids = np.asarray(unique, dtype=object if info.id_kind == "str" else np.int64)[np.maximum(rows, 0)]
        return scores, ids


def id_in(ids: list, id_kind: str) -> str:
    """A Milvus filter expression keeping the rows whose id is in ``ids``: strings quoted as JSON (quotes and
    backslashes escaped), which Milvus's expression grammar reads alike; non-ASCII kept as is (it reads no
    JSON unicode escapes)."""
    values = [str(i) for i in ids] if id_kind == "str" else [int(i) for i in ids]
    return "id in " + json.dumps(values, ensure_ascii=False)


def _as_arrays(hits: list[list[dict]], id_kind: str) -> tuple[np.ndarray, np.ndarray]:
    scores = [[h["distance"] for h in row] for row in hits]
    return ranked_arrays(scores, [[h["id"] for h in row] for row in hits], id_kind)
