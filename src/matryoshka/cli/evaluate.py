"""`mrl eval` (every dim of a model or of any embeddings) and `mrl cascade` (adaptive classification)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from matryoshka.cli._common import Device, int_list, new_app, one_line_errors
from matryoshka.errors import InputError

app = new_app()


@app.command("eval")
@one_line_errors
def eval_(
    checkpoint: Annotated[Path | None, typer.Option(help="run folder of a trained model")] = None,
    train_embeddings: Annotated[
        Path | None, typer.Option(help=".npy (N, d) database / probe-training embeddings")
    ] = None,
    train_labels: Annotated[Path | None, typer.Option(help=".npy (N,) labels (integers or strings)")] = None,
    test_embeddings: Annotated[Path | None, typer.Option(help=".npy (M, d) query / probe-test embeddings")] = None,
    test_labels: Annotated[Path | None, typer.Option(help=".npy (M,) labels (integers or strings)")] = None,
    dims: Annotated[str | None, typer.Option(help="comma-separated dims (default: the model's nesting list)")] = None,
    k: Annotated[int, typer.Option(help="cut-off for mAP@k, P@k, R@k")] = 10,
    knn_queries: Annotated[
        int | None, typer.Option(help="use a seeded subset of test queries for 1-NN/retrieval")
    ] = None,
    queries: Annotated[
        Path | None, typer.Option(help="text runs: a .txt of queries, one a line (default: the run's test split)")
    ] = None,
    documents: Annotated[
        Path | None, typer.Option(help="text runs: a .txt of documents, line i relevant to query line i")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="write the results as JSON here")] = None,
    device: Device = "auto",
) -> None:
    """Evaluate at every dim: a trained model (--checkpoint) or any embeddings given as .npy files. A text run gets
    retrieval metrics per dim on its test split, or on --queries / --documents files."""
    from matryoshka.evaluate.per_dim import evaluate_model
    from matryoshka.inference import resolve_device
    from matryoshka.runs import TrainedRun, is_text_model_name, is_text_run

    if (checkpoint is None) == (train_embeddings is None):
        raise InputError(
            "give either --checkpoint, or --train-embeddings/--train-labels/--test-embeddings/--test-labels"
        )
    chosen = int_list(dims, "--dims") if dims else None
    if (queries is None) != (documents is None):
        raise InputError("--queries and --documents go together (line i of one is paired with line i of the other)")
    if checkpoint is not None and (is_text_run(checkpoint) or is_text_model_name(checkpoint)):
        from matryoshka.runs import evaluate_text_run

        results = evaluate_text_run(checkpoint, chosen, k, queries, documents, device)
        _print_text_eval(results, k)
    elif queries is not None:
        raise InputError("--queries / --documents evaluate text runs; this is not one")
    elif checkpoint is not None:
        run = TrainedRun.load(checkpoint, resolve_device(device))
        results = evaluate_model(run.model, run.training_data(), chosen, k, knn_queries)
    else:
        files = {"train embeddings": train_embeddings, "train labels": train_labels}
        files |= {"test embeddings": test_embeddings, "test labels": test_labels}
        results = _evaluate_files(files, chosen, k, knn_queries)
    if "retrieval" in results:
        _print_eval(results, k)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
        typer.echo(f"wrote {out}")


def _evaluate_files(files: dict[str, Path | None], dims: list[int] | None, k: int, knn_queries: int | None) -> dict:
    from matryoshka.evaluate.per_dim import evaluate_embeddings
    from matryoshka.io import read_npy

    if None in files.values():
        raise InputError("--train-embeddings needs --train-labels, --test-embeddings and --test-labels")
    return evaluate_embeddings(*(read_npy(path, what) for what, path in files.items()), dims, k, knn_queries)


def _print_text_eval(results: dict[str, Any], k: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"text retrieval per dim on {results['source']} ({results['queries']} queries, "
        f"{results['documents']} documents; in %)"
    )
    metrics = (f"map@{k}", f"r@{k}", "top1", "mrr")
    for c in ("dim", *metrics):
        table.add_column(c, justify="right")
    for m, row in results["per_dim"].items():
        table.add_row(m, *(f"{100 * row[c]:.2f}" for c in metrics))
    Console().print(table)


def _print_eval(results: dict[str, Any], k: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="per-dim evaluation (accuracies and retrieval metrics in %)")
    table.add_column("dim", justify="right")
    columns = [c for c in ("head", "probe", "knn1") if results.get(c)]
    metrics = (f"map@{k}", f"p@{k}", f"r@{k}")
    for c in (*columns, *metrics):
        table.add_column(c, justify="right")
    for m in map(str, results["dims"]):
        row = [f"{100 * results[c][m]:.2f}" for c in columns]
        row += [f"{100 * results['retrieval'][m][c]:.2f}" for c in metrics]
        table.add_row(m, *row)
    Console().print(table)


@app.command()
@one_line_errors
def cascade(
    checkpoint: Annotated[Path, typer.Option(help="run folder of a trained MRL / MRL-E model")],
    policy: Annotated[str, typer.Option(help="pairwise, target_accuracy or target_dim")] = "pairwise",
    target: Annotated[
        float | None, typer.Option(help="accuracy in [0, 1] or expected dim, for target policies")
    ] = None,
    tolerance: Annotated[float, typer.Option(help="pairwise: accuracy a pair may lose, in [0, 1]")] = 0.0,
    max_dim: Annotated[int | None, typer.Option(help="never go beyond this dim")] = None,
    save: Annotated[Path | None, typer.Option(help="write the fitted thresholds (JSON)")] = None,
    device: Device = "auto",
) -> None:
    """Fit cascade thresholds on the validation split, then classify the test split adaptively."""
    from matryoshka.adaptive.evaluation import cascade_report, fit_model_cascade
    from matryoshka.inference import resolve_device
    from matryoshka.runs import TrainedRun

    run = TrainedRun.load(checkpoint, resolve_device(device))
    model, data = run.model, run.training_data()
    fitted = fit_model_cascade(model, data.val, policy, target, tolerance, max_dim)
    _print_cascade(cascade_report(fitted, model, data.test), policy)
    if save is not None:
        fitted.save(save)
        typer.echo(f"wrote {save}")


def _print_cascade(report: dict[str, Any], policy: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"adaptive classification on the test split ({policy} thresholds fitted on validation)")
    for col in ("", "accuracy (%)", "expected dims", "head cost (dims)"):
        table.add_column(col, justify="right")
    for name in ("cascade", "oracle"):
        r = report[name]
        table.add_row(name, f"{100 * r['accuracy']:.2f}", f"{r['expected_dim']:.1f}", f"{r['head_cost']:.1f}")
    for m, acc in report["fixed"].items():
        table.add_row(f"fixed {m}", f"{100 * acc:.2f}", str(m), str(m))
    Console().print(table)
    typer.echo("examples stopping at each dim: " + ", ".join(f"{m}: {n}" for m, n in report["exits"].items()))
    typer.echo("thresholds: " + ", ".join(f"{m}: {t:.2f}" for m, t in report["thresholds"].items()))
