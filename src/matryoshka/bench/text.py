"""Matryoshka vs plain fine-tuning of a text encoder, scored at every dim on held-out WordNet pairs.

    mrl bench text                                            # configs/wordnet_minilm.yaml, out runs/bench_text
    mrl bench text --config configs/wordnet_minilm_quick.yaml --out runs/bench_text_quick

Trains the config twice with the same seed, data and steps: with the Matryoshka loss (``mrl/``) and with the loss at
the full dim only (``plain/``); the base model is scored too. Both runs resume if interrupted. Prints mAP@10,
recall@10 and MRR per dim, checks the target (at d/8 the Matryoshka model keeps >= 95% of its full-dim mAP@10 and
beats the plain model at d/8), and writes ``text_results.json`` and ``text_per_dim.png`` to ``--out``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matryoshka.io import atomic_write_json
from matryoshka.report.plots import per_dim_plot
from matryoshka.train import ConfigError, load_config
from matryoshka.train.config import TextExperimentConfig
from matryoshka.train.text_trainer import TextTrainer

LABELS = {"base": "base model (truncated)", "plain": "fine-tuned, full-dim loss", "mrl": "fine-tuned, Matryoshka loss"}


def text_target(results: dict[str, dict[str, dict[str, float]]], nesting: list[int], metric: str) -> dict[str, Any]:
    """The d/8 check: kept fraction of the Matryoshka model's full-dim score, and its margin over the plain model."""
    d = nesting[-1]
    small = min(nesting, key=lambda m: abs(m - d / 8))
    mrl, plain = results["mrl"], results["plain"]
    kept = mrl[str(small)][metric] / mrl[str(d)][metric]
    margin = mrl[str(small)][metric] - plain[str(small)][metric]
    return {
        "dim": small,
        "metric": metric,
        "kept_fraction": kept,
        "margin_over_plain": margin,
        "met": kept >= 0.95 and margin > 0,
    }


def run(
    *,
    config: str | Path = "configs/wordnet_minilm.yaml",
    out: Path = Path("runs/bench_text"),
    overrides: Sequence[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``config`` with and without the Matryoshka loss, print and plot both (and the base model) per dim, check
    the d/8 target, and write ``text_results.json`` and ``text_per_dim.png`` to ``out``; returns the JSON report."""
    config_path, out, overrides = str(config), Path(out), list(overrides or [])
    results: dict[str, dict[str, dict[str, float]]] = {}
    runs: dict[str, Any] = {}
    for name, matryoshka in (("mrl", True), ("plain", False)):
        cfg = load_config(
            config_path,
            [*overrides, f"model.matryoshka={str(matryoshka).lower()}", f"train.out_dir={out / name}"]
            + ([] if matryoshka else ["train.evaluate_base=false"]),
        )
        if not isinstance(cfg, TextExperimentConfig):
            raise ConfigError(f"{config_path} is not a text config (data.name must be wordnet)")
        print(f"== {name}: {LABELS[name]}")
        result = TextTrainer(cfg, progress=progress).fit()
        results[name] = result.test
        if result.base is not None:
            results["base"] = result.base
        runs[name] = {"history": result.history, "model": str(result.model_path)}
        nesting = result.nesting
    results = {key: results[key] for key in ("base", "plain", "mrl") if key in results}
    k = cfg.train.eval_k
    print(f"\n{'dim':>5}" + "".join(f"{name:>24}" for name in results) + f"     mAP@{k} / recall@{k} / MRR (%)")
    for m in nesting:
        cells = [
            f"{100 * r[str(m)][f'map@{k}']:.1f} / {100 * r[str(m)][f'r@{k}']:.1f} / {100 * r[str(m)]['mrr']:.1f}"
            for r in results.values()
        ]
        print(f"{m:>5}" + "".join(f"{c:>24}" for c in cells))
    target = text_target(results, nesting, f"map@{k}")
    print(
        f"\ntarget at {target['dim']} dims (d/8): Matryoshka keeps {100 * target['kept_fraction']:.1f}% of its "
        f"full-dim mAP@{k} (goal >= 95%), {100 * target['margin_over_plain']:+.1f}pt over plain fine-tuning "
        f"(goal > 0): {'met' if target['met'] else 'NOT met'}"
    )
    out.mkdir(parents=True, exist_ok=True)
    report = {"config": config_path, "overrides": overrides, "nesting": nesting, "results": results}
    report |= {"target": target, "runs": runs}
    atomic_write_json(out / "text_results.json", report)
    per_dim_plot(
        {name: {dim: v[f"map@{k}"] for dim, v in r.items()} for name, r in results.items()},
        nesting,
        LABELS,
        f"mAP@{k} (%)",
        "WordNet lemma -> gloss retrieval, held-out synsets",
        out / "text_per_dim.png",
    )
    print(f"wrote {out / 'text_results.json'} and {out / 'text_per_dim.png'}")
    return report
