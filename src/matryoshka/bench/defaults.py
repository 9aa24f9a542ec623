"""Do the library's defaults keep MRL's promise on data they were not tuned on? MRL against FF-k at every dim.

    mrl bench defaults                                  # every data set below that this machine has
    mrl bench defaults --datasets digits,icons
    mrl bench defaults --timing            # time per step and per epoch of each source (3 epochs of the MRL model)

For each data set, the config gives only ``data:`` and the model's size (``embed_dim``, ``min_dim``); everything
else is the library default. One MRL model and one FF-k model per nesting dim k (``model.head: ff``) are trained
with the same defaults. Goal: MRL >= FF-k - 1 point at every dim, for its own heads (test accuracy) and for 1-NN
(cosine on the re-normalised prefix, training split as the database, every test example a query), and at the full
dim MRL within 0.5 points of FF-d. Trained runs are kept in ``OUT/<data set>/`` and reused by the next run.

The data sets (all real, all offline) are described in ``default_suites.py``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from matryoshka.bench.default_suites import SUITES
from matryoshka.errors import InputError
from matryoshka.io import atomic_write_json
from matryoshka.train.config import apply_override

HEAD_MARGIN = 0.01  # MRL may trail FF-k by at most 1 point at a nesting dim
FULL_MARGIN = 0.005  # and by at most 0.5 points at the full dim


def _train_and_score(raw: dict[str, Any], data: Any, out: Path) -> dict[str, Any]:
    """Train one model (or resume / reuse it) and score its heads and 1-NN at each of its dims on the test split."""
    from matryoshka.evaluate.metrics import accuracy
    from matryoshka.evaluate.per_dim import evaluate_views, prefix_view
    from matryoshka.inference import encode_and_classify
    from matryoshka.train import Trainer, load_model, parse_config

    reused = (out / "config.json").exists()  # written last, after the weights (save_model): the run finished
    t0 = time.perf_counter()
    if reused:  # a finished run of this very config (the folder is keyed by it): scored again, not trained
        model, _ = load_model(out)
    else:
        cfg = parse_config({**raw, "train": {**raw.get("train", {}), "out_dir": str(out)}})
        model = Trainer(cfg, data=data, progress=False).fit().model
    seconds = time.perf_counter() - t0
    train_z, _ = encode_and_classify(model, data.train.x, with_logits=False)
    test_z, logits = encode_and_classify(model, data.test.x)
    knn = evaluate_views(prefix_view(train_z, test_z), model.nesting, data.train.y, data.test.y, probe=False)["knn1"]
    heads = {str(m): accuracy(lg, data.test.y) for m, lg in zip(model.nesting, logits, strict=True)}
    scores = {"head": heads, "knn1": {str(m): float(v) for m, v in knn.items()}, "seconds": round(seconds, 1)}
    return scores | ({"reused": True} if reused else {})


def _text_suite(raw: dict[str, Any], out: Path, console: Console, seeds: int = 1) -> dict[str, Any]:
    """The fast path with its defaults: one MRL adaptor and an adaptor per k, on embeddings encoded once (cached)."""
    import torch

    from matryoshka.data.text_sources import load_text_data
    from matryoshka.evaluate.text import prefix_retrieval_metrics
    from matryoshka.nn.text_encoder import encode_texts, load_sentence_transformer
    from matryoshka.posthoc import MatryoshkaAdaptor
    from matryoshka.train import parse_config

    cfg = parse_config(raw)
    data = load_text_data(cfg.data)
    train = data.train
    queries, corpus, relevant = data.retrieval_set("test")
    texts = sorted({p.query for p in train} | {p.document for p in train} | set(queries) | set(corpus))
    cache = out / "embeddings.npy"
    if cache.exists():
        z = np.load(cache)
    else:
        base = load_sentence_transformer(cfg.model.base)
        base.max_seq_length = cfg.model.max_seq_length
        t0 = time.perf_counter()
        z = encode_texts(base, texts, progress=True).numpy()
        console.print(f"  encoded {len(texts)} texts in {time.perf_counter() - t0:.0f} s")
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, z)
    row = {t: i for i, t in enumerate(texts)}
    q, d = (z[[row[getattr(p, side)] for p in train]] for side in ("query", "document"))
    train_rows = z[sorted({row[p.query] for p in train} | {row[p.document] for p in train})]
    test_q, test_d = z[[row[t] for t in queries]], z[[row[t] for t in corpus]]
    nesting = cfg.model.resolved_nesting(z.shape[1])
    scores: dict[str, Any] = {}
    runs = {"mrl": nesting} | {f"ff-{k}": [k] for k in nesting}
    key = f"map@{cfg.train.eval_k}"
    for i, (run, dims) in enumerate(runs.items(), start=1):
        console.print(f"  debian-pairs: fitting {i}/{len(runs)} ({run})")
        per_seed = []
        for seed in range(seeds):
            t0 = time.perf_counter()
            steps, lr = cfg.train.adaptor_steps, cfg.optim.adaptor_lr
            weights = cfg.model.resolved_loss_weights(dims) if run == "mrl" else None  # FF-k: one dim, one term
            seeded = cfg.train.seed + seed
            adaptor = MatryoshkaAdaptor(nesting=dims, steps=steps, lr=lr, dim_weights=weights, seed=seeded)
            adaptor.fit(train_rows, pairs=(q, d))
            aq, ad = (torch.from_numpy(adaptor.transform(x, normalize=False)) for x in (test_q, test_d))
            metrics = prefix_retrieval_metrics(aq, ad, relevant, dims, cfg.train.eval_k)
            per_seed.append({key: {str(m): v[key] for m, v in metrics.items()}, "seconds": time.perf_counter() - t0})
        scores[run] = mean_scores(per_seed)
    checks = goal_checks(scores, nesting)
    return {"dims": nesting, "train": len(train), "test": len(queries), "scores": scores, "checks": checks}


def run_suite(
    name: str,
    out: Path,
    quick: bool = False,
    console: Console | None = None,
    seeds: int = 1,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """MRL and FF-k (every nesting dim) with the defaults on one data set; returns scores and the goal checks.

    ``seeds`` > 1 trains each model with seeds 0..seeds-1 and compares the means; ``overrides`` (``key=value``, as
    ``--set``) change a default for MRL and FF-k alike, to study one.
    """
    from matryoshka.data import load_data
    from matryoshka.train import parse_config

    console = console or Console()
    suite = SUITES[name]
    raw: dict[str, Any] = {"data": suite.data(quick), "model": dict(suite.model)}
    if quick and raw["data"]["name"] != "pairs":  # a check that it runs: a small model and a short schedule
        raw["model"].update(embed_dim=16, min_dim=4)
        raw["train"] = {"epochs": 2}
    for item in overrides:
        apply_override(raw, item)
    if raw["data"]["name"] == "pairs":
        return _text_suite(raw, out / name, console, seeds)
    cfg = parse_config(raw)
    data = load_data(cfg.data)
    nesting = cfg.model.resolved_nesting()
    scores: dict[str, Any] = {}
    runs = {"mrl": {}} | {f"ff-{k}": {"head": "ff", "ff_dim": k} for k in nesting}
    reused = 0
    for i, (run, head) in enumerate(runs.items(), start=1):
        console.print(f"  {name}: training {i}/{len(runs)} ({run})" + (f" x {seeds} seeds" if seeds > 1 else ""))
        per_seed = []
        for seed in range(seeds):
            train = {**raw.get("train", {})}
            train["seed"] = train.get("seed", 0) + seed
            model = {**raw["model"], **head}
            if run != "mrl":  # FF-k has one loss term: the weights' schedule does not apply (nor key its run)
                model.pop("loss_weights_schedule", None)
            spec = {**raw, "model": model, "train": train}
            key = _run_key(parse_config(spec).model_dump())
            per_seed.append(_train_and_score(spec, data, out / name / f"{run}-{key}"))
            reused += per_seed[-1].pop("reused", False)
        scores[run] = mean_scores(per_seed)
    if reused:
        console.print(f"  {name}: {reused} of {len(runs) * seeds} trained runs reused from {out / name}")
    checks = goal_checks(scores, nesting)
    return {"dims": nesting, "train": len(data.train), "test": len(data.test), "scores": scores, "checks": checks}


def _run_key(config: dict[str, Any]) -> str:
    """Runs are keyed by their resolved config: one trained under other defaults is trained again, not resumed."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]


