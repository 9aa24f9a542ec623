"""The search page, ``GET /``: one HTML file (``page.html``, inline CSS and JavaScript, nothing loaded from elsewhere).

A query (a text for a text run, an image file for an image run) is embedded once with ``POST /embed``; each column
then runs ``POST /search`` with that vector and the plan ``funnel:MxK``, one stage at M dims: the top k by the
cosine of the first M dims (exact, or through the index's HNSW structure where it has one at M), with each hit's
kept text and the service's own timing. The page is read-only: it uses only the routes that need no key.

The page is rendered with a little JSON (the index's dims and structures, what the model takes, whether the index
keeps texts and how to attach them); its script and style are allowed by hash in the Content-Security-Policy, so
nothing else can run or load on it, and it writes every id and text as text, never as HTML.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import shlex
from importlib import resources
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from matryoshka.index import IndexStore

CONFIG_MARK = "__PAGE_CONFIG__"
INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.S)  # the page's own code (the config element has a type)


def page_dims(dim: int, shortlist_dims: list[int]) -> list[int]:
    """The prefix sizes the page's columns start with: the smallest shortlist dim (else 16), a power of two near the
    geometric middle between it and the full dim, and the full dim; e.g. 16, 64 and 384.

    Example::

        from matryoshka.service.page import page_dims
        assert page_dims(384, [16, 64]) == [16, 64, 384]
    """
    low = min(shortlist_dims, default=min(16, dim))
    middle = 2 ** round(math.log2(math.sqrt(low * dim)))
    return sorted({low, dim} | ({middle} if low < middle < dim else set()))


def query_kind(run: Any) -> str | None:
    """What the page asks for: "text" (a text run), "image" (a run trained on images), or None (no model, or one
    trained on feature vectors, which a page has no way to type)."""
    if run is None:
        return None
    if run.kind == "text":
        return "text"
    return "image" if run.preprocess is not None and run.preprocess.kind == "image" else None


def texts_hint(store: IndexStore, run: Any) -> list[str]:
    """The commands that give an index texts: rebuild it with one text per row, or add documents with theirs."""
    folder = shlex.quote(str(store.root))
    commands = [f"mrl index build --embeddings EMBEDDINGS.npy --texts TEXTS.txt --out {folder} --force"]
    if run is not None and run.kind == "text":
        commands.append(f"mrl index add --index {folder} --texts TEXTS.txt --model {shlex.quote(str(run.path))}")
    else:
        commands.append(f"mrl index add --index {folder} --embeddings NEW.npy --texts NEW_TEXTS.txt")
    return commands


def page_config(store: IndexStore, run: Any, k: int = 10) -> dict:
    """What the page is rendered with (read from the store as it is now)."""
    index = store.index
    query = query_kind(run)
    why = None
    if query is None:
        why = (
            "this server has no model, so the page cannot embed a query: start it with mrl serve --model RUN "
            "(a text or image run)"
            if run is None
            else "this server's model takes feature vectors, which the page cannot ask for: search with POST /search"
        )
    # a rotated index holds its prefixes only at its shortlist dims (in the corpus basis)
    dims = sorted({*store.shortlist_dims, store.dim}) if index.rotated else page_dims(store.dim, store.shortlist_dims)
    return {
        "dim": store.dim,
        "dims": dims,
        "k": k,
        "ntotal": store.ntotal,
        "structures": {str(d): store.shortlist for d in store.shortlist_dims},
        "rotated": index.rotated,
        "query": query,
        "why_no_query": why,
        "keeps_texts": store.keeps_texts,
        "texts_hint": texts_hint(store, run),
    }


def page_router(store: IndexStore, run: Any) -> APIRouter:
    """``GET /``: the search page over ``store``, embedding queries with ``run`` (or saying why it cannot)."""
    html = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")
    hashes = {"script": [], "style": []}
    for tag, code in INLINE.findall(html):
        hashes[tag].append(f"'sha256-{base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()}'")
    headers = {
        # Only the page's own script, style and API (and the query image's preview, a blob: URL).
        "Content-Security-Policy": (
            f"default-src 'none'; script-src {' '.join(hashes['script'])}; style-src {' '.join(hashes['style'])}; "
            "connect-src 'self'; img-src blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    router = APIRouter()

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        # JSON in a non-executed script element: "<" escaped so that no text can close the element.
        config = json.dumps(page_config(store, run)).replace("<", "\\u003c")
        return HTMLResponse(html.replace(CONFIG_MARK, config), headers=headers)

    return router
