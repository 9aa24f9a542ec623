"""The main job: the paper's central comparison on Fashion-MNIST, end to end.

Trains MRL, MRL-E and one FF-k model per nesting dim with the same backbone and budget, evaluates every
method at every dim (trained heads, fresh linear probes, 1-NN, mAP@10 / P@10 / R@10), adds the post-hoc
baselines computed from the FF-full features (SVD, random features), and writes ``results.json``,
PNG plots and a self-contained ``report.html``.

Each model trains in its own run folder under ``OUT/models``, so an interrupted demo resumes where it
stopped when run again with the same arguments. Nesting starts at 2 dims, below the number of classes, where MRL and
the post-hoc baselines part; the quick variant trains FF-k only at a few dims and marks the others as not run.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from matryoshka.adaptive import evaluate_cascades
from matryoshka.data import ImageData, load_dataset
from matryoshka.evaluate import SVDProjection, accuracy, evaluate_views, prefix_view, random_features
from matryoshka.index import AdaptivePlan, FullPlan, FunnelPlan, MatryoshkaIndex
from matryoshka.index.evaluation import evaluate_plans
from matryoshka.inference import encode_and_classify, resolve_device
from matryoshka.io import atomic_write_json
from matryoshka.nesting import nesting_list
from matryoshka.train import Trainer, parse_config

METHOD_LABELS = {
    "mrl": "MRL",
    "mrl_e": "MRL-E",
    "ff": "FF-k (one model per dim)",
    "svd": "SVD of FF-full",
    "random": "Rand. FS of FF-full",
    "mrl_probe": "MRL (fresh linear probe)",
}


@dataclass
class DemoSettings:
    """What the demo trains and how long; ``quick()`` is the under-90-seconds variant.

    Many small steps at a high learning rate: the nested heads (2 dims and up) need steps more than epochs.
    ``ff_dims``: the dims that get an FF-k model (None: every nesting dim; the full dim is always trained, as the
    SVD and random-feature baselines are computed from it). ``knn_queries``: test queries for 1-NN and the per-dim
    retrieval metrics (None: all; fewer make method gaps of 1pt noise); ``plan_queries``: for the search plans and
    the adaptor. ``adaptor_steps=0`` leaves the post-hoc adaptor out. ``paper_heads``: the paper's classifiers (a
    bias, no learned scale) for every model, as the comparison it reproduces; False: the library's defaults (a
    learned scale, no bias), which need more steps than one or two epochs give to form a 2-dim head.
    """

    dataset: str = "fashion_mnist"
    backbone: str = "cnn"
    width: int = 16
    embed_dim: int = 512
    min_dim: int = 2
    epochs: int = 1
    batch_size: int = 64
    lr: float = 1e-2
    train_subset: int | None = None
    ff_dims: tuple[int, ...] | None = None
    knn_queries: int | None = 5000
    plan_queries: int = 1000
    probe_iters: int = 60
    cascade_splits: int = 5
    adaptor_steps: int = 150
    paper_heads: bool = True
    device: str = "auto"
    seed: int = 0

    @classmethod
    def quick(cls) -> DemoSettings:
        return cls(
            epochs=2,
            train_subset=8000,
            ff_dims=(2, 4, 8),
            knn_queries=None,
            plan_queries=1000,
            probe_iters=40,
            adaptor_steps=0,
        )

    def ff_nesting(self) -> list[int]:
        """The dims that get an FF-k model."""
        nesting = nesting_list(self.embed_dim, self.min_dim)
        wanted = set(nesting if self.ff_dims is None else self.ff_dims) | {nesting[-1]}
        return [m for m in nesting if m in wanted]


@contextmanager
def _stage(name: str, timings: dict[str, float], console: Console) -> Iterator[None]:
    """Time a stage into ``timings`` and say when it starts and how long it took (one line each)."""
    console.print(f"[bold]{name}[/bold]")
    t0 = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - t0, 1)
    console.print(f"  {name}: {timings[name]:.1f} s", soft_wrap=True)


def _train_all(settings: DemoSettings, data: ImageData, out: Path, console: Console) -> dict[str, Any]:
    runs: dict[str, dict[str, Any]] = {"mrl": {"head": "mrl"}, "mrl_e": {"head": "mrl_e"}}
    runs.update({f"ff-{k}": {"head": "ff", "ff_dim": k} for k in settings.ff_nesting()})
    models = {}
    for i, (name, head) in enumerate(runs.items(), start=1):
        console.print(f"[bold]training {i}/{len(runs)}: {name}[/bold]")
        cfg = parse_config(
            {
                "data": {"name": settings.dataset, "train_subset": settings.train_subset, "seed": settings.seed},
                "model": {
                    "backbone": settings.backbone,
                    "width": settings.width,
                    "embed_dim": settings.embed_dim,
                    "min_dim": settings.min_dim,
                    "head_bias": settings.paper_heads,
                    "logit_scale": not settings.paper_heads,
                    **head,
                },
                "optim": {"lr": settings.lr},
                "train": {
                    "epochs": settings.epochs,
                    "batch_size": settings.batch_size,
                    "seed": settings.seed,
                    "device": settings.device,
                    "out_dir": str(out / "models" / name),
                },
            }
        )
        t0 = time.perf_counter()
        result = Trainer(cfg, data=data).fit()
        seconds = sum(h["seconds"] for h in result.history)
        models[name] = {"model": result.model, "seconds": seconds, "wall": time.perf_counter() - t0}
    return models


def _method_views(
    models: dict[str, Any], data: ImageData, nesting: list[int], ff_dims: list[int]
) -> tuple[dict, dict, dict]:
    """Per-method views for evaluation, the trained heads' test accuracy per dim, and their test logits."""
    encoded = {}
    for name, entry in models.items():
        train_z, _ = encode_and_classify(entry["model"], data.train.x, with_logits=False)
        test_z, test_logits = encode_and_classify(entry["model"], data.test.x)
        encoded[name] = (train_z, test_z, test_logits)
    heads: dict[str, dict[str, float]] = {"mrl": {}, "mrl_e": {}, "ff": {}}
    for method in ("mrl", "mrl_e"):
        for m, logits in zip(nesting, encoded[method][2], strict=True):
            heads[method][str(m)] = accuracy(logits, data.test.y)
    for m in ff_dims:
        heads["ff"][str(m)] = accuracy(encoded[f"ff-{m}"][2][0], data.test.y)

    full_train, full_test, _ = encoded[f"ff-{nesting[-1]}"]
    svd = SVDProjection().fit(full_train)
    views = {
        "mrl": prefix_view(*encoded["mrl"][:2]),
        "mrl_e": prefix_view(*encoded["mrl_e"][:2]),
        "ff": lambda m: (encoded[f"ff-{m}"][0][:, :m], encoded[f"ff-{m}"][1][:, :m]),
        "svd": lambda m: (svd.transform(full_train, m), svd.transform(full_test, m)),
        "random": lambda m: (random_features(full_train, m), random_features(full_test, m)),
    }
    test_logits = {
        "mrl": encoded["mrl"][2],
        "ff": {m: encoded[f"ff-{m}"][2][0] for m in ff_dims},
        "mrl_z": encoded["mrl"][:2],
        "ff_full_z": encoded[f"ff-{nesting[-1]}"][:2],
    }
    return views, heads, test_logits


