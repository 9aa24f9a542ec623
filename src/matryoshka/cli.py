"""The `mrl` command line: train, encode (and more as the library grows)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Matryoshka Representation Learning: train, evaluate and serve nested embeddings.",
)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.command()
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
    from matryoshka.data import CorruptDataError, DataNotFoundError
    from matryoshka.train import CheckpointError, ConfigError, Trainer, TrainingDivergedError, load_config

    try:
        cfg = load_config(config, list(overrides or []) + ([f"train.out_dir={out}"] if out else []))
        result = Trainer(cfg, progress=progress, resume=resume).fit()
    except (ConfigError, DataNotFoundError, CorruptDataError, CheckpointError, TrainingDivergedError) as e:
        _fail(str(e))
        return
    if result.val_accuracy:
        accs = ", ".join(f"{m}: {a:.4f}" for m, a in result.val_accuracy.items())
        typer.echo(f"validation accuracy per dim: {accs}")
    typer.echo(f"model saved in {result.run_dir}")


@app.command()
def encode(
    checkpoint: Annotated[Path, typer.Option(help="run folder of a trained model")],
    out: Annotated[Path, typer.Option(help="output .npy file")],
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    dim: Annotated[int | None, typer.Option(help="keep the first DIM features (default: all)")] = None,
    normalize: Annotated[bool, typer.Option(help="L2-normalise each (truncated) embedding")] = True,
    labels: Annotated[Path | None, typer.Option(help="also save the labels to this .npy file")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
) -> None:
    """Embed a data split with a trained model and save the embeddings (at any dim) as .npy."""
    from matryoshka.data import load_dataset
    from matryoshka.inference import encode as encode_all
    from matryoshka.inference import resolve_device
    from matryoshka.train import CheckpointError, load_model
    from matryoshka.truncate import truncate

    if split not in ("train", "val", "test"):
        _fail(f"split must be train, val or test, got {split!r}")
    try:
        model, info = load_model(checkpoint, resolve_device(device))
    except CheckpointError as e:
        _fail(str(e))
        return
    data_cfg = info["config"]["data"]
    data = load_dataset(data_cfg["name"], data_cfg["root"], data_cfg["val_size"], data_cfg["seed"])
    part = getattr(data, split)
    z = encode_all(model, part.x)
    d = z.shape[1]
    try:
        z = truncate(z, dim or d, normalize=normalize)
    except ValueError as e:
        _fail(str(e))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, z.numpy().astype(np.float32))
    if labels is not None:
        np.save(labels, part.y.numpy())
    typer.echo(f"wrote {tuple(z.shape)} embeddings of the {split} split to {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
