"""Matryoshka vs plain fine-tuning of a text encoder, scored at every dim on held-out WordNet pairs.

    mrl bench text                                            # configs/wordnet_minilm.yaml, out runs/bench_text
    mrl bench text --config configs/wordnet_minilm_quick.yaml --out runs/bench_text_quick

Trains the config twice with the same seed, data and steps: with the Matryoshka loss (``mrl/``) and with the loss at
the full dim only (``plain/``); the base model is scored too. Both runs resume if interrupted. Prints mAP@10,
recall@10 and MRR per dim, checks the goals (the Matryoshka model keeps >= 95% of its full-dim mAP@10 at d/8 and
>= 85% at d/16, beating the plain model there, and is >= the base model at the full dim), and writes
``text_results.json`` and ``text_per_dim.png`` to ``--out``.
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


KEPT_GOALS = {8: 0.95, 16: 0.85}  # d/8 keeps >= 95% of the full-dim score, d/16 >= 85%


def text_target(results: dict[str, dict[str, dict[str, float]]], nesting: list[int], metric: str) -> dict[str, Any]:
    """The goals: at d/8 and d/16 the Matryoshka model keeps 95% / 85% of its full-dim ``metric`` (and beats the
    plain model there), and at the full dim it is at least as good as the base model."""
    d = nesting[-1]
    mrl, plain = results["mrl"], results["plain"]
    rows = []
    for fraction, goal in KEPT_GOALS.items():
        small = min(nesting, key=lambda m: abs(m - d / fraction))
        kept = mrl[str(small)][metric] / mrl[str(d)][metric]
        margin = mrl[str(small)][metric] - plain[str(small)][metric]
        rows.append({"dim": small, "goal": goal, "kept_fraction": kept, "margin_over_plain": margin})
        rows[-1]["met"] = kept >= goal and margin > 0
    full = {"mrl": mrl[str(d)][metric], "base": results["base"][str(d)][metric] if "base" in results else None}
    full["met"] = full["base"] is None or full["mrl"] >= full["base"]
    return {"metric": metric, "dims": rows, "full_dim": full, "met": full["met"] and all(r["met"] for r in rows)}


def run(
    *,
    config: str | Path = "configs/wordnet_minilm.yaml",
    out: Path = Path("runs/bench_text"),
    overrides: Sequence[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``config`` with and without the Matryoshka loss, print and plot both (and the base model) per dim, check
    the goals, and write ``text_results.json`` and ``text_per_dim.png`` to ``out``; returns the JSON report."""
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
    for row in target["dims"]:
        print(
            f"goal at {row['dim']} dims: Matryoshka keeps {100 * row['kept_fraction']:.1f}% of its full-dim mAP@{k} "
            f"(goal >= {100 * row['goal']:.0f}%), {100 * row['margin_over_plain']:+.1f}pt over plain fine-tuning "
            f"(goal > 0): {'met' if row['met'] else 'NOT met'}"
        )
    full = target["full_dim"]
    if full["base"] is not None:
        print(
            f"goal at {nesting[-1]} dims: Matryoshka {100 * full['mrl']:.1f} vs base model {100 * full['base']:.1f} "
            f"mAP@{k} (goal >=): {'met' if full['met'] else 'NOT met'}"
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
