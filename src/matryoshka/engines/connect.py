"""Open an engine from its address."""

from __future__ import annotations

from matryoshka.engines.base import Engine
from matryoshka.engines.uri import EngineURI, parse_uri


def connect(uri: str | EngineURI, **options) -> Engine:
    """A connection to the engine at ``uri`` (see :mod:`matryoshka.engines.uri` for the forms); ``options`` go to
    the engine (e.g. ``rerank="fetch"`` for Milvus). Use it as a context manager: local engines lock their files.

    Example::

        from matryoshka.engines import connect

        with connect("qdrant::memory:") as engine:
            print(engine.collection("docs"))  # None: no such collection yet
    """
    uri = parse_uri(uri) if isinstance(uri, str) else uri
    if uri.engine == "postgres":
        from matryoshka.engines.postgres import PostgresEngine

        return PostgresEngine(uri, **options)
    if uri.engine == "milvus":
        from matryoshka.engines.milvus import MilvusEngine

        return MilvusEngine(uri, **options)
    from matryoshka.engines.qdrant import QdrantEngine

    return QdrantEngine(uri, **options)
