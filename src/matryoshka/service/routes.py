"""The service's routes, in two routers over one :class:`Service` (the store, the optional run, the limits).

``search_router``: ``GET /health``, ``POST /embed``, ``POST /search``; ``vectors_router`` (writes, behind the API
key): ``POST /vectors``, ``DELETE /vectors/{id}``, ``POST /vectors/delete``. Each can be mounted alone, e.g. in a
test or in an app of your own. Errors are the library's own types, mapped to status codes in ``errors.py``.
``POST /embed`` and ``POST /search`` say what they measured in a ``Server-Timing`` header: ``embed`` (raw inputs)
and ``search``, in milliseconds.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Header, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import Response

from matryoshka.index import IndexStore, parse_plan
from matryoshka.index.ids import MAX_ID_BYTES, parse_id
from matryoshka.service.model import check_texts, max_text_chars
from matryoshka.service.schemas import (
    AddRequest,
    AddResponse,
    DeleteRequest,
    DeleteResponse,
    EmbedRequest,
    EmbedResponse,
    RawInputs,
    SearchRequest,
    SearchResponse,
)

API_KEY_ENV = "MRL_API_KEY"


def json_response(content: dict, headers: dict[str, str] | None = None) -> Response:
    """A JSON response written directly: for a sync endpoint FastAPI would validate a returned model or dict in a
    second trip through the thread pool, which under load doubles the queueing."""
    return Response(json.dumps(content, separators=(",", ":")), media_type="application/json", headers=headers)


@dataclass
class Service:
    """What the routes share: the store, the run that embeds raw inputs (or None), the write key and the limits."""

    store: IndexStore
    run: Any = None
    key: str | None = None
    max_queries: int = 1024
    max_k: int = 1000

    async def require_key(self, x_api_key: Annotated[str | None, Header()] = None) -> None:  # async: no thread hop
        if self.key is None:
            raise HTTPException(403, f"writes are disabled: start the server with ${API_KEY_ENV} set")
        if x_api_key is None or not hmac.compare_digest(x_api_key, self.key):
            raise HTTPException(401, "missing or wrong X-API-Key header")

    def as_matrix(self, rows: list[list[float]], what: str = "vectors") -> np.ndarray:
        width = self.store.dim
        if not rows:
            raise HTTPException(422, f"{what} must not be empty")
        if len(rows) > self.max_queries:
            raise HTTPException(413, f"at most {self.max_queries} {what} per request, got {len(rows)}")
        if any(len(r) != width for r in rows):
            raise HTTPException(422, f"each of the {what} must have {width} numbers")
        return np.asarray(rows, dtype=np.float32)

    def embed_raw(self, req: RawInputs, dim: int | None = None) -> np.ndarray:
        """Unit embeddings of a request's raw inputs, with the run's stored preprocessing, at ``dim`` (default: the
        index's dim, a prefix of a wider Matryoshka model)."""
        if self.run is None:
            raise HTTPException(422, "this server has no model: send 'vectors', or start it with --model RUN")
        rows = req.images or req.texts or req.inputs or []
        if not rows:
            raise HTTPException(422, "the inputs must not be empty")
        if len(rows) > self.max_queries:
            raise HTTPException(413, f"at most {self.max_queries} inputs per request, got {len(rows)}")
        dim = self.run.check_dim(dim or self.store.dim)  # before any work on the inputs
        if req.texts is not None:
            if self.run.kind == "text":  # before the tokenizer: it would spend seconds on what the model never reads
                check_texts(req.texts, max_text_chars(self.run))
            return self.run.encode_texts(req.texts, dim)
        if req.images is not None:
            try:
                files = [base64.b64decode(img, validate=True) for img in req.images]
            except (binascii.Error, ValueError):
                raise HTTPException(422, "images must be base64-encoded image files") from None
            return self.run.encode_images(files, dim)
        return self.run.encode_raw(np.asarray(req.inputs, dtype=np.float32), dim)

    def queries(self, req: SearchRequest) -> np.ndarray:
        """The request's query embeddings: its vectors, or its raw inputs embedded at the index's dim."""
        if req.vectors is not None:
            return self.as_matrix(req.vectors)
        return np.ascontiguousarray(self.embed_raw(req), dtype=np.float32)

    def new_rows(self, req: AddRequest) -> np.ndarray:
        """The rows an add writes: its vectors, or its texts embedded with the run at the index's dim."""
        if req.vectors is None and req.texts is None:
            raise HTTPException(422, "give 'vectors' (and 'texts' to keep beside them), or 'texts' to embed")
        if req.vectors is not None:
            return self.as_matrix(req.vectors)
        return np.ascontiguousarray(self.embed_raw(RawInputs(texts=req.texts)), dtype=np.float32)


def search_router(service: Service) -> APIRouter:
    router = APIRouter()
    store = service.store

    @router.get("/health")
    def health() -> dict:
        return {"status": "ok", **store.info(), "model": service.run is not None, "writable": store.writable}

    @router.post("/embed", response_model=EmbedResponse)
    def embed(req: EmbedRequest) -> Response:
        if len(req.given()) != 1:
            raise HTTPException(422, "give exactly one of 'images', 'texts' or 'inputs'")
        start = time.perf_counter()
        z = service.embed_raw(req, req.dim)
        timing = {"Server-Timing": f"embed;dur={1000 * (time.perf_counter() - start):.3f}"}
        return json_response({"embeddings": z.tolist(), "dim": z.shape[1]}, timing)

    @router.post("/search", response_model=SearchResponse)
    def search(req: SearchRequest) -> Response:
        if len(req.given()) + (req.vectors is not None) != 1:
            raise HTTPException(422, "give exactly one of 'vectors', 'images', 'texts' or 'inputs'")
        if req.k > service.max_k:
            raise HTTPException(422, f"k must be at most {service.max_k}")
        plan = parse_plan(req.plan) if req.plan is not None else None
        start = time.perf_counter()
        queries = service.queries(req)
        embedded = time.perf_counter()
        found = store.search(queries, req.k, plan, exact=req.exact, return_texts=req.return_text)
        done = time.perf_counter()
        timing = f"search;dur={1000 * (done - embedded):.3f}"
        if req.vectors is None:
            timing = f"embed;dur={1000 * (embedded - start):.3f}, {timing}"
        body = {"ids": found[1].tolist(), "scores": found[0].tolist()}
        if req.return_text:
            body["texts"] = found[2].tolist()
        return json_response(body, {"Server-Timing": timing})

    return router


def vectors_router(service: Service) -> APIRouter:
    router = APIRouter(dependencies=[Depends(service.require_key)])
    store = service.store

    @router.post("/vectors", response_model=AddResponse)
    def add(req: AddRequest) -> Response:
        ids = store.add(service.new_rows(req), req.ids, req.texts)  # one write, in the fsynced log before the 200
        return json_response({"ids": ids.tolist(), "ntotal": store.ntotal})

    @router.delete("/vectors/{vector_id:path}", response_model=DeleteResponse)
    def delete(vector_id: Annotated[str, PathParam(min_length=1, max_length=3 * MAX_ID_BYTES)]) -> Response:
        """Delete one vector; the path is read as an integer id when the index has integer ids."""
        id_ = parse_id(vector_id, store.id_kind)
        store.delete([id_])
        return json_response({"deleted": id_, "ntotal": store.ntotal})

    @router.post("/vectors/delete", response_model=DeleteResponse)
    def delete_many(req: DeleteRequest) -> Response:
        """Delete vectors by id (all or none)."""
        return json_response({"deleted": store.delete(req.ids), "ntotal": store.ntotal})

    return router
