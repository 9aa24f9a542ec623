"""Engine addresses: one string names the engine and where it runs.

* ``qdrant:PATH``: Qdrant's local mode, stored in the folder PATH (``qdrant::memory:`` keeps it in RAM);
* ``qdrant+http://HOST:6333`` (or ``+https``): a Qdrant server or cluster;
* ``milvus:FILE.db``: Milvus Lite, the Milvus engine embedded, stored in FILE.db;
* ``milvus+http://HOST:19530`` (or ``+https``): a Milvus server or cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from matryoshka.errors import InputError

ENGINES = ("qdrant", "milvus")
FORMS = "qdrant:PATH, qdrant+http://HOST:6333, milvus:FILE.db or milvus+http://HOST:19530"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$")


@dataclass(frozen=True)
class EngineURI:
    """engine: "qdrant" or "milvus"; location: a local path, or the server's http(s) URL; remote: a server."""

    engine: str
    location: str
    remote: bool

    @property
    def host_port(self) -> str:
        """``HOST:PORT`` of a server (for messages), or the local path."""
        if not self.remote:
            return self.location
        parts = urlsplit(self.location)
        return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"

    def __str__(self) -> str:
        return f"{self.engine}+{self.location}" if self.remote else f"{self.engine}:{self.location}"


def looks_like_uri(text: str) -> bool:
    """True for ``scheme:rest`` strings (a folder path like ``runs/index`` is not one)."""
    match = _SCHEME.match(text)
    return bool(match) and len(match.group(1)) > 1  # a one-letter scheme is a Windows drive


def parse_uri(text: str) -> EngineURI:
    """Parse an engine address (see the module docstring); anything else is an InputError listing the forms.

    Example::

        from matryoshka.engines import parse_uri

        assert parse_uri("milvus:docs.db").engine == "milvus"
        assert parse_uri("qdrant+http://qdrant-0:6333").host_port == "qdrant-0:6333"
    """
    match = _SCHEME.match(text.strip())
    if not match:
        raise InputError(f"{text!r} is not an engine address; use {FORMS}")
    scheme, rest = match.group(1).lower(), match.group(2)
    engine, _, transport = scheme.partition("+")
    if engine not in ENGINES or transport not in ("", "http", "https"):
        raise InputError(f"unknown engine URI scheme {scheme!r} in {text!r}; use {FORMS}")
    if transport:
        url = f"{transport}:{rest}"
        parts = urlsplit(url)
        if not rest.startswith("//") or not parts.hostname:
            raise InputError(f"{text!r} names no host; write it as {engine}+{transport}://HOST:PORT")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise InputError(f"{text!r}: the port is not a number") from None
        return EngineURI(engine, url, remote=True)
    if not rest:
        raise InputError(f"{text!r} names no path; write it as {engine}:PATH")
    if engine == "milvus" and not rest.endswith(".db"):  # pymilvus reads any other path as a server's address
        raise InputError(f"{text!r}: a Milvus Lite file must end in .db")
    return EngineURI(engine, rest, remote=False)
