"""HTTP service over an index store (FastAPI).

Endpoints: ``POST /search`` (vectors, or raw images / texts / values when a model is loaded), ``POST /embed``,
``POST /vectors``, ``DELETE /vectors/{id}`` and ``POST /vectors/delete`` (writes need the ``X-API-Key``
header), ``GET /health``, and the OpenAPI docs at ``/docs``.
Every acknowledged write is in the store's write-ahead log (fsynced) before the response, so a crash loses
nothing that was acknowledged; searches run in parallel with each other and with writes. Ids are integers in
[0, 2^63 - 1] or strings of at most 512 bytes. Run it with ``mrl serve --index DIR``.
"""

from __future__ import annotations

import hmac
import inspect
import json
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import anyio.to_thread
import numpy as np
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from matryoshka.errors import InputError
from matryoshka.index import IndexInputError, IndexStore, parse_plan
from matryoshka.index.errors import CompactionError
from matryoshka.index.ids import MAX_ID_BYTES, check_ids, parse_id

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _one_id(value: object) -> int | str:
    """The store's id checks on the raw JSON value (true and 5.0 are not ids), so a bad id gets one clear message."""
    check_ids([value], None)
    return value


VectorId = Annotated[
    int | str,
    BeforeValidator(_one_id),
    Field(description="an integer in [0, 2^63 - 1] or a string of at most 512 bytes"),
]
API_KEY_ENV = "MRL_API_KEY"


class RawInputs(BaseModel):
    """Raw inputs for a server started with a model; the run's stored preprocessing is applied to them."""

    model_config = ConfigDict(extra="forbid")
    images: list[str] | None = Field(None, description="base64-encoded PNG/JPEG/BMP/WebP files (image models)")
    texts: list[str] | None = Field(None, description="texts (text models)")
    inputs: list[list[FiniteFloat]] | None = Field(
        None, description="raw values, flattened: 0-255 pixels (C*H*W) or feature columns (feature models)"
    )

    def given(self) -> list[str]:
        return [name for name in ("images", "texts", "inputs") if getattr(self, name) is not None]


class SearchRequest(RawInputs):
    vectors: list[list[FiniteFloat]] | None = Field(None, description="query embeddings, each of the index's dim")
    k: int = Field(10, ge=1, description="results per query")
    plan: str | None = Field(
        None, description="full | adaptive:DS:K:DR | funnel:D1xK1,D2xK2,... (default: the index's tuned plan)"
    )
    exact: bool = Field(False, description="allow a first stage at a dim without a shortlist structure (full scan)")


class EmbedRequest(RawInputs):
    dim: int | None = Field(None, ge=1, description="prefix length (default: the model's full dim)")


class EmbedResponse(BaseModel):
    embeddings: list[list[float]]


class SearchResponse(BaseModel):
    ids: list[list[int | str]]
    scores: list[list[float]]


class AddRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vectors: list[list[FiniteFloat]] = Field(..., min_length=1)
    ids: list[VectorId] | None = None


class AddResponse(BaseModel):
    ids: list[int | str]
    ntotal: int


class DeleteResponse(BaseModel):
    deleted: int | str = Field(
        ..., description="the id deleted (DELETE /vectors/{id}) or how many (POST /vectors/delete)"
    )
    ntotal: int


class DeleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[VectorId] = Field(..., min_length=1)


def json_response(content: dict) -> Response:
    """A JSON response written directly: for a sync endpoint FastAPI would validate a returned model or dict in a
    second trip through the thread pool, which under load doubles the queueing."""
    return Response(json.dumps(content, separators=(",", ":")), media_type="application/json")


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


