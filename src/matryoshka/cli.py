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
    from matryoshka.nn.text_encoder import TextEncoderError
    from matryoshka.train import (
        CheckpointError,
        ConfigError,
        DistributedSetupError,
        Trainer,
        TrainingDivergedError,
        load_config,
    )
    from matryoshka.train.config import TextExperimentConfig

    try:
        cfg = load_config(config, list(overrides or []) + ([f"train.out_dir={out}"] if out else []))
        if isinstance(cfg, TextExperimentConfig):
            _train_text(cfg, progress, resume)
            return
        result = Trainer(cfg, progress=progress, resume=resume).fit()
    except (
        ConfigError,
        DataNotFoundError,
        CorruptDataError,
        CheckpointError,
        TrainingDivergedError,
        DistributedSetupError,
        TextEncoderError,
        ValueError,
    ) as e:
        _fail(str(e))
        return
    if result.val_accuracy:
        accs = ", ".join(f"{m}: {a:.4f}" for m, a in result.val_accuracy.items())
        typer.echo(f"validation accuracy per dim: {accs}")
    typer.echo(f"model saved in {result.run_dir}")


def _train_text(cfg, progress: bool, resume: bool) -> None:
    from matryoshka.train.text_trainer import TextTrainer

    result = TextTrainer(cfg, progress=progress, resume=resume).fit()
    k = cfg.train.eval_k
    typer.echo(f"test mAP@{k} per dim" + (" (base model -> fine-tuned):" if result.base else ":"))
    for m in result.nesting:
        after = result.test[str(m)][f"map@{k}"]
        before = f"{100 * result.base[str(m)][f'map@{k}']:5.1f} -> " if result.base else ""
        typer.echo(f"  {m:>5}: {before}{100 * after:5.1f}")
    typer.echo(f"model saved in {result.model_path}; load it with SentenceTransformer(path, truncate_dim=m)")


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
    from matryoshka.inference import encode as encode_all
    from matryoshka.truncate import truncate

    if split not in ("train", "val", "test"):
        _fail(f"split must be train, val or test, got {split!r}")
    model, _, data = _load_run(checkpoint, device)
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


def _load_run(checkpoint: Path, device: str):
    """A trained model, its config.json, and the data set it was trained on (same splits)."""
    from matryoshka.data import load_dataset
    from matryoshka.inference import resolve_device
    from matryoshka.train import CheckpointError, load_model

    try:
        model, info = load_model(checkpoint, resolve_device(device))
    except CheckpointError as e:
        _fail(str(e))
        raise
    c = info["config"]["data"]
    return model, info, load_dataset(c["name"], c["root"], c["val_size"], c["seed"])


