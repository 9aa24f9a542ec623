"""The peer of ``mrl bench text``: sentence-transformers' own trainer and Matryoshka loss, on our run's pairs and
steps, scored by our evaluator on our test set.

    mrl bench text --config configs/wordnet_minilm_quick.yaml --peer sentence-transformers

The recipe is the one sentence-transformers documents for Matryoshka embeddings (its ``matryoshka_nli.py``
training example): ``MatryoshkaLoss(model, MultipleNegativesRankingLoss(model), matryoshka_dims=<our nesting>)``
trained by ``SentenceTransformerTrainer`` with ``batch_sampler=BatchSamplers.NO_DUPLICATES`` (their advice for
in-batch negatives) and a linear warm-up over the first 10% of the steps. Set here to match our run, and why:

* the same base model, the same training pairs as an HF ``datasets.Dataset`` (columns anchor, positive, and
  negative where the data has hard negatives; rows in the data's order, shuffled by the sampler), ``max_steps`` and
  ``per_device_train_batch_size`` equal to our run's steps and batch size, ``seed`` = the config's seed;
* ``max_seq_length`` = the config's: their recipe leaves the cut optional, and one cut for every model keeps the
  inputs, and the scoring, alike;
* ``dataloader_drop_last=True``: every step a full batch, as in our loop (their default keeps a short last batch);
* the warm-up given as ``warmup_steps=ceil(0.1 * max_steps)``, which is what the recipe's ``warmup_ratio=0.1`` comes
  to in every transformers release (v5 deprecates the ratio argument);
* the CPU when our run is on the CPU (``use_cpu``), bf16 only when our run uses it;
* nothing written but the final model, into ``OUT/peer/model`` (``save_strategy="no"``, ``report_to="none"``), and
  progress the way our runs show it (:mod:`matryoshka.progress`: a bar on a terminal, lines in a log) instead of
  the trainer's tqdm bars and printed log dicts.

Kept at their defaults, which the recipe does not change: learning rate 5e-5, linear decay after the warm-up,
AdamW (``adamw_torch``, or ``adamw_torch_fused`` with recent transformers and torch) with weight decay 0, gradient
clipping at norm 1.0; the MNRL loss with scale 20 and cosine similarity, queries ranking documents only (our loss
ranks both ways); weight 1 for every dim. Every training argument it ran with is recorded in ``results.json``.
With more than one visible GPU their trainer runs DataParallel, ``per_device_train_batch_size`` on each (a larger
batch than ours): run the bench with one (``CUDA_VISIBLE_DEVICES=0``), as our runs use one.

A finished peer is reused: ``OUT/peer/results.json`` holds its scores under a key of everything that shapes it
(data, base, nesting, steps, batch size, seed, cut, precision, library versions); an identical later run loads
the scores instead of training again.
"""

from __future__ import annotations

import functools
import importlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from matryoshka.data.pairs import PairsData
from matryoshka.data.wordnet import WordNetData
from matryoshka.errors import MatryoshkaError
from matryoshka.evaluate.text import evaluate_text_retrieval
from matryoshka.io import atomic_write_json
from matryoshka.nn.text_encoder import (
    bars_on_terminal,
    import_sentence_transformers,
    load_sentence_transformer,
    save_sentence_transformer,
)
from matryoshka.progress import StepProgress
from matryoshka.registry import Registry
from matryoshka.train.text_trainer import system_info

WARMUP_FRACTION = 0.1  # the recipe's warmup_ratio
RECORDED_ARGS = (  # the training arguments the peer ran with, set here or left at their defaults
    "max_steps",
    "per_device_train_batch_size",
    "seed",
    "batch_sampler",
    "warmup_steps",
    "learning_rate",
    "lr_scheduler_type",
    "optim",
    "weight_decay",
    "max_grad_norm",
    "dataloader_drop_last",
    "bf16",
    "use_cpu",
    "save_strategy",
    "report_to",
)


class PeerUnavailable(MatryoshkaError, RuntimeError):
    """A peer whose training packages do not import here."""


