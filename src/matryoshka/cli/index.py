"""`mrl index build | tune | search`: persisted Matryoshka indexes (`mrl search`, hidden, is the same search)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from matryoshka.cli._common import int_list, new_app, one_line_errors

app = new_app("Build, tune and search persisted Matryoshka indexes.")


@app.command("build")
@one_line_errors
def build(
    embeddings: Annotated[Path, typer.Option(help=".npy (N, d) full-dim embeddings")],
    out: Annotated[Path, typer.Option(help="index folder (a new version is written atomically)")],
    ids: Annotated[Path | None, typer.Option(help=".npy (N,) integer ids (default 0..N-1)")] = None,
    shortlist_dims: Annotated[str, typer.Option(help="comma-separated prefix sizes with a FAISS index")] = "16",
    encoding: Annotated[str, typer.Option(help="float32, float16 or int8")] = "float32",
) -> None:
    """Build an index from embeddings and save it."""
    from matryoshka.index import MatryoshkaIndex
    from matryoshka.io import read_npy

    index = MatryoshkaIndex.build(
        read_npy(embeddings, "embeddings"),
        read_npy(ids, "ids") if ids is not None else None,
        shortlist_dims=int_list(shortlist_dims, "--shortlist-dims"),
        encoding=encoding,
    )
    folder = index.save(out)
    typer.echo(f"indexed {index.ntotal} vectors of dim {index.dim} ({index.bytes_per_vector()} bytes each) in {folder}")


@app.command("tune")
@one_line_errors
def tune(
    index: Annotated[Path, typer.Option(help="index folder")],
    queries: Annotated[Path, typer.Option(help=".npy calibration queries (Q, d)")],
    k: Annotated[int, typer.Option(help="results per query")] = 10,
    target_recall: Annotated[float, typer.Option(help="recall@k relative to exact full-dim search")] = 0.99,
) -> None:
    """Find the cheapest plan that keeps the target recall@k; prints it in the --plan syntax of `mrl index search`."""
    from matryoshka.index import MatryoshkaIndex
    from matryoshka.index.autotune import autotune
    from matryoshka.index.plans import plan_to_text
    from matryoshka.io import read_npy

    tuned = autotune(MatryoshkaIndex.load(index), read_npy(queries, "queries"), k, target_recall)
    typer.echo(f"plan: {plan_to_text(tuned.plan)}")
    typer.echo(
        f"recall@{k} vs full-dim exact: {tuned.recall:.4f}; {tuned.latency_ms:.3f} ms/query (batched); "
        f"{tuned.flops_saving:.1f}x fewer multiply-adds than full-dim search"
    )


@app.command("search")
@one_line_errors
def search(
    index: Annotated[Path, typer.Option(help="index folder")],
    queries: Annotated[Path, typer.Option(help=".npy (Q, d) query embeddings")],
    plan: Annotated[str, typer.Option(help="full | adaptive:DS:K:DR | funnel:D1xK1,D2xK2,...")] = "full",
    k: Annotated[int, typer.Option(help="results per query")] = 10,
    out: Annotated[Path | None, typer.Option(help="write ids and scores to this .npz")] = None,
    mmap: Annotated[bool, typer.Option(help="memory-map the stored vectors")] = False,
) -> None:
    """Search an index with a plan; prints the first queries' results, or writes them all with --out."""
    from matryoshka.index import MatryoshkaIndex, parse_plan
    from matryoshka.io import read_npy

    parsed = parse_plan(plan)
    scores, ids = MatryoshkaIndex.load(index, mmap=mmap).search(read_npy(queries, "queries"), k, parsed)
    if out is not None:
        np.savez(out, ids=ids, scores=scores)
        typer.echo(f"wrote {ids.shape[0]} x {ids.shape[1]} results to {out}")
    for row in range(min(5, len(ids))):
        hits = ", ".join(f"{i} ({s:.3f})" for i, s in zip(ids[row], scores[row], strict=True))
        typer.echo(f"query {row}: {hits}")