def _retrieval_plans(mrl_z, data: ImageData, nesting: list[int], settings: DemoSettings) -> list[dict]:
    """Index the MRL train embeddings and score full, adaptive and funnel plans with the test queries."""
    train_z, test_z = (z.numpy() for z in mrl_z)
    d = nesting[-1]
    small = [m for m in nesting if m < d][:2] or [d]
    index = MatryoshkaIndex(d, small)
    index.add(train_z)
    queries = np.arange(len(test_z))
    if settings.plan_queries < len(queries):
        generator = torch.Generator().manual_seed(settings.seed)
        queries = torch.randperm(len(test_z), generator=generator)[: settings.plan_queries].numpy()
    plans: list = [FullPlan(), *(AdaptivePlan(ds, 200, d) for ds in small)]
    steps = [(m, max(10, 200 >> i)) for i, m in enumerate(m for m in nesting if m >= small[-1])]
    if len(steps) > 1:
        plans.append(FunnelPlan([*steps[:-1], (d, 10)]))
    return evaluate_plans(index, test_z[queries], data.test.y.numpy()[queries], data.train.y.numpy(), plans)


def _adaptor_comparison(ff_z, nesting: list[int], settings: DemoSettings) -> dict[str, Any]:
    """Make the FF-full (non-Matryoshka) embeddings Matryoshka after the fact, and score how well each prefix keeps
    the full-dim neighbours: raw truncation, PCA, SVD and the learned adaptor."""
    from matryoshka.posthoc.evaluation import fit_and_score

    train_z, test_z = (z.numpy() for z in ff_z)
    test_z = test_z[np.random.default_rng(settings.seed).permutation(len(test_z))[: settings.plan_queries]]
    comparison = fit_and_score(train_z, test_z, nesting, steps=settings.adaptor_steps, seed=settings.seed)
    return {
        "source": f"ff-{nesting[-1]}",
        "queries": len(test_z),
        "recall@10": comparison.recall_json(),
        "fit_seconds": round(comparison.fit_seconds, 1),
    }


