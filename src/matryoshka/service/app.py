"""HTTP service over a persisted Matryoshka index (FastAPI).

Endpoints: ``POST /search`` (vectors, or raw inputs when a model is loaded), ``POST /vectors`` and
``DELETE /vectors/{id}`` (need the ``X-API-Key`` header), ``GET /health``, and the OpenAPI docs at ``/docs``.
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
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from matryoshka.index import IndexInputError, MatryoshkaIndex, parse_plan

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
API_KEY_ENV = "MRL_API_KEY"


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vectors: list[list[FiniteFloat]] | None = Field(None, description="query embeddings, each of the index's dim")
    inputs: list[list[FiniteFloat]] | None = Field(None, description="raw inputs (flattened), when a model is loaded")
    k: int = Field(10, ge=1, description="results per query")
    plan: str = Field("full", description="full | adaptive:DS:K:DR | funnel:D1xK1,D2xK2,...")


class SearchResponse(BaseModel):
    ids: list[list[int]]
    scores: list[list[float]]


class AddRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vectors: list[list[FiniteFloat]] = Field(..., min_length=1)
    ids: list[int] | None = None


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
    model = None
    if model_path is not None:
        from matryoshka.train import load_model

        model, info = load_model(model_path)
        input_shape = tuple(info["input_shape"])
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
            "model": model is not None,
        }

    @app.post("/search", response_model=SearchResponse)
    def search(req: SearchRequest) -> SearchResponse:
        if (req.vectors is None) == (req.inputs is None):
            raise HTTPException(422, "give exactly one of 'vectors' or 'inputs'")
        if req.k > max_k:
            raise HTTPException(422, f"k must be at most {max_k}")
        try:
            plan = parse_plan(req.plan)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        if req.inputs is not None:
            if model is None:
                raise HTTPException(422, "this server has no model: send 'vectors', or start it with --model")
            import torch

            x = as_matrix(req.inputs, int(np.prod(input_shape)), "inputs")
            with torch.no_grad():
                queries = model.encode(torch.from_numpy(x).view(-1, *input_shape)).numpy()
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
    def delete(vector_id: int) -> dict:
        with lock:
            try:
                index.remove([vector_id])
            except IndexInputError as e:
                raise HTTPException(404, str(e)) from None
            index.save(index_dir)
        return {"deleted": vector_id, "ntotal": index.ntotal}

    return app