@dataclass(frozen=True)
class SharedRun:
    """What the peer takes from our run so that both train alike: data, base, dims, step budget, seed, precision."""

    data: dict[str, Any]  # the config's data section (its own keys)
    base: str
    nesting: list[int]
    max_steps: int
    batch_size: int
    seed: int
    max_seq_length: int
    bf16: bool
    device: str
    eval_k: int
    log_every: int = 0


@dataclass
class PeerRun:
    test: dict[str, dict[str, float]]  # dim -> metrics, as our runs' results
    train_seconds: float
    steps: int
    model_path: Path
    settings: dict[str, Any]
    reused: bool = False


TextData = WordNetData | PairsData
PeerTrainer = Callable[[SharedRun, TextData, Path, bool], PeerRun]

PEERS: Registry[Callable[[], PeerTrainer]] = Registry("text peer")
"""Peer name -> a function that imports the peer's packages (:class:`PeerUnavailable` when one is missing) and
returns its trainer: ``train(shared, data, out, progress) -> PeerRun``, writing under ``out``."""


@PEERS.register("sentence-transformers")
def sentence_transformers_peer() -> PeerTrainer:
    """``SentenceTransformerTrainer`` with their ``MatryoshkaLoss``, once its training packages import."""
    for module, name in (("datasets", None), ("accelerate", None), ("sentence_transformers", "SentenceTransformer")):
        try:
            imported = importlib.import_module(module)
            if name is not None:
                getattr(imported, name + "Trainer")
        except (ImportError, AttributeError) as e:
            what = f"{module}.{name}Trainer" if name else module
            raise PeerUnavailable(f"{what} does not import ({e}); pip install 'matryoshka-mrl[text]'") from None
    return train_with_sentence_transformers


def peer_key(shared: SharedRun) -> dict[str, Any]:
    """Everything that shapes the peer's model: an earlier run is reused only when its key is this one."""
    import sentence_transformers
    import transformers

    versions = {"sentence_transformers": sentence_transformers.__version__, "transformers": transformers.__version__}
    key = {**asdict(shared), "versions": versions}
    for setting in ("device", "log_every"):  # where and how chattily it runs does not change the model
        key.pop(setting)
    return json.loads(json.dumps(key))  # as it reads back from the file (tuples become lists)


