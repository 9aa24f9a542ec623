"""The HTTP service over an index and a run folder (FastAPI): ``create_app``, started by ``mrl serve``."""

from matryoshka.service.app import create_app

__all__ = ["create_app"]
