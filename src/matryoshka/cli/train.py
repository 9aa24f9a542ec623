"""`mrl train` (fit a model from a YAML config) and `mrl encode` (embed files, or a data split, with a trained run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from matryoshka.cli._common import Device, new_app, one_line_errors

app = new_app()


@app.command()
@one_line_errors
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML experiment config")],
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="override a key, e.g. --set train.epochs=2")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="run folder (overrides train.out_dir)")] = None,
    resume: Annotated[bool, typer.Option(help="continue from the run folder's last checkpoint")] = True,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Train a model from a YAML config; checkpoints every epoch, resumes after an interruption."""
    from matryoshka.train import Trainer, load_config
    from matryoshka.train.config import TextExperimentConfig

    cfg = load_config(config, [*(overrides or []), *([f"train.out_dir={out}"] if out else [])])
    if isinstance(cfg, TextExperimentConfig):
        _train_text(cfg, progress, resume)
        return
    result = Trainer(cfg, progress=progress, resume=resume).fit()
    if result.val_accuracy:
        accs = ", ".join(f"{m}: {a:.4f}" for m, a in result.val_accuracy.items())
        typer.echo(f"validation accuracy per dim: {accs}")
    typer.echo(f"model saved in {result.run_dir}")


def _train_text(cfg, progress: bool, resume: bool) -> None:
    from matryoshka.runs.text_model import loading_hint
    from matryoshka.train.text_trainer import TextTrainer

    result = TextTrainer(cfg, progress=progress, resume=resume).fit()
    k = cfg.train.eval_k
    trained = "adapted" if cfg.model.frozen_base else "fine-tuned"
    typer.echo(f"test mAP@{k} per dim" + (f" (base model -> {trained}):" if result.base else ":"))
    for m in result.nesting:
        after = result.test[str(m)][f"map@{k}"]
        before = f"{100 * result.base[str(m)][f'map@{k}']:5.1f} -> " if result.base else ""
        typer.echo(f"  {m:>5}: {before}{100 * after:5.1f}")
    typer.echo(f"model saved in {result.model_path}; {loading_hint(result.run_dir)}")


@app.command()
@one_line_errors
def encode(
    checkpoint: Annotated[
        Path,
        typer.Option(
            help="run folder of a trained model, or a text model (all-MiniLM-L6-v2, a SentenceTransformer or "
            "transformers folder) for its plain embeddings"
        ),
    ],
    out: Annotated[Path, typer.Option(help="output .npy file")],
    inputs: Annotated[
        Path | None,
        typer.Option(help="a folder of images, an image, a CSV/JSONL/Parquet table or a .txt file (one text a line)"),
    ] = None,
    image_column: Annotated[str | None, typer.Option(help="with a table of image paths: the column")] = None,
    split: Annotated[str, typer.Option(help="without --inputs: the training data's train, val or test split")] = "test",
    dim: Annotated[int | None, typer.Option(help="keep the first DIM features (default: all)")] = None,
    normalize: Annotated[bool, typer.Option(help="L2-normalise each (truncated) embedding")] = True,
    labels: Annotated[Path | None, typer.Option(help="also save the labels to this .npy file")] = None,
    skip_bad: Annotated[
        bool, typer.Option(help="leave out files of a folder that are not readable images, and list them")
    ] = False,
    device: Device = "auto",
) -> None:
    """Embed files (--inputs) or a split of the training data with a trained run; save the embeddings (at any dim) as
    .npy. With --inputs, each row's source goes beside it: file paths to OUT.names.txt (ready for --ids), or for a
    text file or a table of features, the row numbers (0-based; a text file's blank lines are skipped) to
    OUT.rows.txt. The run's nesting goes to OUT.nesting.json, where `mrl index build` finds it."""
    if inputs is not None:
        from matryoshka.inference import resolve_device
        from matryoshka.io import atomic_write_text
        from matryoshka.runs import TrainedRun

        run = TrainedRun.load(checkpoint, resolve_device(device))
        skipped: list[str] | None = [] if skip_bad else None
        z, names = run.encode_path(
            inputs, dim, progress=True, image_column=image_column, normalize=normalize, skipped=skipped
        )
        for line in skipped or []:
            typer.echo(f"skipped {line}", err=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, z)
        _record_nesting(out, run, z.shape[1])
        from matryoshka.nesting import nesting_sidecar

        names_file = out.with_suffix(".rows.txt" if _rows_are_numbered(inputs, image_column) else ".names.txt")
        atomic_write_text(names_file, "".join(f"{n}\n" for n in names))
        left_out = f"; {len(skipped)} file(s) skipped" if skipped else ""
        sidecar = f", the run's nesting in {nesting_sidecar(out)}" if nesting_sidecar(out).exists() else ""
        typer.echo(f"wrote {z.shape} embeddings of {inputs} to {out} (row sources in {names_file}{sidecar}){left_out}")
        return
    from matryoshka.inference import embed_split, resolve_device
    from matryoshka.runs import TrainedRun

    run = TrainedRun.load(checkpoint, resolve_device(device))
    z, y = embed_split(run.model, run.training_data(), split, dim, normalize)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, z)
    _record_nesting(out, run, z.shape[1])
    if labels is not None:
        np.save(labels, y)
    typer.echo(f"wrote {z.shape} embeddings of the {split} split to {out}")


def _rows_are_numbered(inputs: Path, image_column: str | None) -> bool:
    """Whether the inputs name their rows by number (a text file, a table of features) rather than by file path."""
    from matryoshka.data.inputs import TEXT_EXTENSIONS
    from matryoshka.data.sources import TABLE_BUILDERS

    suffix = inputs.suffix.lower()
    return inputs.is_file() and (suffix in TEXT_EXTENSIONS or (suffix in TABLE_BUILDERS and image_column is None))


def _record_nesting(out: Path, run, dim: int) -> None:
    """The run and its nesting beside the embeddings (or no record, where the run names none: a stale one from an
    earlier run must not be read as this one's)."""
    from matryoshka.nesting import nesting_sidecar, write_embeddings_nesting

    if run.info.get("nesting"):
        write_embeddings_nesting(out, run.path, run.info["nesting"], dim)
    else:
        nesting_sidecar(out).unlink(missing_ok=True)
