"""HTTP service over an index store (FastAPI).

Endpoints: ``POST /search`` (vectors, or raw images / texts / values when a model is loaded; ``return_text`` for
the hits' kept texts), ``POST /embed``, ``POST /vectors`` (vectors, or texts the text model embeds; texts are kept
beside the ids), ``DELETE /vectors/{id}`` and ``POST /vectors/delete`` (writes need the ``X-API-Key`` header),
``GET /health``, the search page at ``GET /``, and the OpenAPI docs at ``/docs``.
Every acknowledged write is in the store's write-ahead log (fsynced) before the response, so a crash loses
nothing that was acknowledged; searches run in parallel with each other and with writes. Ids are integers in
[0, 2^63 - 1] or strings of at most 512 bytes. Run it with ``mrl serve --index DIR``.
"""

from __future__ import annotations

import inspect
import os
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from matryoshka.errors import InputError
from matryoshka.index import IndexStore
from matryoshka.service.errors import install_error_handlers
from matryoshka.service.model import served_dim
from matryoshka.service.page import page_router
from matryoshka.service.routes import API_KEY_ENV, Service, search_router, vectors_router
from matryoshka.service.schemas import AddRequest, DeleteRequest, EmbedRequest, SearchRequest

__all__ = ["API_KEY_ENV", "AddRequest", "DeleteRequest", "EmbedRequest", "SearchRequest", "create_app"]


class BodySizeLimit:
    """Refuse bodies whose Content-Length is over ``max_bytes`` with 413 before reading them (plain ASGI: a
    ``BaseHTTPMiddleware`` would cost more per request than a search)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length", b"")
            if length.isdigit() and int(length) > self.max_bytes:
                response = JSONResponse(status_code=413, content={"detail": f"body larger than {self.max_bytes} bytes"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    index_dir: str | Path,
    api_key: str | None = None,
    model_path: str | Path | None = None,
    max_queries: int = 1024,
    max_k: int = 1000,
    max_body_bytes: int = 64 << 20,
    compact_threshold: int | None = None,
    telemetry: bool = False,
    threads: int | None = None,
    full_vectors: str | None = None,
    model_prefix: bool = False,
) -> FastAPI:
    """Build the app; ``api_key`` defaults to $MRL_API_KEY (no key: writes are refused and the folder is opened
    read-only, so several such servers may share it). ``compact_threshold`` as for :meth:`IndexStore.open`;
    ``threads``: requests handled at once (default: the number of CPU cores, at least 2); ``full_vectors``: "ram",
    "mmap" or "disk" (default: the tier the index was built for); ``telemetry``: FastAPI's OpenTelemetry hooks.
    A model must give the index's dim, or be a wider Matryoshka run whose recorded nesting holds the index's dim: its
    embeddings are then cut to that prefix (re-normalised) for /search, /embed and /vectors. ``model_prefix=True``
    allows any narrower prefix."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    run = None
    if model_path is not None:
        from matryoshka.runs import TrainedRun

        run = TrainedRun.load(model_path)
    store = IndexStore.open(
        Path(index_dir), writable=key is not None, compact_threshold=compact_threshold, full_vectors=full_vectors
    )
    if run is not None:
        try:
            served_dim(run, store.dim, model_prefix, model_path, index_dir)
        except InputError:
            store.close()
            raise

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Requests run in a few threads: searches overlap where FAISS and numpy release the GIL, and fewer
        # threads than the default 40 keep the GIL hand-offs, and so the tail latency, down.
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads or max(2, os.cpu_count() or 2)
        yield
        store.close()

    options = {}
    if "telemetry" in inspect.signature(FastAPI).parameters:
        # FastAPI's native OpenTelemetry hooks read the environment on every request: off unless asked for.
        options["telemetry"] = {"tracing": telemetry, "metrics": telemetry}
    app = FastAPI(title="matryoshka index", description=__doc__, lifespan=lifespan, **options)
    app.state.store = store
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    service = Service(store, run, key, max_queries, max_k)
    app.include_router(search_router(service))
    app.include_router(vectors_router(service))
    app.include_router(page_router(store, run))
    return app
