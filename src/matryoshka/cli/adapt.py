"""`mrl adapt fit | transform`: make existing (non-Matryoshka) embeddings Matryoshka with a post-hoc adaptor."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import typer

from matryoshka.cli._common import Device, int_list, new_app, one_line_errors
from matryoshka.errors import InputError

app = new_app("Make existing (non-Matryoshka) embeddings Matryoshka.")


@app.command("fit")
@one_line_errors
def fit(
    embeddings: Annotated[Path, typer.Option(help=".npy (N, d) embeddings to learn from (no labels needed)")],
    out: Annotated[Path, typer.Option(help="adaptor file to write (.safetensors)")],
    nesting: Annotated[str | None, typer.Option(help="comma-separated prefix sizes (default 8, 16, ..., d)")] = None,
    steps: Annotated[int, typer.Option(help="optimisation steps")] = 2000,
    batch_size: Annotated[int, typer.Option(help="rows per step")] = 1024,
    loss: Annotated[
        Literal["similarity", "listwise"],
        typer.Option(help="similarity: pairwise + top-k cosines; listwise: distil the full-dim neighbour ranks"),
    ] = "similarity",
    target_dims: Annotated[
        str | None, typer.Option(help="comma-separated dims you will use: the kept state is the best there")
    ] = None,
    queries: Annotated[Path | None, typer.Option(help=".npy query embeddings of known pairs (optional)")] = None,
    documents: Annotated[Path | None, typer.Option(help=".npy document embeddings, row i matching query i")] = None,
    holdout: Annotated[int, typer.Option(help="rows held out to score recall@10 per dim after fitting")] = 2000,
    seed: Annotated[int, typer.Option()] = 0,
    device: Device = "auto",
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Learn a transform whose prefixes keep the full-dim neighbours; prints recall@10 per dim on held-out rows."""
    from matryoshka.inference import resolve_device
    from matryoshka.io import read_npy
    from matryoshka.posthoc.evaluation import fit_and_compare, recall_table, recommendation

    if (queries is None) != (documents is None):
        raise InputError("give both --queries and --documents (row i of each is a matching pair), or neither")
    x = read_npy(embeddings, "embeddings")
    pairs = (read_npy(queries, "queries"), read_npy(documents, "documents")) if queries and documents else None
    comparison = fit_and_compare(
        x,
        holdout,
        pairs=pairs,
        nesting=int_list(nesting, "--nesting") if nesting else None,
        steps=steps,
        batch_size=batch_size,
        loss=loss,
        target_dims=int_list(target_dims, "--target-dims") if target_dims else None,
        seed=seed,
        device=str(resolve_device(device)),
        progress=progress,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    comparison.adaptor.save(out)
    typer.echo(
        f"recall@10 of the full-dim neighbours, {comparison.queries} held-out rows against {comparison.corpus:,}:"
    )
    typer.echo("\n".join(recall_table(comparison.recall, comparison.adaptor.nesting_)))
    typer.echo(recommendation(comparison.recall, comparison.adaptor.nesting_))
    typer.echo(f"adaptor saved to {out}; apply it with `mrl adapt transform --adaptor {out} ...`")


@app.command("transform")
@one_line_errors
def transform(
    adaptor: Annotated[Path, typer.Option(help="adaptor file written by `mrl adapt fit`")],
    embeddings: Annotated[Path, typer.Option(help=".npy (N, d) embeddings of the same model")],
    out: Annotated[Path, typer.Option(help="output .npy")],
    dim: Annotated[int | None, typer.Option(help="keep the first DIM adapted features (default: all)")] = None,
    normalize: Annotated[bool, typer.Option(help="L2-normalise each output row")] = True,
) -> None:
    """Map embeddings through a fitted adaptor; any prefix of the output is a usable smaller embedding."""
    from matryoshka.io import read_npy
    from matryoshka.posthoc import MatryoshkaAdaptor

    z = MatryoshkaAdaptor.load(adaptor).transform(read_npy(embeddings, "embeddings"), dim, normalize)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, z.astype(np.float32))
    typer.echo(f"wrote {z.shape} adapted embeddings to {out}")