def _worst(margins: dict[int, float]) -> tuple[int, float]:
    dim = min(margins, key=margins.get)
    return dim, margins[dim]


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The quality targets (the paper's claims at this scale), each with its measured numbers and whether it holds,
    for the trained heads (classification) and for 1-NN."""
    dims, checks = results["dims"], []
    low = [m for m in dims if m in (2, 4)] or dims[:2]
    for metric, table in (("heads", results["classification"]), ("1-NN", results["knn1"])):

        def margins(other: str, over: list[int], table: dict = table) -> dict[int, float]:
            return {m: table["mrl"][str(m)] - table[other][str(m)] for m in over if str(m) in table[other]}

        dim, gap = _worst(margins("ff", dims))
        checks.append(
            {
                "target": f"{metric}: MRL >= FF-k - 1pt at every dim with an FF model",
                "met": gap >= -0.01,
                "measured": f"worst gap {100 * gap:+.2f}pt at dim {dim}",
            }
        )
        for base in ("svd", "random"):
            dim, gap = _worst(margins(base, low))
            checks.append(
                {
                    "target": f"{metric}: MRL >= {METHOD_LABELS[base]} + 10pt at {' and '.join(map(str, low))} dims",
                    "met": gap >= 0.10,
                    "measured": f"smallest margin {100 * gap:+.2f}pt at dim {dim}",
                }
            )
        tied = {m: table["mrl_e"][str(m)] - table["mrl"][str(m)] for m in dims if m >= 16}
        dim = max(tied, key=lambda m: abs(tied[m]))
        checks.append(
            {
                "target": f"{metric}: MRL-E within 1pt of MRL from 16 dims",
                "met": abs(tied[dim]) <= 0.01,
                "measured": f"largest gap {100 * tied[dim]:+.2f}pt at dim {dim}",
            }
        )
    return checks


def _evaluate(
    views: dict,
    nesting: list[int],
    ff_dims: list[int],
    data: ImageData,
    settings: DemoSettings,
    results: dict[str, Any],
    console: Console,
) -> None:
    """Probes (post-hoc baselines, fresh probe on MRL), 1-NN and retrieval metrics of every method at every dim."""
    from rich.progress import Progress

    jobs = [(method, ff_dims if method == "ff" else nesting) for method in views]
    total = sum(len(d) for _, d in jobs) + len(nesting)
    with Progress(console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("evaluating", total=total)
        for method, dims in jobs:
            needs_probe = method in ("svd", "random")  # the others have trained heads
            ev = evaluate_views(
                views[method],
                dims,
                data.train.y,
                data.test.y,
                probe=needs_probe,
                probe_iters=settings.probe_iters,
                max_queries=settings.knn_queries,
                seed=settings.seed,
                on_dim=lambda _m: progress.advance(task),
            )
            if needs_probe:
                results["classification"][method] = ev["probe"]
            results["knn1"][method] = ev["knn1"]
            results["retrieval"]["per_dim"][method] = ev["retrieval"]
            if not console.is_terminal:
                console.print(f"  {method}: {len(dims)} dims evaluated")
        ev = evaluate_views(
            views["mrl"],
            nesting,
            data.train.y,
            data.test.y,
            knn=False,
            probe_iters=settings.probe_iters,
            on_dim=lambda _m: progress.advance(task),
        )
        results["classification"]["mrl_probe"] = ev["probe"]


def run_demo(
    out: str | Path, settings: DemoSettings | None = None, console: Console | None = None, fresh: bool = False
) -> dict[str, Any]:
    """Train, evaluate and report; returns the results dict also written to ``OUT/results.json``.

    Models already trained (or half-trained) in ``OUT/models`` with the same settings are reused (resumed);
    ``fresh=True`` deletes them first. ``results["timings"]["stages"]`` holds the seconds of each stage.
    """
    from matryoshka.report import write_report

    settings = settings or DemoSettings()
    console = console or Console()
    out = Path(out)
    if fresh and (out / "models").exists():
        shutil.rmtree(out / "models")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    stages: dict[str, float] = {}
    torch.manual_seed(settings.seed)
    nesting, ff_dims = nesting_list(settings.embed_dim, settings.min_dim), settings.ff_nesting()
    with _stage("load data", stages, console):
        data = load_dataset(settings.dataset, seed=settings.seed)
        # A subset serves both as the training set and as the retrieval database.
        data.train = data.train.subset(settings.train_subset, settings.seed)
    with _stage(f"train {2 + len(ff_dims)} models", stages, console):
        models = _train_all(settings, data, out, console)
    with _stage("encode", stages, console):
        views, heads, test_logits = _method_views(models, data, nesting, ff_dims)
    results: dict[str, Any] = {"dataset": settings.dataset, "dims": nesting, "database_size": len(data.train)}
    results |= {"not_run": {"ff": [m for m in nesting if m not in ff_dims]}, "classification": {**heads}}
    results |= {"knn1": {}, "retrieval": {"per_dim": {}}, "adaptive_classification": {}}
    with _stage("evaluate every method at every dim", stages, console):
        _evaluate(views, nesting, ff_dims, data, settings, results, console)
    with _stage("adaptive classification: cascades over the MRL heads", stages, console):
        results["adaptive_classification"] = evaluate_cascades(
            test_logits["mrl"],
            data.test.y,
            nesting,
            test_logits["ff"],
            splits=settings.cascade_splits,
            seed=settings.seed,
        )
    with _stage("adaptive retrieval: search plans over the MRL embeddings", stages, console):
        results["retrieval"]["plans"] = _retrieval_plans(test_logits["mrl_z"], data, nesting, settings)
    if settings.adaptor_steps:
        with _stage("post-hoc adaptor: making the FF-full embeddings Matryoshka", stages, console):
            results["adaptor"] = _adaptor_comparison(test_logits["ff_full_z"], nesting, settings)

    results["targets"] = check_targets(results)
    results["training_seconds"] = {name: round(entry["seconds"], 2) for name, entry in models.items()}
    results["settings"] = asdict(settings)
    results["machine"] = machine_info(settings.device)
    results["method_labels"] = METHOD_LABELS
    results["timings"] = {"stages": stages}
    with _stage("report", stages, console):
        results["timings"]["total_s"] = round(time.perf_counter() - t_start, 1)
        write_report(results, out)
    results["timings"]["total_s"] = round(time.perf_counter() - t_start, 1)
    atomic_write_json(out / "results.json", results)
    return results


def machine_info(device: str) -> dict[str, Any]:
    """Where a run ran: device, GPU name, CPU threads, Python, torch and platform versions."""
    return {
        "device": str(resolve_device(device)),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def load_results(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
