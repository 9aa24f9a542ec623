"""One place that maps the library's error types to HTTP status codes.

Routes raise the library's own errors (or let them pass through); this handler answers with the status of the
closest type in ``STATUS`` and the error's one-line message. Nothing is decided by reading message text.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from matryoshka.errors import InputError, MatryoshkaError
from matryoshka.index.errors import (
    CompactionError,
    CorruptIndexError,
    DuplicateIdError,
    StoreBusyError,
    StoreFullError,
    StoreWriteError,
    UnknownIdError,
)
from matryoshka.service.model import TextTooLongError

# Most specific first: the first type the error is an instance of gives the status.
STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (DuplicateIdError, 409),
    (UnknownIdError, 404),
    (CompactionError, 503),
    (StoreBusyError, 503),
    (StoreFullError, 507),  # Insufficient Storage: the write is refused until space is freed
    (StoreWriteError, 503),  # an I/O error on write or fsync: nothing of the write was kept; retry
    (CorruptIndexError, 500),
    (TextTooLongError, 413),
    (InputError, 422),
    (MatryoshkaError, 422),  # data a request carried that cannot be read (a corrupt image, ...)
)


def status_of(error: BaseException) -> int:
    return next(code for kind, code in STATUS if isinstance(error, kind))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MatryoshkaError)
    async def library_error(request: Request, exc: MatryoshkaError) -> JSONResponse:
        return JSONResponse(status_code=status_of(exc), content={"detail": str(exc)})

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Leave the offending input out: it may be NaN or huge, and NaN cannot be written as JSON.
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors})
