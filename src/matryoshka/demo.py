"""The main job: the paper's central comparison on Fashion-MNIST, end to end.

Trains MRL, MRL-E and one FF-k model per nesting dim with the same backbone and budget, evaluates every
method at every dim (trained heads, fresh linear probes, 1-NN, mAP@10 / P@10 / R@10), adds the post-hoc
baselines computed from the FF-full features (SVD, random features), and writes ``results.json``,
PNG plots and a self-contained ``report.html``.

Each model trains in its own run folder under ``OUT/models``, so an interrupted demo resumes where it
stopped when run again with the same arguments.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
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
    """What the demo trains and how long; ``quick()`` is the under-90-seconds variant."""

    dataset: str = "fashion_mnist"
    backbone: str = "cnn"
    width: int = 16
    embed_dim: int = 512
    min_dim: int = 8
    epochs: int = 3
    batch_size: int = 256
    lr: float = 3e-3
    train_subset: int | None = None
    knn_queries: int | None = 2000
    probe_iters: int = 60
    cascade_splits: int = 5
    adaptor_steps: int = 1000
    device: str = "auto"
    seed: int = 0

    @classmethod
    def quick(cls) -> DemoSettings:
        return cls(epochs=1, train_subset=8000, knn_queries=1000, probe_iters=40, adaptor_steps=200)


def _train_all(settings: DemoSettings, data: ImageData, out: Path, console: Console) -> dict[str, Any]:
    nesting = nesting_list(settings.embed_dim, settings.min_dim)
    runs: dict[str, dict[str, Any]] = {"mrl": {"head": "mrl"}, "mrl_e": {"head": "mrl_e"}}
    runs.update({f"ff-{k}": {"head": "ff", "ff_dim": k} for k in nesting})
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


def _method_views(models: dict[str, Any], data: ImageData, nesting: list[int]) -> tuple[dict, dict, dict]:
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
    for m in nesting:
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
        "ff": {m: encoded[f"ff-{m}"][2][0] for m in nesting},
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
    if settings.knn_queries is not None and settings.knn_queries < len(queries):
        # The same query subset as the per-dim retrieval metrics (evaluate_views).
        generator = torch.Generator().manual_seed(settings.seed)
        queries = torch.randperm(len(test_z), generator=generator)[: settings.knn_queries].numpy()
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
    if settings.knn_queries is not None:
        test_z = test_z[np.random.default_rng(settings.seed).permutation(len(test_z))[: settings.knn_queries]]
    comparison = fit_and_score(train_z, test_z, nesting, steps=settings.adaptor_steps, seed=settings.seed)
    return {
        "source": f"ff-{nesting[-1]}",
        "queries": len(test_z),
        "recall@10": comparison.recall_json(),
        "fit_seconds": round(comparison.fit_seconds, 1),
    }


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's quality targets, each with its measured numbers and whether it is met."""
    cls, dims = results["classification"], results["dims"]
    checks = []
    gaps = {m: cls["mrl"][str(m)] - cls["ff"][str(m)] for m in dims}
    worst = min(gaps, key=gaps.get)
    checks.append(
        {
            "target": "MRL >= FF - 0.5pt at every dim",
            "met": gaps[worst] >= -0.005,
            "measured": f"worst gap {100 * gaps[worst]:+.2f}pt at dim {worst}",
        }
    )
    for base in ("svd", "random"):
        small = [m for m in dims if m <= 16]
        margins = {m: cls["mrl"][str(m)] - cls[base][str(m)] for m in small}
        w = min(margins, key=margins.get)
        checks.append(
            {
                "target": f"MRL >= {METHOD_LABELS[base]} + 10pt at dims <= 16",
                "met": margins[w] >= 0.10,
                "measured": f"smallest margin {100 * margins[w]:+.2f}pt at dim {w}",
            }
        )
    e_gaps = {m: cls["mrl_e"][str(m)] - cls["mrl"][str(m)] for m in dims if m >= 16}
    w = min(e_gaps, key=lambda m: -abs(e_gaps[m]))
    checks.append(
        {
            "target": "MRL-E within 1pt of MRL from 16 dims",
            "met": all(abs(g) <= 0.01 for g in e_gaps.values()),
            "measured": f"largest gap {100 * e_gaps[w]:+.2f}pt at dim {w}",
        }
    )
    return checks


def run_demo(
    out: str | Path, settings: DemoSettings | None = None, console: Console | None = None, fresh: bool = False
) -> dict[str, Any]:
    """Train, evaluate and report; returns the results dict also written to ``OUT/results.json``.

    Models already trained (or half-trained) in ``OUT/models`` with the same settings are reused (resumed);
    ``fresh=True`` deletes them first.
    """
    from matryoshka.report import write_report

    settings = settings or DemoSettings()
    console = console or Console()
    out = Path(out)
    if fresh and (out / "models").exists():
        shutil.rmtree(out / "models")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    torch.manual_seed(settings.seed)
    data = load_dataset(settings.dataset, seed=settings.seed)
    # A subset serves both as the training set and as the retrieval database.
    data.train = data.train.subset(settings.train_subset, settings.seed)
    nesting = nesting_list(settings.embed_dim, settings.min_dim)

    models = _train_all(settings, data, out, console)
    t_trained = time.perf_counter()
    console.print("[bold]evaluating every method at every dim[/bold]")
    views, heads, test_logits = _method_views(models, data, nesting)
    results: dict[str, Any] = {
        "dataset": settings.dataset,
        "dims": nesting,
        "database_size": len(data.train),
        "classification": {**heads},
        "knn1": {},
        "retrieval": {"per_dim": {}},
        "adaptive_classification": {},
    }
    from rich.progress import Progress

    with Progress(console=console) as progress:
        task = progress.add_task("evaluating", total=len(views) * len(nesting) + len(nesting))
        for method, view in views.items():
            # Trained heads already give MRL / MRL-E / FF classification; the post-hoc baselines need probes.
            needs_probe = method in ("svd", "random")
            ev = evaluate_views(
                view,
                nesting,
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
    console.print("[bold]adaptive classification: cascades over the MRL heads[/bold]")
    results["adaptive_classification"] = evaluate_cascades(
        test_logits["mrl"], data.test.y, nesting, test_logits["ff"], splits=settings.cascade_splits, seed=settings.seed
    )
    console.print("[bold]adaptive retrieval: search plans over an index of the MRL embeddings[/bold]")
    results["retrieval"]["plans"] = _retrieval_plans(test_logits["mrl_z"], data, nesting, settings)
    console.print("[bold]post-hoc adaptor: making the FF-full embeddings Matryoshka[/bold]")
    results["adaptor"] = _adaptor_comparison(test_logits["ff_full_z"], nesting, settings)
    t_evaluated = time.perf_counter()

    results["targets"] = check_targets(results)
    results["training_seconds"] = {name: round(entry["seconds"], 2) for name, entry in models.items()}
    results["timings"] = {"train_s": round(t_trained - t_start, 1), "evaluate_s": round(t_evaluated - t_trained, 1)}
    results["settings"] = asdict(settings)
    results["machine"] = {
        "device": str(resolve_device(settings.device)),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    results["method_labels"] = METHOD_LABELS
    results["timings"]["total_s"] = round(time.perf_counter() - t_start, 1)
    write_report(results, out)
    atomic_write_json(out / "results.json", results)
    return results


def load_results(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
