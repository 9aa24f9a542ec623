"""Beyond one machine: move an index and its tuned plan to Qdrant, Milvus or PostgreSQL + pgvector, and run the
same plans there.

* :func:`export_index` writes an index (or an index folder) to a collection, one vector field per prefix size
  (``dim16``, ``dim512``, ... on every engine), batched, resumable, string ids kept;
* :func:`search` runs full, adaptive and funnel plans on the collection and returns what a local search returns;
* :func:`connect` opens an engine from its address: ``qdrant:PATH``, ``qdrant+http://HOST:6333``,
  ``milvus:FILE.db`` (Milvus Lite), ``milvus+http://HOST:19530``, ``postgres:DIR`` (PostgreSQL embedded) or
  ``postgresql://USER@HOST:5432/DB``.

The CLI mirrors it: ``mrl index export`` and ``mrl index search --index URI --collection NAME``.
"""

from matryoshka.engines.base import CollectionInfo, Engine, EngineError, field_name
from matryoshka.engines.connect import connect
from matryoshka.engines.export import ExportReport, export_index
from matryoshka.engines.search import search
from matryoshka.engines.uri import EngineURI, looks_like_uri, parse_uri

__all__ = [
    "CollectionInfo",
    "Engine",
    "EngineError",
    "EngineURI",
    "ExportReport",
    "connect",
    "export_index",
    "field_name",
    "looks_like_uri",
    "parse_uri",
    "search",
]