def train_with_sentence_transformers(shared: SharedRun, data: TextData, out: Path, progress: bool = True) -> PeerRun:
    """Train the peer on ``data``'s training pairs with ``shared``'s budget, save it to ``out/model``, score it on
    ``data``'s test split and write ``out/results.json``; an identical finished run in ``out`` is reused."""
    out = Path(out)
    key = peer_key(shared)
    if (earlier := _finished_run(out, key)) is not None:
        return earlier
    st = import_sentence_transformers()
    losses = _first_module("sentence_transformers.sentence_transformer.losses", "sentence_transformers.losses")
    samplers = _first_module("sentence_transformers.base.sampler", "sentence_transformers.training_args")
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback

    model = load_sentence_transformer(shared.base, shared.device)
    model.max_seq_length = shared.max_seq_length
    pairs = data.train
    loss = losses.MatryoshkaLoss(model, losses.MultipleNegativesRankingLoss(model), matryoshka_dims=shared.nesting)
    cadence = {"logging_steps": shared.log_every} if shared.log_every else {"logging_strategy": "no"}
    args = st.SentenceTransformerTrainingArguments(
        output_dir=str(out),  # stays empty: nothing is saved on the way
        max_steps=shared.max_steps,
        per_device_train_batch_size=shared.batch_size,
        seed=shared.seed,
        batch_sampler=samplers.BatchSamplers.NO_DUPLICATES,
        warmup_steps=math.ceil(WARMUP_FRACTION * shared.max_steps),
        dataloader_drop_last=True,
        bf16=shared.bf16,
        use_cpu=torch.device(shared.device).type == "cpu",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,  # our StepProgress draws the bar and writes the lines
        **cadence,
    )
    with _no_model_card_bar(model):
        trainer = st.SentenceTransformerTrainer(
            model=model, args=args, train_dataset=Dataset.from_dict(training_columns(pairs)), loss=loss
        )
    trainer.remove_callback(PrinterCallback)  # it prints each log dict; our lines say the same
    report = StepProgress(0, shared.max_steps, shared.max_steps, shared.log_every, enabled=progress, name="peer")
    trainer.add_callback(_progress_callback(report))
    started = time.perf_counter()
    with report:
        report.start_epoch(1, 1, 0)
        trainer.train()
    train_seconds = time.perf_counter() - started
    model.eval()
    save_sentence_transformer(model, out / "model")
    queries, corpus, relevant = data.retrieval_set("test")
    scores = evaluate_text_retrieval(model, queries, corpus, relevant, shared.nesting, shared.eval_k)
    settings = {name: _value(getattr(args, name)) for name in RECORDED_ARGS}
    settings |= {"loss": "MatryoshkaLoss(MultipleNegativesRankingLoss)", "matryoshka_dims": shared.nesting}
    settings["max_seq_length"] = shared.max_seq_length
    run = PeerRun(
        test={str(m): v for m, v in scores.items()},
        train_seconds=train_seconds,
        steps=trainer.state.global_step,
        model_path=out / "model",
        settings=settings,
    )
    results = {"key": key, **asdict(run), "model_path": str(run.model_path)}
    results |= {"train_pairs": len(pairs), "test_queries": len(queries), "test_corpus": len(corpus)}
    results["machine"] = system_info(torch.device(shared.device))
    results.pop("reused")
    atomic_write_json(out / "results.json", results)  # written last: its presence means a whole run
    return run


def training_columns(pairs: list[Any]) -> dict[str, list[str]]:
    """The peer's training set, in the pairs' order: anchor and positive, and negative where the data has hard
    negatives (a pairs file has one on every row or on none)."""
    columns = {"anchor": [p.query for p in pairs], "positive": [p.document for p in pairs]}
    negatives = [n for p in pairs if (n := getattr(p, "negative", None)) is not None]
    if negatives:
        columns["negative"] = negatives
    return columns


def _finished_run(out: Path, key: dict[str, Any]) -> PeerRun | None:
    """The run saved in ``out`` under the same key, with its model folder, or None."""
    try:
        saved = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return None
    if saved.get("key") != key or not (out / "model" / "modules.json").exists():
        return None
    fields = ("test", "train_seconds", "steps", "settings")
    return PeerRun(**{f: saved[f] for f in fields}, model_path=out / "model", reused=True)


def _value(setting: Any) -> Any:
    """A setting as JSON holds it: an enum's value (``"linear"``, not ``SchedulerType.LINEAR``)."""
    return setting.value if isinstance(setting, Enum) else setting


@contextmanager
def _no_model_card_bar(model: Any) -> Iterator[None]:
    """Off a terminal, no "Computing widget examples" bar: the trainer's model card draws it with tqdm wherever
    the output goes (a log gets its carriage returns). The module's ``tqdm`` is put back afterwards."""
    module = sys.modules.get(type(model.model_card_data).set_widget_examples.__module__)
    bar = getattr(module, "tqdm", None)
    if bar is None or bars_on_terminal():
        yield
        return
    module.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        module.tqdm = bar


def _first_module(*names: str) -> ModuleType:
    """The first of ``names`` that imports (sentence-transformers 6 moved its modules; older releases lack them)."""
    for name in names[:-1]:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return importlib.import_module(names[-1])


def _progress_callback(report: StepProgress) -> Any:
    """A trainer callback moving ``report`` each step, with the trainer's mean loss on its logging steps."""
    from transformers.trainer_callback import TrainerCallback

    class StepReport(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not control.should_log:  # a logging step reports from on_log, once its loss is known
                report.step(state.global_step)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                report.step(state.global_step, float(logs["loss"]))

    return StepReport()
