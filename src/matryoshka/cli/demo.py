"""`mrl demo`: the end-to-end comparison on Fashion-MNIST (train, evaluate every method at every dim, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from matryoshka.cli._common import Device, new_app, one_line_errors

app = new_app()


@app.command()
@one_line_errors
def demo(
    out: Annotated[Path, typer.Option(help="output folder for results.json, report.html and plots")] = Path(
        "runs/demo"
    ),
    quick: Annotated[
        bool, typer.Option(help="a short run: 8,000 images, FF-k at 2, 4, 8 and 512 dims only (90 s on 2 CPU cores)")
    ] = False,
    epochs: Annotated[int | None, typer.Option(help="epochs per model (default 1, 2 with --quick)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="batch size (default 64)")] = None,
    lr: Annotated[float | None, typer.Option(help="peak learning rate (default 0.01, cosine schedule)")] = None,
    backbone: Annotated[str | None, typer.Option(help="cnn, resnet or mlp")] = None,
    width: Annotated[int | None, typer.Option(help="backbone width")] = None,
    embed_dim: Annotated[int | None, typer.Option(help="embedding size d")] = None,
    min_dim: Annotated[int | None, typer.Option(help="smallest nesting dim (default 2)")] = None,
    train_subset: Annotated[int | None, typer.Option(help="train on this many examples")] = None,
    knn_queries: Annotated[int | None, typer.Option(help="test queries for 1-NN / retrieval (0: all)")] = None,
    paper_heads: Annotated[
        bool,
        typer.Option(
            "--paper-heads/--default-heads",
            help="the paper's classifiers (a bias, no learned scale), or the library's training defaults",
        ),
    ] = True,
    device: Device = "auto",
    fresh: Annotated[bool, typer.Option(help="retrain from scratch instead of reusing OUT/models")] = False,
) -> None:
    """Train MRL, MRL-E and FF-k on Fashion-MNIST, evaluate all methods at all dims, write a report."""
    from dataclasses import replace

    from matryoshka.demo import DemoSettings, run_demo

    settings = DemoSettings.quick() if quick else DemoSettings()
    changes = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "backbone": backbone,
        "width": width,
        "embed_dim": embed_dim,
        "min_dim": min_dim,
        "train_subset": train_subset,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    settings = replace(settings, device=device, paper_heads=paper_heads, **changes)
    if knn_queries is not None:
        settings = replace(settings, knn_queries=knn_queries or None)
    results = run_demo(out, settings, fresh=fresh)
    for check in results["targets"]:
        status = "met" if check["met"] else "NOT met"
        typer.echo(f"{status:>8}  {check['target']}: {check['measured']}")
    typer.echo(f"wrote {out / 'results.json'} and {out / 'report.html'} in {results['timings']['total_s']:.0f}s")
