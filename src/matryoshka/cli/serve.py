"""`mrl serve`: an index (and optionally a model) over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from matryoshka.cli._common import new_app, one_line_errors

app = new_app()


@app.command()
@one_line_errors
def serve(
    index: Annotated[Path, typer.Option(help="index folder (mrl index build)")],
    model: Annotated[Path | None, typer.Option(help="run folder of a model, to search with raw inputs")] = None,
    host: Annotated[str, typer.Option(help="address to bind; loopback by default")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    compact_threshold: Annotated[
        int | None, typer.Option(help="logged rows + deletions that start a background compaction (0: never)")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="requests handled at once (default: CPU cores, >= 2)")] = None,
    full_vectors: Annotated[
        str | None, typer.Option(help="ram, mmap or disk (default: the tier the index was built for)")
    ] = None,
    model_prefix: Annotated[
        bool,
        typer.Option(
            help="let a wider --model serve this index with any prefix (one of its trained dims needs no flag)"
        ),
    ] = False,
) -> None:
    """Serve an index over HTTP (FastAPI): /search, /vectors (X-API-Key from $MRL_API_KEY), /health, /docs."""
    import uvicorn

    from matryoshka.service import create_app

    app = create_app(
        index,
        model_path=model,
        compact_threshold=compact_threshold,
        threads=threads,
        full_vectors=full_vectors,
        model_prefix=model_prefix,
    )
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"serving {index} at http://{shown}:{port} (API docs: http://{shown}:{port}/docs); Ctrl+C stops")
    uvicorn.run(app, host=host, port=port, log_level="warning")
