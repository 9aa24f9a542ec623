"""`mrl bench train-overhead | retrieval | threads | fidelity | adaptor | text | data-loading | store | engines |
memlimit`: the benchmarks of matryoshka.bench (ratios measured side by side in one run). Each command's options
are the keyword arguments of its ``run()``, passed through as parsed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from matryoshka.cli._common import Device, new_app, one_line_errors

app = new_app("Benchmarks: costs and quality measured side by side in one run.")
ImageRun = Annotated[Path, typer.Option(help="trained image run whose embeddings are indexed")]
TextRun = Annotated[Path, typer.Option(help="with --corpus text: a text run made by mrl train")]


@app.command("train-overhead")
@one_line_errors
def train_overhead(
    ctx: typer.Context,
    backbone: Annotated[
        str, typer.Option(help="cnn, resnet, mlp, vit, hf-vit-tiny, hf:DIR, timm:NAME or package.module:factory")
    ] = "cnn",
    image_size: Annotated[int, typer.Option(help="input images are image_size x image_size")] = 28,
    channels: Annotated[int, typer.Option(help="input channels")] = 1,
    width: Annotated[int | None, typer.Option()] = None,
    embed_dim: Annotated[int, typer.Option()] = 512,
    num_classes: Annotated[int, typer.Option()] = 10,
    batch_size: Annotated[int, typer.Option()] = 256,
    steps: Annotated[int, typer.Option(help="steps per timed round")] = 10,
    rounds: Annotated[int, typer.Option()] = 7,
    device: Device = "auto",
) -> None:
    """Train-step time of MRL and MRL-E relative to one full-dim head (targets: <= 1.05x and <= 1.02x)."""
    from matryoshka.bench import train_overhead as bench

    bench.run(**ctx.params)


@app.command("retrieval")
@one_line_errors
def retrieval(
    ctx: typer.Context,
    corpus: Annotated[
        str, typer.Option(help="images (shifted copies: near-duplicates) or text (distinct real texts)")
    ] = "images",
    model: ImageRun = Path("runs/demo/models/mrl"),
    text_model: TextRun = Path("runs/wordnet_minilm_quick"),
    size: Annotated[int, typer.Option(help="vectors indexed (images: under as many pixel shifts as needed)")] = 240_000,
    queries: Annotated[int, typer.Option(help="calibration queries, and as many evaluation queries")] = 1000,
    targets: Annotated[str, typer.Option(help="comma-separated recall@10 targets")] = "0.95,0.99",
    single: Annotated[int, typer.Option(help="single-query searches timed per method and round")] = 200,
    rounds: Annotated[int, typer.Option(help="interleaved timing rounds")] = 3,
    peers: Annotated[
        str,
        typer.Option(
            help="comma-separated peers: faiss-hnsw, faiss-hnsw-sq8, faiss-hnsw-panorama, faiss-hnsw-rabitq, "
            "faiss-ivf-rabitq, faiss-ivf, faiss-ivf-disk, diskann, hnswlib, usearch-f32, usearch-f16, usearch-i8, scann"
        ),
    ] = (
        "faiss-hnsw,faiss-hnsw-sq8,faiss-hnsw-panorama,faiss-hnsw-rabitq,faiss-ivf-rabitq,faiss-ivf,faiss-ivf-disk,"
        "diskann,hnswlib,usearch-f32,usearch-f16,usearch-i8,scann"
    ),
    synthetic_dim: Annotated[
        int, typer.Option("--synthetic", help="use a synthetic corpus of this dim instead of --model")
    ] = 0,
    out: Annotated[Path, typer.Option(help="folder for results.json, retrieval.png and the tuned indexes")] = Path(
        "runs/bench/retrieval"
    ),
) -> None:
    """Our tuned adaptive retrieval against faiss HNSW and IVF, hnswlib, usearch and ScaNN at the full dim:
    recall@10, batch-1 p50/p99 (idle and beside a busy process), batched QPS, RAM and build time at matched recall,
    side by side in one run."""
    from matryoshka.bench import retrieval as bench

    bench.run(**ctx.params)


@app.command("threads")
@one_line_errors
def threads(
    ctx: typer.Context,
    embeddings: Annotated[Path | None, typer.Option(help=".npy (N, d) embeddings (default: synthetic 512-d)")] = None,
    size: Annotated[int, typer.Option(help="rows indexed")] = 100_000,
    plan: Annotated[str, typer.Option(help="search plan (default adaptive:d/16:100:d)")] = "",
    work: Annotated[float, typer.Option(help="seconds of searching timed per cell")] = 0.5,
    out: Annotated[Path, typer.Option()] = Path("runs/bench/threads"),
) -> None:
    """One thread against all per batch size, idle and beside a busy process: where searches should stop running
    single-threaded."""
    from matryoshka.bench import threads as bench

    bench.run(**ctx.params)


@app.command("fidelity")
@one_line_errors
def fidelity(
    models: Annotated[
        list[str] | None, typer.Option("--model", help="text run folder, or base (the packaged MiniLM); repeatable")
    ] = None,
    texts: Annotated[int, typer.Option(help="distinct real texts embedded per model")] = 50_000,
    queries: Annotated[int, typer.Option(help="texts held out as queries")] = 1000,
    out: Annotated[Path, typer.Option()] = Path("runs/bench/fidelity"),
    graph_codes: Annotated[
        bool,
        typer.Option(help="also: recall per K of HNSW graphs over rotated prefixes as float32/int8/int4/pq4/pq2 codes"),
    ] = False,
) -> None:
    """Prefix fidelity of text models: the shortlist K each prefix needs for recall@10 0.95 / 0.99 after a
    full-dim re-rank, on the same held-out real texts."""
    from matryoshka.bench import fidelity as bench

    bench.run(models=models, texts=texts, queries=queries, out=out, graph_codes=graph_codes)


@app.command("imports")
@one_line_errors
def imports(runs: Annotated[int, typer.Option(help="fresh processes per module (median)")] = 5) -> None:
    """Import time of the package's entry points in fresh processes, and whether each loads torch (goal: the
    service in <= 0.6 s without torch)."""
    from matryoshka.bench.imports import run

    run(runs)


@app.command("defaults")
@one_line_errors
def defaults(
    datasets: Annotated[
        str | None, typer.Option(help="comma-separated: fashion_mnist, digits, icons, wordnet-table (default: all)")
    ] = None,
    quick: Annotated[bool, typer.Option(help="small subsets (a check that it runs, not the judgement)")] = False,
    timing: Annotated[
        bool, typer.Option(help="instead: time per step and per epoch of each image / table source (3 epochs)")
    ] = False,
    seeds: Annotated[int, typer.Option(help="train each model with this many seeds and compare the means")] = 1,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="change a default for MRL and FF-k alike, to study it: key=value (repeatable)"),
    ] = None,
    out: Annotated[Path, typer.Option()] = Path("runs/bench/defaults"),
) -> None:
    """MRL against FF-k at every dim with the library defaults (only data and model size given), on data sets of
    different kinds; prints met / NOT met per dim; trained runs are kept in --out and reused."""
    from matryoshka.bench.defaults import run_defaults, run_timings

    names = datasets.split(",") if datasets else None
    if timing:
        run_timings(out, names)
    else:
        run_defaults(out, names, quick=quick, seeds=seeds, overrides=set_ or [])


@app.command("adaptor")
@one_line_errors
def adaptor(
    ctx: typer.Context,
    data: Annotated[Literal["glove", "minilm-wordnet"], typer.Option()] = "glove",
    embeddings: Annotated[Path | None, typer.Option(help=".npy (N, d) embeddings (instead of --data)")] = None,
    texts: Annotated[int, typer.Option(help="glosses encoded for --data minilm-wordnet")] = 30_000,
    corpus: Annotated[int | None, typer.Option(help="use the first N non-query rows as the corpus")] = None,
    queries: Annotated[int, typer.Option()] = 2000,
    steps: Annotated[int, typer.Option()] = 2000,
    losses: Annotated[
        list[str] | None,
        typer.Option("--loss", help="adaptor loss to fit, repeatable: similarity, listwise (default: both)"),
    ] = None,
    goal_dims: Annotated[
        list[int] | None, typer.Option("--goal-dim", help="dims where the adaptor must beat PCA by 2 points")
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
    out: Annotated[Path, typer.Option()] = Path("runs/bench_adaptor"),
) -> None:
    """Post-hoc adaptor against PCA, SVD and raw truncation: recall@10 of the full-dim neighbours of held-out rows
    per dim (GloVe 6B 50d by default); writes adaptor_results.json and adaptor_recall.png to --out."""
    from matryoshka.bench import posthoc as bench

    bench.run(**ctx.params)


@app.command("data-loading")
@one_line_errors
def data_loading(
    ctx: typer.Context,
    images: Annotated[int, typer.Option(help="Fashion-MNIST training images written as PNG files")] = 8192,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes decoding the files")] = 2,
    batch_size: Annotated[int, typer.Option()] = 256,
    rounds: Annotated[int, typer.Option(help="interleaved epochs per source")] = 3,
    folder: Annotated[Path, typer.Option(help="where the PNG folder is written (kept)")] = Path(
        "runs/bench_data/fashion_png"
    ),
) -> None:
    """Training-step time reading a PNG image folder through DataLoader workers vs in-memory tensors
    (goal: within 1.2x)."""
    from matryoshka.bench import data_loading as bench

    bench.run(**ctx.params)


@app.command("text")
@one_line_errors
def text(
    ctx: typer.Context,
    config: Annotated[str, typer.Option()] = "configs/wordnet_minilm.yaml",
    out: Annotated[Path, typer.Option()] = Path("runs/bench_text"),
    overrides: Annotated[list[str] | None, typer.Option("--set", help="config override, e.g. train.epochs=2")] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    peer: Annotated[
        str | None,
        typer.Option(
            help="also train this peer on the same pairs, steps and batch size, scored alike: sentence-transformers "
            "(its own trainer and MatryoshkaLoss)"
        ),
    ] = None,
    data: Annotated[
        str,
        typer.Option(
            help="config (the config's data) or debian-pairs (6,000 synopsis -> description pairs of this machine's "
            "Debian package lists, under the config's model and training)"
        ),
    ] = "config",
) -> None:
    """Matryoshka vs plain fine-tuning of a text encoder (and the base model, and with --peer sentence-transformers'
    own trainer), scored at every dim on held-out pairs (WordNet, the Debian pairs or the config's own); writes
    text_results.json and text_per_dim.png to --out."""
    from matryoshka.bench import text as bench

    bench.run(**ctx.params)


@app.command("store")
@one_line_errors
def store(
    ctx: typer.Context,
    sizes: Annotated[str, typer.Option(help="ROWSxDIM,... for the write-latency table")] = "20000x64,200000x64",
    large: Annotated[bool, typer.Option("--large", help="also 1,000,000 x 512 (about 5 GB on disk, minutes)")] = False,
    adds: Annotated[int, typer.Option(help="single-vector adds timed per size")] = 200,
    rewrites: Annotated[int, typer.Option(help="adds with a whole-index save, timed per size")] = 5,
    rows: Annotated[int, typer.Option(help="index size for the load test")] = 200_000,
    dim: Annotated[int, typer.Option()] = 64,
    clients: Annotated[int, typer.Option(help="concurrent clients")] = 50,
    requests: Annotated[int, typer.Option()] = 2000,
    write_fraction: Annotated[float, typer.Option(help="share of requests that add or delete")] = 0.1,
    plan: Annotated[str, typer.Option(help="search plan of the load test (default: none, the index's tuned one)")] = "",
    shortlist_dim: Annotated[int, typer.Option()] = 16,
    shortlist: Annotated[
        Literal["auto", "flat", "hnsw"], typer.Option(help="auto: built as a plain mrl index build does")
    ] = "auto",
    max_seconds: Annotated[float, typer.Option(help="the load test starts no request after this many seconds")] = 300,
    repeats: Annotated[int, typer.Option(help="load-test runs (medians reported)")] = 3,
    skip_writes: Annotated[bool, typer.Option("--skip-writes")] = False,
    skip_load: Annotated[bool, typer.Option("--skip-load")] = False,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """The index as a store: add latency as the index grows (log vs whole-index save) and mrl serve under
    concurrent mixed load, checked against the acknowledged history after kill -9."""
    from matryoshka.bench import store as bench

    bench.run(**ctx.params)


@app.command("engines")
@one_line_errors
def engines(
    ctx: typer.Context,
    corpus: Annotated[str, typer.Option(help="images (real 512-d MRL embeddings) or text (384-d)")] = "images",
    model: ImageRun = Path("runs/demo/models/mrl"),
    text_model: TextRun = Path("runs/wordnet_minilm_quick"),
    size: Annotated[int, typer.Option(help="vectors indexed and exported")] = 100_000,
    queries: Annotated[int, typer.Option(help="calibration queries, and as many single-query searches")] = 200,
    plan: Annotated[str | None, typer.Option(help="plan to run (default: tuned to --target-recall)")] = None,
    target_recall: Annotated[float, typer.Option(help="recall@10 the tuned plan keeps")] = 0.95,
    engines: Annotated[str, typer.Option(help="comma-separated: milvus, milvus-fetch, qdrant, pgvector")] = (
        "milvus,milvus-fetch,qdrant,pgvector"
    ),
    postgres: Annotated[
        str | None,
        typer.Option(
            help="also a PostgreSQL server of yours: postgresql://USER@HOST:5432/DB (the tables mrl_bench and "
            "mrl_bench_half are written there, then dropped)"
        ),
    ] = None,
    synthetic_dim: Annotated[
        int, typer.Option("--synthetic", help="use a synthetic corpus of this dim instead of --model")
    ] = 0,
    out: Annotated[Path, typer.Option(help="folder for results.json and the engines' files")] = Path(
        "runs/bench/engines"
    ),
) -> None:
    """The same plan locally, on Milvus Lite, Qdrant's local mode and PostgreSQL + pgvector (embedded, and
    --postgres): recall@10, agreement with the local index's top-10, batch-1 latency and export throughput, side by
    side in one run."""
    from matryoshka.bench import engines as bench

    bench.run(**ctx.params)


@app.command("memlimit")
@one_line_errors
def memlimit(
    ctx: typer.Context,
    embeddings: Annotated[
        Path | None, typer.Option(help=".npy (N, d) embeddings (default: a synthetic corpus)")
    ] = None,
    synthetic_dim: Annotated[int, typer.Option("--synthetic", help="dim of the synthetic corpus")] = 512,
    size: Annotated[int, typer.Option(help="vectors of the synthetic corpus")] = 300_000,
    queries: Annotated[int, typer.Option(help="single queries searched inside the limit")] = 200,
    out: Annotated[Path, typer.Option(help="folder for the indexes and results.json")] = Path("runs/bench/memlimit"),
    rebuild: Annotated[bool, typer.Option("--rebuild", help="build the indexes again for the same corpus")] = False,
) -> None:
    """A corpus that does not fit: our disk tier and faiss HNSW-f32 searched inside one memory limit (a cgroup, as
    root) that HNSW's peak exceeds; which run, their batch-1 p50 and recall@10."""
    from matryoshka.bench import memlimit as bench

    bench.run(**ctx.params)
