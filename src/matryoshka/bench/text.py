"""Matryoshka vs plain fine-tuning of a text encoder, scored at every dim on held-out WordNet pairs.

    mrl bench text                                            # configs/wordnet_minilm.yaml, out runs/bench_text
    mrl bench text --config configs/wordnet_minilm_quick.yaml --out runs/bench_text_quick
    mrl bench text --config configs/wordnet_minilm_quick.yaml --peer sentence-transformers
    mrl bench text --data debian-pairs --peer sentence-transformers  # the config's recipe on 6,000 Debian pairs

Trains the config twice with the same seed, data and steps: with the Matryoshka loss (``mrl/``) and with the loss at
the full dim only (``plain/``); the base model is scored too. Both runs resume if interrupted. Prints mAP@10,
recall@10 and MRR per dim, checks the goals (the Matryoshka model keeps >= 95% of its full-dim mAP@10 at d/8 and
>= 85% at d/16, beating the plain model there, and is >= the base model at the full dim), and writes
``text_results.json`` and ``text_per_dim.png`` to ``--out``.

``--data debian-pairs`` keeps the config's model and training and replaces its data with 6,000 (synopsis,
description) pairs of this machine's Debian package lists (distinct synopses, a seeded sample, written once to the
bench cache; 80% train, 10% validation, 10% test).

``--peer sentence-transformers`` also trains the same base with sentence-transformers' own trainer and Matryoshka
loss on the same pairs, steps and batch size (``peer/``; its recipe and settings: :mod:`matryoshka.bench.text_peer`),
scores it with the same evaluator on the same test set, and adds two goals: the Matryoshka run is >= the peer at
every dim, and >= 3 points of mAP@10 above it at d/8. Without the peer's training packages it is skipped, in one
line, and the rest runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matryoshka.bench.corpora import CACHE
from matryoshka.bench.text_peer import PEERS, PeerUnavailable, SharedRun
from matryoshka.bench.texts import debian_pairs_file
from matryoshka.data.text_sources import load_text_data
from matryoshka.errors import InputError
from matryoshka.io import atomic_write_json
from matryoshka.registry import Registry
from matryoshka.report.plots import per_dim_plot
from matryoshka.train import ConfigError, load_config
from matryoshka.train.config import TextExperimentConfig
from matryoshka.train.text_trainer import TextTrainer

DEBIAN_PAIRS = 6000
DATA_SETS = Registry("data set")
DATA_SETS.register("config")(lambda: None)  # the config's own data section
DATA_SETS.register("debian-pairs")(
    lambda: {"name": "pairs", "path": str(debian_pairs_file(DEBIAN_PAIRS, CACHE / "text")), "seed": 0}
)

LABELS = {
    "base": "base model (truncated)",
    "plain": "fine-tuned, full-dim loss",
    "mrl": "fine-tuned, Matryoshka loss",
    "peer": "sentence-transformers trainer, MatryoshkaLoss",
}


KEPT_GOALS = {8: 0.95, 16: 0.85}  # d/8 keeps >= 95% of the full-dim score, d/16 >= 85%
PEER_MARGIN_AT_D8 = 0.03  # the Matryoshka run's lead over the peer at d/8 (3 points)


def _closest(nesting: list[int], target: float) -> int:
    return min(nesting, key=lambda m: abs(m - target))


def text_target(results: dict[str, dict[str, dict[str, float]]], nesting: list[int], metric: str) -> dict[str, Any]:
    """The goals: at d/8 and d/16 the Matryoshka model keeps 95% / 85% of its full-dim ``metric`` (and beats the
    plain model there), and at the full dim it is at least as good as the base model. With a ``peer`` in
    ``results``, also: the Matryoshka model is >= the peer at every dim and 3 points above it at d/8; ``met`` is
    all of them."""
    d = nesting[-1]
    mrl, plain = results["mrl"], results["plain"]
    rows = []
    for fraction, goal in KEPT_GOALS.items():
        small = _closest(nesting, d / fraction)
        kept = mrl[str(small)][metric] / mrl[str(d)][metric]
        margin = mrl[str(small)][metric] - plain[str(small)][metric]
        rows.append({"dim": small, "goal": goal, "kept_fraction": kept, "margin_over_plain": margin})
        rows[-1]["met"] = kept >= goal and margin > 0
    full = {"mrl": mrl[str(d)][metric], "base": results["base"][str(d)][metric] if "base" in results else None}
    full["met"] = full["base"] is None or full["mrl"] >= full["base"]
    target = {"metric": metric, "dims": rows, "full_dim": full, "met": full["met"] and all(r["met"] for r in rows)}
    if "peer" in results:
        target["peer"] = peer_target(mrl, results["peer"], nesting, metric)
        target["met"] = target["met"] and target["peer"]["met"]
    return target


def peer_target(
    mrl: dict[str, dict[str, float]], peer: dict[str, dict[str, float]], nesting: list[int], metric: str
) -> dict[str, Any]:
    """The Matryoshka run against the peer: its margin at every dim (goal >= 0) and at d/8 (goal >= 3 points)."""
    margins = {str(m): mrl[str(m)][metric] - peer[str(m)][metric] for m in nesting}
    d8 = _closest(nesting, nesting[-1] / 8)
    every_dim = {"margins": margins, "met": all(v >= 0 for v in margins.values())}
    at_d8 = {"dim": d8, "margin": margins[str(d8)], "goal": PEER_MARGIN_AT_D8}
    at_d8["met"] = at_d8["margin"] >= PEER_MARGIN_AT_D8 - 1e-12  # float noise: 0.63 - 0.60 < 0.03
    return {"every_dim": every_dim, "d8": at_d8, "met": every_dim["met"] and at_d8["met"]}


def run(
    *,
    config: str | Path = "configs/wordnet_minilm.yaml",
    out: Path = Path("runs/bench_text"),
    overrides: Sequence[str] | None = None,
    progress: bool = True,
    peer: str | None = None,
    data: str = "config",
) -> dict[str, Any]:
    """Train ``config`` with and without the Matryoshka loss (and, with ``peer``, the peer on the same pairs and
    steps), print and plot them (and the base model) per dim, check the goals, and write ``text_results.json`` and
    ``text_per_dim.png`` to ``out``; returns the JSON report."""
    config_path, out, overrides = str(config), Path(out), list(overrides or [])
    data_section = DATA_SETS.get(data)()
    configs = {
        name: load_config(
            config_path,
            [*overrides, f"model.matryoshka={str(matryoshka).lower()}", f"train.out_dir={out / name}"]
            + ([] if matryoshka else ["train.evaluate_base=false"]),
            data=data_section,
        )
        for name, matryoshka in (("mrl", True), ("plain", False))
    }
    cfg = configs["mrl"]
    if not isinstance(cfg, TextExperimentConfig):
        raise ConfigError(f"{config_path} is not a text config (data.name must be wordnet or pairs)")
    train_peer, peer_skipped = None, None
    if peer is not None:
        prepare = PEERS.get(peer)  # a misspelt name fails here, before any training
        if cfg.model.frozen_base:
            raise InputError(
                "--peer fine-tunes the whole encoder, and model.frozen_base=true fits only an adaptor: the two do "
                "not share a step budget; run the peer on a config that fine-tunes (model.frozen_base=false)"
            )
        try:
            train_peer = prepare()
        except PeerUnavailable as e:
            peer_skipped = f"peer {peer} skipped: {e}"
            print(peer_skipped)
    data = load_text_data(cfg.data)  # one copy of the pairs for every run: the same pairs by construction
    results: dict[str, dict[str, dict[str, float]]] = {}
    runs: dict[str, Any] = {}
    trainers: dict[str, TextTrainer] = {}
    for name, run_cfg in configs.items():
        print(f"== {name}: {LABELS[name]}")
        trainer = TextTrainer(run_cfg, data=data, progress=progress)
        result = trainer.fit()
        results[name] = result.test
        if result.base is not None:
            results["base"] = result.base
        runs[name] = {"history": result.history, "model": str(result.model_path)}
        nesting = result.nesting
        trainers[name] = trainer
    if train_peer is not None:
        print(f"== peer: {LABELS['peer']}")
        peer_run = train_peer(shared_run(trainers["mrl"], nesting), data, out / "peer", progress)
        if peer_run.reused:
            print(f"peer: reusing {peer_run.model_path} (an earlier run with the same data, steps, batch and seed)")
        else:
            steps = f"{peer_run.steps}/{peer_run.settings['max_steps']} steps"
            print(f"peer: {steps} in {peer_run.train_seconds:.0f} s, saved to {peer_run.model_path}")
        results["peer"] = peer_run.test
        runs["peer"] = {
            "model": str(peer_run.model_path),
            "train_seconds": peer_run.train_seconds,
            "steps": peer_run.steps,
            "settings": peer_run.settings,
            "reused": peer_run.reused,
        }
    results = {key: results[key] for key in LABELS if key in results}
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
    if "peer" in target:
        _print_peer_goals(target["peer"], k)
    out.mkdir(parents=True, exist_ok=True)
    report = {"config": config_path, "overrides": overrides, "nesting": nesting, "results": results}
    report |= {"target": target, "runs": runs}
    if peer is not None:
        report |= {"peer": peer, "peer_skipped": peer_skipped}
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


def shared_run(trainer: TextTrainer, nesting: list[int]) -> SharedRun:
    """What the peer shares with our (finished) Matryoshka run: its data, base, dims, steps, batch, seed, cut and
    precision."""
    cfg = trainer.config
    return SharedRun(
        data=cfg.data.own_keys(),
        base=cfg.model.base,
        nesting=nesting,
        max_steps=trainer.total_steps,
        batch_size=cfg.train.batch_size,
        seed=cfg.train.seed,
        max_seq_length=cfg.model.max_seq_length,
        bf16=trainer.bf16,
        device=str(trainer.device),
        eval_k=cfg.train.eval_k,
        log_every=cfg.train.log_every,
    )


def _print_peer_goals(goals: dict[str, Any], k: int) -> None:
    margins = goals["every_dim"]["margins"]
    worst = min(margins, key=lambda m: margins[m])
    print(
        f"goal: Matryoshka run >= peer at every dim (smallest margin {100 * margins[worst]:+.1f}pt mAP@{k}, at "
        f"{worst} dims): {'met' if goals['every_dim']['met'] else 'NOT met'}"
    )
    d8 = goals["d8"]
    print(
        f"goal: >= +{100 * d8['goal']:.0f} points mAP@{k} at d/8 over the peer ({d8['dim']} dims: "
        f"{100 * d8['margin']:+.1f}pt): {'met' if d8['met'] else 'NOT met'}"
    )