def mean_scores(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Scores of several seeds as one: each metric's per-dim mean, the seconds summed, the seeds' own kept."""
    first = per_seed[0]
    mean = {
        metric: {m: float(np.mean([r[metric][m] for r in per_seed])) for m in values}
        for metric, values in first.items()
        if isinstance(values, dict)
    }
    mean["seconds"] = round(sum(r["seconds"] for r in per_seed), 1)
    if len(per_seed) > 1:
        mean["seeds"] = [{k: v for k, v in r.items() if k != "seconds"} for r in per_seed]
    return mean


def goal_checks(scores: dict[str, Any], nesting: list[int]) -> dict[str, Any]:
    """Per metric and dim: MRL - FF-k, and whether it meets the margin (1 point; 0.5 at the full dim)."""
    checks: dict[str, Any] = {}
    for metric in (k for k, v in scores["mrl"].items() if isinstance(v, dict)):
        for m in nesting:
            gap = scores["mrl"][metric][str(m)] - scores[f"ff-{m}"][metric][str(m)]
            margin = FULL_MARGIN if m == nesting[-1] else HEAD_MARGIN
            checks[f"{metric}@{m}"] = {"gap": gap, "met": gap >= -margin - 1e-9}
    return checks


def print_suite(name: str, result: dict[str, Any], console: Console) -> None:
    seeds = len(result["scores"]["mrl"].get("seeds", [None]))
    title = f"{name}: MRL vs FF-k with the defaults ({result['train']} train rows, {result['test']} test"
    table = Table(title=title + (f"; the mean of {seeds} seeds)" if seeds > 1 else ")"))
    s = result["scores"]
    metrics = [k for k, v in s["mrl"].items() if isinstance(v, dict)]
    label = {"head": "head", "knn1": "1-NN"}
    table.add_column("dim", justify="right")
    for metric in metrics:
        for col in (f"MRL {label.get(metric, metric)}", f"FF-k {label.get(metric, metric)}", "gap"):
            table.add_column(col, justify="right")
    table.add_column("goal", justify="right")
    for m in result["dims"]:
        row = [str(m)]
        met = True
        for metric in metrics:
            check = result["checks"][f"{metric}@{m}"]
            met &= check["met"]
            row += [f"{s['mrl'][metric][str(m)]:.1%}", f"{s[f'ff-{m}'][metric][str(m)]:.1%}", f"{check['gap']:+.1%}"]
        row.append("met" if met else "[red]NOT met[/red]")
        table.add_row(*row)
    console.print(table)


def run_timings(
    out: str | Path, datasets: list[str] | None = None, epochs: int = 3, console: Console | None = None
) -> dict[str, Any]:
    """Time per step and per epoch (validation included; the median of ``epochs`` epochs) of the MRL model with the
    defaults on each image / table data set; writes ``OUT/timings.json``."""
    from matryoshka.data import load_data
    from matryoshka.train import Trainer, parse_config
    from matryoshka.train.trainer import default_epochs

    console = console or Console()
    out = Path(out)
    table = Table(title=f"time with the defaults (batch 64; the median of {epochs} epochs, validation included)")
    for col in ("data set", "train rows", "steps / epoch", "ms / step", "s / epoch", "default epochs", "whole run"):
        table.add_column(col, justify="right")
    results: dict[str, Any] = {}
    for name in datasets or [n for n, suite in SUITES.items() if suite.model.get("backbone")]:
        suite = SUITES[name]
        if suite.needs is not None and not suite.needs.exists():
            console.print(f"[yellow]{name}: skipped ({suite.needs} is missing)[/yellow]")
            continue
        raw = {"data": suite.data(False), "model": dict(suite.model)}
        data = load_data(parse_config(raw).data)
        cfg = parse_config({**raw, "train": {"epochs": epochs, "out_dir": str(out / "timing" / name)}})
        trainer = Trainer(cfg, data=data, progress=False, resume=False)
        history = trainer.fit().history
        epoch_s = sorted(h["seconds"] for h in history)[len(history) // 2]
        steps = trainer.steps_per_epoch
        results[name] = {
            "train_rows": len(trainer.train_split),
            "steps_per_epoch": steps,
            "ms_per_step": 1000 * epoch_s / steps,
            "s_per_epoch": epoch_s,
            "default_epochs": default_epochs(steps),
        }
        r = results[name]
        table.add_row(
            name,
            str(r["train_rows"]),
            str(steps),
            f"{r['ms_per_step']:.1f}",
            f"{epoch_s:.2f}",
            str(r["default_epochs"]),
            f"~{epoch_s * r['default_epochs']:.0f} s",
        )
    console.print(table)
    atomic_write_json(out / "timings.json", results)
    return results


def run_defaults(
    out: str | Path,
    datasets: list[str] | None = None,
    quick: bool = False,
    console: Console | None = None,
    seeds: int = 1,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Every data set asked for (default: all this machine has); writes ``OUT/defaults.json``. ``seeds`` and
    ``overrides`` as for :func:`run_suite`."""
    console = console or Console()
    out = Path(out)
    names = datasets or list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise ValueError(f"unknown data set {unknown[0]!r}; choose from {', '.join(SUITES)}")
    if seeds < 1:
        raise InputError(f"--seeds must be at least 1, got {seeds}")
    results: dict[str, Any] = {"quick": quick, "seeds": seeds, "overrides": list(overrides), "skipped": {}}
    for name in names:
        needs = SUITES[name].needs
        if needs is not None and not needs.exists():
            results["skipped"][name] = f"{needs} is missing"
            console.print(f"[yellow]{name}: skipped ({needs} is missing)[/yellow]")
            continue
        results[name] = run_suite(name, out, quick, console, seeds, overrides)
        print_suite(name, results[name], console)
        atomic_write_json(out / "defaults.json", results)
    ran = [n for n in names if n in results]
    met = all(c["met"] for n in ran for c in results[n]["checks"].values())
    console.print(f"goal (MRL >= FF-k - 1 pt at every dim, full dim within 0.5 pt): {'met' if met else 'NOT met'}")
    results["met"] = met
    atomic_write_json(out / "defaults.json", results)
    return results
