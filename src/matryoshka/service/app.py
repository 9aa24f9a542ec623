"""HTTP service over a persisted Matryoshka index (FastAPI).

Endpoints: ``POST /search`` (vectors, or raw images / texts / values when a model is loaded), ``POST /embed``,
``POST /vectors`` and ``DELETE /vectors/{id}`` (need the ``X-API-Key`` header), ``GET /health``, and the OpenAPI
docs at ``/docs``.
Every acknowledged write is saved (atomically) before the response, so a crash loses nothing that was
acknowledged. Run it with ``mrl serve --index DIR``.
"""

from __future__ import annotations

import hmac
import os
import threading
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from matryoshka.index import IndexInputError, MatryoshkaIndex, parse_plan

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
# -1 is FAISS's "no result" marker; ids are stored as int64.
VectorId = Annotated[int, Field(ge=0, le=2**63 - 1, description="an id in [0, 2^63 - 1]")]
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
    plan: str = Field("full", description="full | adaptive:DS:K:DR | funnel:D1xK1,D2xK2,...")


class EmbedRequest(RawInputs):
    dim: int | None = Field(None, ge=1, description="prefix length (default: the model's full dim)")


class EmbedResponse(BaseModel):
    embeddings: list[list[float]]


class SearchResponse(BaseModel):
    ids: list[list[int]]
    scores: list[list[float]]


class AddRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vectors: list[list[FiniteFloat]] = Field(..., min_length=1)
    ids: list[VectorId] | None = None


def create_app(
    index_dir: str | Path,
    api_key: str | None = None,
    model_path: str | Path | None = None,
    max_queries: int = 1024,
    max_k: int = 1000,
    max_body_bytes: int = 64 << 20,
) -> FastAPI:
    """Build the app; ``api_key`` defaults to $MRL_API_KEY (no key: writes are refused)."""
    index_dir = Path(index_dir)
    index = MatryoshkaIndex.load(index_dir)
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    lock = threading.Lock()  # one writer or reader at a time: FAISS indexes are not safe under mutation
    run = None
    if model_path is not None:
        from matryoshka.runs import TrainedRun

        run = TrainedRun.load(model_path)
    app = FastAPI(title="matryoshka index", description=__doc__)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Leave the offending input out: it may be NaN or huge, and NaN cannot be written as JSON.
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors})

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            return JSONResponse(status_code=413, content={"detail": f"body larger than {max_body_bytes} bytes"})
        return await call_next(request)

    def require_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
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
        return {
            "status": "ok",
            "ntotal": index.ntotal,
            "dim": index.dim,
            "encoding": index.encoding,
            "shortlist_dims": index.shortlist_dims,
            "model": run is not None,
        }

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
    def search(req: SearchRequest) -> SearchResponse:
        if len(req.given()) + (req.vectors is not None) != 1:
            raise HTTPException(422, "give exactly one of 'vectors', 'images', 'texts' or 'inputs'")
        if req.k > max_k:
            raise HTTPException(422, f"k must be at most {max_k}")
        try:
            plan = parse_plan(req.plan)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        if req.vectors is None:
            queries = embed_raw(req)
            if queries.shape[1] < index.dim:
                raise HTTPException(422, f"the model gives {queries.shape[1]} dims, the index holds {index.dim}")
            queries = np.ascontiguousarray(queries[:, : index.dim])  # a Matryoshka prefix serves a smaller index
        else:
            queries = as_matrix(req.vectors, index.dim, "vectors")
        try:
            with lock:
                scores, ids = index.search(queries, req.k, plan)
        except IndexInputError as e:
            raise HTTPException(422, str(e)) from None
        return SearchResponse(ids=ids.tolist(), scores=scores.tolist())

    @app.post("/vectors", dependencies=[Depends(require_key)])
    def add(req: AddRequest) -> dict:
        x = as_matrix(req.vectors, index.dim, "vectors")
        with lock:
            try:
                ids = index.add(x, req.ids)
            except IndexInputError as e:
                raise HTTPException(409 if "already" in str(e) else 422, str(e)) from None
            index.save(index_dir)  # persisted before the 200
        return {"ids": ids.tolist(), "ntotal": index.ntotal}

    @app.delete("/vectors/{vector_id}", dependencies=[Depends(require_key)])
    def delete(vector_id: Annotated[int, PathParam(ge=0, le=2**63 - 1)]) -> dict:
        with lock:
            try:
                index.remove([vector_id])
            except IndexInputError as e:
                raise HTTPException(404, str(e)) from None
            index.save(index_dir)
        return {"deleted": vector_id, "ntotal": index.ntotal}

    return app