def _load_npy(path: Path, what: str) -> np.ndarray:
    if not path.exists():
        _fail(f"{what} file {path} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        _fail(f"{what} file {path} is not a readable .npy array: {e}")
        raise


def _print_eval(results: dict, dims: list[int], k: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="per-dim evaluation (accuracies and retrieval metrics in %)")
    table.add_column("dim", justify="right")
    columns = [c for c in ("head", "probe", "knn1") if results.get(c)]
    for c in columns:
        table.add_column(c, justify="right")
    metrics = (f"map@{k}", f"p@{k}", f"r@{k}")
    for c in metrics:
        table.add_column(c, justify="right")
    for m in dims:
        key = str(m)
        row = [f"{100 * results[c][key]:.2f}" for c in columns]
        row += [f"{100 * results['retrieval'][key][c]:.2f}" for c in metrics]
        table.add_row(key, *row)
    Console().print(table)


@app.command("eval")
def eval_(
    checkpoint: Annotated[Path | None, typer.Option(help="run folder of a trained model")] = None,
    train_embeddings: Annotated[
        Path | None, typer.Option(help=".npy (N, d) database / probe-training embeddings")
    ] = None,
    train_labels: Annotated[Path | None, typer.Option(help=".npy (N,) integer labels")] = None,
    test_embeddings: Annotated[Path | None, typer.Option(help=".npy (M, d) query / probe-test embeddings")] = None,
    test_labels: Annotated[Path | None, typer.Option(help=".npy (M,) integer labels")] = None,
    dims: Annotated[str | None, typer.Option(help="comma-separated dims (default: the model's nesting list)")] = None,
    k: Annotated[int, typer.Option(help="cut-off for mAP@k, P@k, R@k")] = 10,
    knn_queries: Annotated[
        int | None, typer.Option(help="use a seeded subset of test queries for 1-NN/retrieval")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="write the results as JSON here")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
) -> None:
    """Evaluate at every dim: a trained model (--checkpoint) or any embeddings given as .npy files."""
    import json

    import torch

    from matryoshka.evaluate import accuracy, evaluate_views, prefix_view
    from matryoshka.nesting import NestingError, nesting_list, validate_nesting

    if (checkpoint is None) == (train_embeddings is None):
        _fail("give either --checkpoint, or --train-embeddings/--train-labels/--test-embeddings/--test-labels")
    heads: dict[str, float] = {}
    if checkpoint is not None:
        from matryoshka.inference import encode_and_classify

        model, info, data = _load_run(checkpoint, device)
        train_z, _ = encode_and_classify(model, data.train.x, with_logits=False)
        test_z, logits = encode_and_classify(model, data.test.x)
        train_y, test_y = data.train.y, data.test.y
        default_dims = info["nesting"]
        heads = {str(m): accuracy(out_m, test_y) for m, out_m in zip(default_dims, logits, strict=True)}
    else:
        if None in (train_labels, test_embeddings, test_labels):
            _fail("--train-embeddings needs --train-labels, --test-embeddings and --test-labels")
        arrays = [
            _load_npy(p, w)
            for p, w in [
                (train_embeddings, "train embeddings"),
                (train_labels, "train labels"),
                (test_embeddings, "test embeddings"),
                (test_labels, "test labels"),
            ]
        ]
        train_z, train_y, test_z, test_y = (torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
        if train_z.ndim != 2 or test_z.ndim != 2 or train_z.shape[1] != test_z.shape[1]:
            _fail(f"embeddings must be 2-D with equal widths, got {tuple(train_z.shape)} and {tuple(test_z.shape)}")
        if len(train_y) != len(train_z) or len(test_y) != len(test_z):
            _fail("each embeddings file needs exactly one label per row")
        if not (torch.isfinite(train_z).all() and torch.isfinite(test_z).all()):
            _fail("embeddings contain NaN or inf")
        train_z, test_z = train_z.float(), test_z.float()
        train_y, test_y = train_y.long(), test_y.long()
        default_dims = nesting_list(train_z.shape[1])
    try:
        chosen = validate_nesting([int(x) for x in dims.split(",")], None) if dims else default_dims
        if chosen[-1] > train_z.shape[1]:
            raise NestingError(f"dim {chosen[-1]} is larger than the embeddings' {train_z.shape[1]}")
    except (ValueError, NestingError) as e:
        _fail(f"bad --dims: {e}")
        raise
    results = evaluate_views(prefix_view(train_z, test_z), chosen, train_y, test_y, k=k, max_queries=knn_queries)
    if heads:
        results["head"] = {m: a for m, a in heads.items() if int(m) in chosen}
    _print_eval(results, chosen, k)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"dims": chosen, **results}, indent=2))
        typer.echo(f"wrote {out}")


