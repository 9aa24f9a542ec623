"""Qdrant: its local mode (a folder, or ``:memory:``) or a Qdrant server / cluster, through qdrant-client.

Layout: one named cosine vector per prefix size (``dim16``, ``dim512``, ...), the index's own id in each point's
payload (Qdrant takes unsigned integers or UUIDs as point ids: a string id becomes a UUID derived from it), and the
export's :class:`~matryoshka.engines.base.CollectionInfo` in the collection's metadata.

A plan runs natively in the Query API: nested ``Prefetch`` stages, the innermost an ANN search over the smallest
prefix, each outer one re-scoring the candidates of the stage inside it with a larger prefix; a batch of queries
goes in one ``query_batch_points`` call. Vectors that only re-rank get no HNSW graph (``m=0``).
"""

from __future__ import annotations

import uuid

import numpy as np

from matryoshka.engines.base import CollectionInfo, Engine, EngineError, error_line, field_name, ranked_arrays
from matryoshka.engines.uri import EngineURI

QUERY_BATCH = 256  # queries per query_batch_points call


def _client_module():
    try:
        import qdrant_client
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("Qdrant needs qdrant-client: pip install 'matryoshka-mrl[qdrant]'") from e
    return qdrant_client


def point_id(id_: int | str) -> int | str:
    """The Qdrant point id of an index id: the integer itself, or a UUID derived from a string id."""
    if isinstance(id_, str):
        return str(uuid.uuid5(uuid.NAMESPACE_URL, id_))
    return int(id_)


class QdrantEngine(Engine):
    """A connection to Qdrant's local mode (``qdrant:PATH``) or a server (``qdrant+http://HOST:6333``)."""

    name = "Qdrant"

    def __init__(self, uri: EngineURI, timeout: int = 10) -> None:
        qdrant_client = _client_module()
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        self.uri, self.models = uri, qdrant_client.models
        # The local mode reports a bad request as a ValueError (e.g. a collection name it cannot store).
        self.error_types = (UnexpectedResponse, ResponseHandlingException) + (() if uri.remote else (ValueError,))
        try:
            if uri.remote:
                self.client = qdrant_client.QdrantClient(url=uri.location, timeout=timeout, check_compatibility=False)
                self.client.get_collections()  # the client connects lazily: probe now, for a clear error
            elif uri.location == ":memory:":
                self.client = qdrant_client.QdrantClient(":memory:")
            else:
                self.client = qdrant_client.QdrantClient(path=uri.location)
        except Exception as e:  # httpx / grpc / portalocker errors alike
            where = f"Qdrant at {uri.host_port}" if uri.remote else f"Qdrant's local mode on {uri.location}"
            raise EngineError(f"cannot reach {where}: {error_line(e)}") from None

    def collection(self, name: str) -> CollectionInfo | None:
        if not self.client.collection_exists(name):
            return None
        config = self.client.get_collection(name).config
        info = CollectionInfo.from_metadata(getattr(config, "metadata", None))
        if info is None:
            raise EngineError(f"collection {name!r} on {self.uri} was not exported by matryoshka (no metadata)")
        return info

    def create(self, name: str, info: CollectionInfo, ann_dims: list[int]) -> None:
        models = self.models
        no_graph = models.HnswConfigDiff(m=0)  # re-rank only: scored for prefetched candidates, never searched
        vectors = {
            field_name(d): models.VectorParams(
                size=d, distance=models.Distance.COSINE, hnsw_config=None if d in ann_dims else no_graph
            )
            for d in info.dims
        }
        self.client.create_collection(name, vectors_config=vectors, metadata=info.to_metadata())

    def count(self, name: str) -> int:
        return int(self.client.count(name, exact=True).count)

    def existing(self, name: str, ids: list) -> set:
        held = self.client.retrieve(name, ids=[point_id(i) for i in ids], with_payload=["id"], with_vectors=False)
        return {(p.payload or {}).get("id", p.id) for p in held}

    def insert(self, name: str, ids: list, prefixes: dict[int, np.ndarray]) -> None:
        batch = self.models.Batch(
            ids=[point_id(i) for i in ids],
            vectors={field_name(d): v.tolist() for d, v in prefixes.items()},
            payloads=[{"id": i} for i in ids],
        )
        self.client.upsert(name, points=batch, wait=True)

    def drop(self, name: str) -> None:
        if self.client.collection_exists(name):
            self.client.delete_collection(name)

    def close(self) -> None:
        self.client.close()

    def query_request(self, query: np.ndarray, stages: list[tuple[int, int]], first: np.ndarray | None = None):
        """The Query API request that runs checked ``stages`` for one full-dim query vector; ``first``: the first
        stage's query where it is not the prefix of ``query`` (a rotated prefix)."""
        models = self.models
        prefetch = None
        for number, (d, limit) in enumerate(stages[:-1]):
            vector = first if number == 0 and first is not None else query[:d]
            prefetch = models.Prefetch(query=vector.tolist(), using=field_name(d), limit=limit, prefetch=prefetch)
        d, limit = stages[-1]
        vector = first if len(stages) == 1 and first is not None else query[:d]
        return models.QueryRequest(
            query=vector.tolist(), using=field_name(d), limit=limit, prefetch=prefetch, with_payload=["id"]
        )

    def run_stages(self, name, info, queries, stages):
        ids, scores = [], []
        firsts = info.query_prefix(queries, stages[0][0]) if info.basis is not None else [None] * len(queries)
        for start in range(0, len(queries), QUERY_BATCH):
            batch = zip(queries[start : start + QUERY_BATCH], firsts[start : start + QUERY_BATCH], strict=True)
            requests = [self.query_request(q, stages, first) for q, first in batch]
            for response in self.client.query_batch_points(name, requests=requests):
                ids.append([(p.payload or {}).get("id", p.id) for p in response.points])
                scores.append([p.score for p in response.points])
        return ranked_arrays(scores, ids, info.id_kind)