def _check_model_dim(
    model_dim: int, index_dim: int, model_prefix: bool, model_path: object, index_dir: object, store: IndexStore
) -> None:
    """A model and an index of different dims answer nothing useful: refuse at start-up, in one line."""
    if model_dim == index_dim or (model_prefix and model_dim > index_dim):
        return
    store.close()
    hint = (
        f"; pass --model-prefix to search with its first {index_dim} dims (a Matryoshka prefix)"
        if model_dim > index_dim
        else "; build the index from this model's embeddings"
    )
    raise InputError(f"the model {model_path} gives {model_dim} dims but the index {index_dir} holds {index_dim}{hint}")


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
    A model must give the index's dim; ``model_prefix=True`` lets a wider Matryoshka model serve a smaller index
    with the first dims of its embeddings (re-normalised)."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    run = None
    if model_path is not None:
        from matryoshka.runs import TrainedRun

        run = TrainedRun.load(model_path)
    store = IndexStore.open(
        Path(index_dir), writable=key is not None, compact_threshold=compact_threshold, full_vectors=full_vectors
    )
    if run is not None:
        _check_model_dim(run.dim, store.dim, model_prefix, model_path, index_dir, store)

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

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Leave the offending input out: it may be NaN or huge, and NaN cannot be written as JSON.
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors})

    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)

    async def require_key(x_api_key: Annotated[str | None, Header()] = None) -> None:  # async: no thread hop
        if key is None:
            raise HTTPException(403, f"writes are disabled: start the server with ${API_KEY_ENV} set")
        if x_api_key is None or not hmac.compare_digest(x_api_key, key):
            raise HTTPException(401, "missing or wrong X-API-Key header")

    def as_matrix(rows: list[list[float]], width: int, what: str) -> np.ndarray:
        if not rows:
            raise HTTPException(422, f"{what} must not be empty")
        if len(rows) > max_queries:
            raise HTTPException(413, f"at most {max_queries} {what} per request, got {len(rows)}")
        if any(len(r) != width for r in rows):
            raise HTTPException(422, f"each of the {what} must have {width} numbers")
        return np.asarray(rows, dtype=np.float32)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", **store.info(), "model": run is not None, "writable": store.writable}

    def embed_raw(req: RawInputs, dim: int | None = None) -> np.ndarray:
        """Unit embeddings of a request's raw inputs, with the run's stored preprocessing."""
        import base64
        import binascii

        from matryoshka.errors import MatryoshkaError

        if run is None:
            raise HTTPException(422, "this server has no model: send 'vectors', or start it with --model")
        rows = req.images or req.texts or req.inputs or []
        if not rows:
            raise HTTPException(422, "the inputs must not be empty")
        if len(rows) > max_queries:
            raise HTTPException(413, f"at most {max_queries} inputs per request, got {len(rows)}")
        try:
            if req.texts is not None:
                return run.encode_texts(req.texts, dim)
            if req.images is not None:
                try:
                    files = [base64.b64decode(img, validate=True) for img in req.images]
                except (binascii.Error, ValueError):
                    raise HTTPException(422, "images must be base64-encoded image files") from None
                return run.encode_images(files, dim)
            return run.encode_raw(np.asarray(req.inputs, dtype=np.float32), dim)
        except MatryoshkaError as e:
            raise HTTPException(422, str(e)) from None

    @app.post("/embed", response_model=EmbedResponse)
    def embed(req: EmbedRequest) -> EmbedResponse:
        if len(req.given()) != 1:
            raise HTTPException(422, "give exactly one of 'images', 'texts' or 'inputs'")
        return EmbedResponse(embeddings=embed_raw(req, req.dim).tolist())

    @app.post("/search", response_model=SearchResponse)
    def search(req: SearchRequest) -> Response:
        if len(req.given()) + (req.vectors is not None) != 1:
            raise HTTPException(422, "give exactly one of 'vectors', 'images', 'texts' or 'inputs'")
        if req.k > max_k:
            raise HTTPException(422, f"k must be at most {max_k}")
        try:
            plan = parse_plan(req.plan) if req.plan is not None else None
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        if req.vectors is None:
            queries = embed_raw(req)
            if queries.shape[1] > store.dim:  # allowed at start-up by model_prefix: a Matryoshka prefix
                queries = queries[:, : store.dim]
                queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
            queries = np.ascontiguousarray(queries, dtype=np.float32)
        else:
            queries = as_matrix(req.vectors, store.dim, "vectors")
        try:
            scores, ids = store.search(queries, req.k, plan, exact=req.exact)
        except IndexInputError as e:
            raise HTTPException(422, str(e)) from None
        return json_response({"ids": ids.tolist(), "scores": scores.tolist()})

    @app.post("/vectors", dependencies=[Depends(require_key)], response_model=AddResponse)
    def add(req: AddRequest) -> Response:
        x = as_matrix(req.vectors, store.dim, "vectors")
        try:
            ids = store.add(x, req.ids)  # in the fsynced log before the 200
        except IndexInputError as e:
            raise HTTPException(409 if "already" in str(e) else 422, str(e)) from None
        except CompactionError as e:
            raise HTTPException(503, str(e)) from None
        return json_response({"ids": ids.tolist(), "ntotal": store.ntotal})

    def delete_ids(ids: list) -> dict:
        try:
            count = store.delete(ids)
        except IndexInputError as e:
            raise HTTPException(404 if "not in the index" in str(e) else 422, str(e)) from None
        except CompactionError as e:
            raise HTTPException(503, str(e)) from None
        return {"deleted": count, "ntotal": store.ntotal}

    @app.delete("/vectors/{vector_id:path}", dependencies=[Depends(require_key)], response_model=DeleteResponse)
    def delete(vector_id: Annotated[str, PathParam(min_length=1, max_length=3 * MAX_ID_BYTES)]) -> Response:
        """Delete one vector; the path is read as an integer id when the index has integer ids."""
        try:
            id_ = parse_id(vector_id, store.id_kind)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        return json_response({**delete_ids([id_]), "deleted": id_})

    @app.post("/vectors/delete", dependencies=[Depends(require_key)], response_model=DeleteResponse)
    def delete_many(req: DeleteRequest) -> Response:
        """Delete vectors by id (all or none)."""
        return json_response(delete_ids(req.ids))

    return app