@app.command()
def cascade(
    checkpoint: Annotated[Path, typer.Option(help="run folder of a trained MRL / MRL-E model")],
    policy: Annotated[str, typer.Option(help="pairwise, target_accuracy or target_dim")] = "pairwise",
    target: Annotated[
        float | None, typer.Option(help="accuracy in [0, 1] or expected dim, for target policies")
    ] = None,
    tolerance: Annotated[float, typer.Option(help="pairwise: accuracy a pair may lose, in [0, 1]")] = 0.0,
    max_dim: Annotated[int | None, typer.Option(help="never go beyond this dim")] = None,
    save: Annotated[Path | None, typer.Option(help="write the fitted thresholds (JSON)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
) -> None:
    """Fit cascade thresholds on the validation split, then classify the test split adaptively."""
    from rich.console import Console
    from rich.table import Table

    from matryoshka.adaptive import Cascade, oracle
    from matryoshka.inference import encode_and_classify

    model, info, data = _load_run(checkpoint, device)
    if info["config"]["model"]["head"] == "ff":
        _fail("a cascade needs a model with nested heads (mrl or mrl_e), this one is an FF model")
    if len(data.val) == 0:
        _fail("the model's validation split is empty; retrain with data.val_size > 0 to fit thresholds")
    _, val_logits = encode_and_classify(model, data.val.x)
    try:
        fitted = Cascade(info["nesting"], max_dim).fit(
            val_logits, data.val.y, policy=policy, target=target, tolerance=tolerance
        )
    except ValueError as e:
        _fail(str(e))
        raise
    device_t = next(model.parameters()).device
    result = fitted.predict_model(model, data.test.x.to(device_t))
    _, test_logits = encode_and_classify(model, data.test.x)
    y = data.test.y
    table = Table(title=f"adaptive classification on the test split ({policy} thresholds fitted on validation)")
    for col in ("", "accuracy (%)", "expected dims", "head cost (dims)"):
        table.add_column(col, justify="right")
    table.add_row(
        "cascade", f"{100 * result.accuracy(y):.2f}", f"{result.expected_dim:.1f}", f"{result.mean_head_cost:.1f}"
    )
    orc = oracle(test_logits, y, fitted.nesting)
    table.add_row("oracle", f"{100 * orc['accuracy']:.2f}", f"{orc['expected_dim']:.1f}", f"{orc['head_cost']:.1f}")
    for m, lg in zip(fitted.nesting, test_logits, strict=False):
        table.add_row(f"fixed {m}", f"{100 * (lg.argmax(1) == y).float().mean().item():.2f}", str(m), str(m))
    Console().print(table)
    exits = {m: int((result.dims_used.cpu() == m).sum()) for m in fitted.nesting}
    typer.echo("examples stopping at each dim: " + ", ".join(f"{m}: {n}" for m, n in exits.items()))
    typer.echo(
        "thresholds: "
        + ", ".join(f"{m}: {t:.2f}" for m, t in zip(fitted.nesting, fitted.thresholds_.tolist(), strict=True))
    )
    if save is not None:
        fitted.save(save)
        typer.echo(f"wrote {save}")


index_app = typer.Typer(no_args_is_help=True, help="Build and inspect persisted Matryoshka indexes.")
app.add_typer(index_app, name="index")


@index_app.command("build")
def index_build(
    embeddings: Annotated[Path, typer.Option(help=".npy (N, d) full-dim embeddings")],
    out: Annotated[Path, typer.Option(help="index folder (a new version is written atomically)")],
    ids: Annotated[Path | None, typer.Option(help=".npy (N,) integer ids (default 0..N-1)")] = None,
    shortlist_dims: Annotated[str, typer.Option(help="comma-separated prefix sizes with a FAISS index")] = "16",
    encoding: Annotated[str, typer.Option(help="float32, float16 or int8")] = "float32",
) -> None:
    """Build an index from embeddings and save it."""
    from matryoshka.index import IndexInputError, MatryoshkaIndex

    x = _load_npy(embeddings, "embeddings")
    if x.ndim != 2:
        _fail(f"embeddings must be 2-D (N, d), got shape {x.shape}")
    try:
        index = MatryoshkaIndex(x.shape[1], [int(d) for d in shortlist_dims.split(",")], encoding)
        index.add(x, _load_npy(ids, "ids") if ids is not None else None)
    except (IndexInputError, ValueError) as e:
        _fail(str(e))
        raise
    folder = index.save(out)
    typer.echo(f"indexed {index.ntotal} vectors of dim {index.dim} ({index.bytes_per_vector()} bytes each) in {folder}")


@index_app.command("tune")
def index_tune(
    index: Annotated[Path, typer.Option(help="index folder")],
    queries: Annotated[Path, typer.Option(help=".npy calibration queries (Q, d)")],
    k: Annotated[int, typer.Option(help="results per query")] = 10,
    target_recall: Annotated[float, typer.Option(help="recall@k relative to exact full-dim search")] = 0.99,
) -> None:
    """Find the cheapest plan that keeps the target recall@k; prints it in the --plan syntax of `mrl search`."""
    from matryoshka.index import CorruptIndexError, IndexInputError, MatryoshkaIndex
    from matryoshka.index.autotune import autotune
    from matryoshka.index.plans import plan_to_text

    try:
        idx = MatryoshkaIndex.load(index)
        tuned = autotune(idx, _load_npy(queries, "queries"), k, target_recall)
    except (IndexInputError, CorruptIndexError, ValueError) as e:
        _fail(str(e))
        raise
    full = next(c for c in tuned.candidates if plan_to_text(c["plan"]) == "full")
    typer.echo(f"plan: {plan_to_text(tuned.plan)}")
    typer.echo(
        f"recall@{k} vs full-dim exact: {tuned.recall:.4f}; {tuned.latency_ms:.3f} ms/query (batched); "
        f"{full['flops'] / tuned.flops_per_query:.1f}x fewer multiply-adds than full-dim search"
    )


adapt_app = typer.Typer(no_args_is_help=True, help="Make existing (non-Matryoshka) embeddings Matryoshka.")
app.add_typer(adapt_app, name="adapt")


@adapt_app.command("fit")
def adapt_fit(
    embeddings: Annotated[Path, typer.Option(help=".npy (N, d) embeddings to learn from (no labels needed)")],
    out: Annotated[Path, typer.Option(help="adaptor file to write (.safetensors)")],
    nesting: Annotated[str | None, typer.Option(help="comma-separated prefix sizes (default 8, 16, ..., d)")] = None,
    steps: Annotated[int, typer.Option(help="optimisation steps")] = 2000,
    batch_size: Annotated[int, typer.Option(help="rows per step")] = 1024,
    queries: Annotated[Path | None, typer.Option(help=".npy query embeddings of known pairs (optional)")] = None,
    documents: Annotated[Path | None, typer.Option(help=".npy document embeddings, row i matching query i")] = None,
    holdout: Annotated[int, typer.Option(help="rows held out to score recall@10 per dim after fitting")] = 2000,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Learn a transform whose prefixes keep the full-dim neighbours; prints recall@10 per dim on held-out rows."""
    from matryoshka.evaluate.neighbours import adaptor_comparison_methods, prefix_neighbour_recall
    from matryoshka.inference import resolve_device
    from matryoshka.posthoc import MatryoshkaAdaptor

    x = _load_npy(embeddings, "embeddings").astype(np.float32)
    if (queries is None) != (documents is None):
        _fail("give both --queries and --documents (row i of each is a matching pair), or neither")
    pairs = (_load_npy(queries, "queries"), _load_npy(documents, "documents")) if queries and documents else None
    if x.ndim != 2 or len(x) < 50:
        _fail(f"embeddings must be a 2-D (N, d) array with at least 50 rows, got shape {x.shape}")
    held = min(holdout, len(x) // 5)
    perm = np.random.default_rng(seed).permutation(len(x))
    test, train = x[perm[:held]], x[perm[held:]]
    try:
        dims = [int(m) for m in nesting.split(",")] if nesting else None
        adaptor = MatryoshkaAdaptor(
            dims, steps=steps, batch_size=batch_size, seed=seed, device=str(resolve_device(device)), progress=progress
        ).fit(train, pairs)
    except ValueError as e:
        _fail(str(e))
        raise
    out.parent.mkdir(parents=True, exist_ok=True)
    adaptor.save(out)
    methods = adaptor_comparison_methods(train, adaptor)
    recalls = prefix_neighbour_recall(train, test, methods, adaptor.nesting_)
    typer.echo(f"recall@10 of the full-dim neighbours, {held} held-out rows against {len(train):,}:")
    typer.echo(f"{'dim':>6}" + "".join(f"{m:>10}" for m in methods))
    for m in adaptor.nesting_:
        typer.echo(f"{m:>6}" + "".join(f"{recalls[name][m]:>10.3f}" for name in methods))
    typer.echo(f"adaptor saved to {out}; apply it with `mrl adapt transform --adaptor {out} ...`")


@adapt_app.command("transform")
def adapt_transform(
    adaptor: Annotated[Path, typer.Option(help="adaptor file written by `mrl adapt fit`")],
    embeddings: Annotated[Path, typer.Option(help=".npy (N, d) embeddings of the same model")],
    out: Annotated[Path, typer.Option(help="output .npy")],
    dim: Annotated[int | None, typer.Option(help="keep the first DIM adapted features (default: all)")] = None,
    normalize: Annotated[bool, typer.Option(help="L2-normalise each output row")] = True,
) -> None:
    """Map embeddings through a fitted adaptor; any prefix of the output is a usable smaller embedding."""
    from matryoshka.posthoc import MatryoshkaAdaptor

    if not adaptor.exists():
        _fail(f"adaptor file {adaptor} does not exist")
    try:
        fitted = MatryoshkaAdaptor.load(adaptor)
        z = fitted.transform(_load_npy(embeddings, "embeddings"), dim, normalize)
    except ValueError as e:
        _fail(str(e))
        raise
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, z.astype(np.float32))
    typer.echo(f"wrote {z.shape} adapted embeddings to {out}")


@app.command()
def search(
    index: Annotated[Path, typer.Option(help="index folder")],
    queries: Annotated[Path, typer.Option(help=".npy (Q, d) query embeddings")],
    plan: Annotated[str, typer.Option(help="full | adaptive:DS:K:DR | funnel:D1xK1,D2xK2,...")] = "full",
    k: Annotated[int, typer.Option(help="results per query")] = 10,
    out: Annotated[Path | None, typer.Option(help="write ids and scores to this .npz")] = None,
    mmap: Annotated[bool, typer.Option(help="memory-map the stored vectors")] = False,
) -> None:
    """Search an index with a plan; prints the first queries' results, or writes them all with --out."""
    from matryoshka.index import CorruptIndexError, IndexInputError, MatryoshkaIndex, parse_plan

    try:
        parsed = parse_plan(plan)
        idx = MatryoshkaIndex.load(index, mmap=mmap)
        scores, ids = idx.search(_load_npy(queries, "queries"), k, parsed)
    except (IndexInputError, CorruptIndexError, ValueError) as e:
        _fail(str(e))
        raise
    if out is not None:
        np.savez(out, ids=ids, scores=scores)
        typer.echo(f"wrote {ids.shape[0]} x {ids.shape[1]} results to {out}")
    for row in range(min(5, len(ids))):
        hits = ", ".join(f"{i} ({s:.3f})" for i, s in zip(ids[row], scores[row], strict=True))
        typer.echo(f"query {row}: {hits}")


@app.command()
def serve(
    index: Annotated[Path, typer.Option(help="index folder (mrl index build)")],
    model: Annotated[Path | None, typer.Option(help="run folder of a model, to search with raw inputs")] = None,
    host: Annotated[str, typer.Option(help="address to bind; loopback by default")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
) -> None:
    """Serve an index over HTTP (FastAPI): /search, /vectors (X-API-Key from $MRL_API_KEY), /health, /docs."""
    import uvicorn

    from matryoshka.index import CorruptIndexError
    from matryoshka.service import create_app

    try:
        application = create_app(index, model_path=model)
    except CorruptIndexError as e:
        _fail(str(e))
        raise
    uvicorn.run(application, host=host, port=port, log_level="warning")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="retrieval, train-overhead, adaptor or text; options go to the benchmark")
    ],
) -> None:
    """Run a benchmark (ratios side by side in one run); python -m matryoshka.bench.NAME --help lists options."""
    import sys

    from matryoshka.bench import adaptor, retrieval, text, train_overhead

    benches = {
        "retrieval": retrieval.main,
        "train-overhead": train_overhead.main,
        "adaptor": adaptor.main,
        "text": text.main,
    }
    if name not in benches:
        _fail(f"unknown benchmark {name!r}; choose one of {', '.join(benches)}")
    sys.argv = [f"mrl bench {name}", *ctx.args]
    benches[name]()


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="output folder for results.json, report.html and plots")] = Path(
        "runs/demo"
    ),
    quick: Annotated[bool, typer.Option(help="a short run (about a minute on 2 CPU cores)")] = False,
    epochs: Annotated[int | None, typer.Option(help="epochs per model (default 3, 1 with --quick)")] = None,
    backbone: Annotated[str | None, typer.Option(help="cnn, resnet or mlp")] = None,
    width: Annotated[int | None, typer.Option(help="backbone width")] = None,
    embed_dim: Annotated[int | None, typer.Option(help="embedding size d")] = None,
    min_dim: Annotated[int | None, typer.Option(help="smallest nesting dim (default 8)")] = None,
    train_subset: Annotated[int | None, typer.Option(help="train on this many examples")] = None,
    knn_queries: Annotated[int | None, typer.Option(help="test queries for 1-NN / retrieval (0: all)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    fresh: Annotated[bool, typer.Option(help="retrain from scratch instead of reusing OUT/models")] = False,
) -> None:
    """Train MRL, MRL-E and FF-k on Fashion-MNIST, evaluate all methods at all dims, write a report."""
    from dataclasses import replace

    from matryoshka.data import CorruptDataError, DataNotFoundError
    from matryoshka.demo import DemoSettings, run_demo
    from matryoshka.train import CheckpointError

    settings = DemoSettings.quick() if quick else DemoSettings()
    changes = {
        "epochs": epochs,
        "backbone": backbone,
        "width": width,
        "embed_dim": embed_dim,
        "min_dim": min_dim,
        "train_subset": train_subset,
    }
    settings = replace(settings, device=device, **{k: v for k, v in changes.items() if v is not None})
    if knn_queries is not None:
        settings = replace(settings, knn_queries=knn_queries or None)
    try:
        results = run_demo(out, settings, fresh=fresh)
    except (DataNotFoundError, CorruptDataError, CheckpointError) as e:
        _fail(str(e))
        return
    for check in results["targets"]:
        status = "met" if check["met"] else "NOT met"
        typer.echo(f"{status:>8}  {check['target']}: {check['measured']}")
    typer.echo(f"wrote {out / 'results.json'} and {out / 'report.html'} in {results['timings']['total_s']:.0f}s")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
