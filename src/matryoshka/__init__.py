"""matryoshka: Matryoshka Representation Learning (Kusupati et al., NeurIPS 2022) as a library.

Everything a user needs is importable from here. The names are loaded on first use (PEP 562), so
``import matryoshka`` (and ``import matryoshka.index`` or ``matryoshka.service``) loads no torch until a name
that needs it is touched.

Example::

    import numpy as np
    import matryoshka as mrl

    vectors = np.random.default_rng(0).standard_normal((1000, 64)).astype("float32")
    index = mrl.MatryoshkaIndex(64, shortlist_dims=[16])
    index.add(vectors)
    ids, scores = index.search(vectors[:3], k=5, plan=mrl.AdaptivePlan(16, 64, 100))
"""

from importlib import import_module
from importlib.metadata import version as _version
from typing import Any

# Eager: this name is also a submodule's, which the import system would otherwise bind here once it is imported.
from matryoshka.truncate import truncate as truncate

__version__ = _version("matryoshka-mrl")

# public name -> module that defines it
_EXPORTS = {
    # the nesting and the paper's objective
    "MatryoshkaError": "matryoshka.errors",
    "InputError": "matryoshka.errors",
    "NestingError": "matryoshka.nesting",
    "nesting_list": "matryoshka.nesting",
    "halving_nesting": "matryoshka.nesting",
    "nesting_weights": "matryoshka.nesting",
    "small_dim_weights": "matryoshka.nesting",
    "ramped_weights": "matryoshka.nesting",
    "validate_nesting": "matryoshka.nesting",
    "MRLHead": "matryoshka.nn.heads",
    "FixedFeatureHead": "matryoshka.nn.heads",
    "MatryoshkaLoss": "matryoshka.nn.losses",
    "InfoNCELoss": "matryoshka.nn.losses",
    "MatryoshkaClassifier": "matryoshka.nn.model",
    "create_backbone": "matryoshka.nn.backbones",
    "register_backbone": "matryoshka.nn.backbones",
    # data and training
    "register_data": "matryoshka.data",
    "load_config": "matryoshka.train",
    "Trainer": "matryoshka.train",
    "TextTrainer": "matryoshka.train.text_trainer",
    # a finished run
    "TrainedRun": "matryoshka.runs",
    "encode": "matryoshka.inference",
    "encode_and_classify": "matryoshka.inference",
    "evaluate_embeddings": "matryoshka.evaluate.per_dim",
    # retrieval
    "MatryoshkaIndex": "matryoshka.index",
    "IndexStore": "matryoshka.index",
    "AdaptivePlan": "matryoshka.index",
    "FunnelPlan": "matryoshka.index",
    "FullPlan": "matryoshka.index",
    "parse_plan": "matryoshka.index",
    "fit_basis": "matryoshka.index",
    "autotune": "matryoshka.index.autotune",
    # beyond training
    "MatryoshkaAdaptor": "matryoshka.posthoc",
    "Cascade": "matryoshka.adaptive",
}

__all__ = sorted([*_EXPORTS, "truncate"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'matryoshka' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
