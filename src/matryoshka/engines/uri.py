"""Engine addresses: one string names the engine and where it runs.

* ``qdrant:PATH``: Qdrant's local mode, stored in the folder PATH (``qdrant::memory:`` keeps it in RAM);
* ``qdrant+http://HOST:6333`` (or ``+https``): a Qdrant server or cluster;
* ``milvus:FILE.db``: Milvus Lite, the Milvus engine embedded, stored in FILE.db;
* ``milvus+http://HOST:19530`` (or ``+https``): a Milvus server or cluster;
* ``postgres:DIR``: PostgreSQL with pgvector embedded (the ``pgserver`` wheel), its data in the folder DIR, started
  on first use and stopped when the process exits;
* ``postgresql://USER@HOST:PORT/DB`` (or ``postgres://``): any PostgreSQL server with the pgvector extension (a
  libpq connection URI: a password, ``?sslmode=...`` and a ``host=/socket/dir`` query work as in ``psql``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from matryoshka.errors import InputError

ENGINES = ("qdrant", "milvus", "postgres")
FORMS = (
    "qdrant:PATH, qdrant+http://HOST:6333, milvus:FILE.db, milvus+http://HOST:19530, postgres:DIR or "
    "postgresql://USER@HOST:5432/DB"
)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$")


@dataclass(frozen=True)
class EngineURI:
    """engine: "qdrant", "milvus" or "postgres"; location: a local path, or the server's URL (http(s), or a
    PostgreSQL connection URI); remote: a server."""

    engine: str
    location: str
    remote: bool

    @property
    def host_port(self) -> str:
        """``HOST:PORT`` of a server (for messages), or the local path."""
        if not self.remote:
            return self.location
        parts = urlsplit(self.location)
        if self.engine == "postgres":  # libpq's defaults: a local socket, port 5432
            return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
        return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"

    def __str__(self) -> str:
        if self.engine == "postgres" and self.remote:  # a connection URI, its password left out of messages
            parts = urlsplit(self.location)
            if parts.password is None:
                return self.location
            return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()
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
    if scheme in ("postgres", "postgresql"):
        return _postgres_uri(text.strip(), scheme, rest)
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


def _postgres_uri(text: str, scheme: str, rest: str) -> EngineURI:
    if rest.startswith("//"):  # a libpq connection URI: psycopg reads it as it is
        try:
            urlsplit(text).port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise InputError(f"{_redacted(text)!r}: the port is not a number") from None
        return EngineURI("postgres", text, remote=True)
    if scheme == "postgresql":
        raise InputError(f"{text!r} is no connection URI; write postgresql://USER@HOST:5432/DB, or postgres:DIR")
    if not rest:
        raise InputError(f"{text!r} names no folder; write it as postgres:DIR (an embedded server's data folder)")
    return EngineURI("postgres", rest, remote=False)


def _redacted(text: str) -> str:
    return str(EngineURI("postgres", text, remote=True))
