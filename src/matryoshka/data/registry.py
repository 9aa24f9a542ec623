"""Data sources by name. A new source is one decorated function::

    from matryoshka.data import register_data

    @register_data("my_scans")
    def load_my_scans(cfg):            # cfg: the ``data:`` section of the config (DataConfig)
        return ImageData(...)          # train / val / test splits, class names, preprocessing

and then ``data: {name: my_scans, ...}`` in a YAML config once the module is imported, or, with no import needed,
``data: {name: my_package.my_module:load_my_scans}``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from matryoshka.data.base import ImageData
from matryoshka.data.digits import load_digits
from matryoshka.data.fashion_mnist import load_fashion_mnist
from matryoshka.errors import InputError
from matryoshka.registry import Registry

Loader = Callable[[Any], ImageData]
_MODULE_LOADER = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
SOURCES: Registry[Loader] = Registry("data source")


def register_data(name: str, *, overwrite: bool = False) -> Callable[[Loader], Loader]:
    """Register ``loader(cfg) -> ImageData`` under ``name`` (the value of ``data.name`` in a config). A name taken
    by another function is refused unless ``overwrite=True`` (the rules of :class:`matryoshka.registry.Registry`).

    Example::

        from matryoshka import register_data
        from matryoshka.data import load_dataset

        @register_data("digits_again", overwrite=True)
        def digits_again(cfg):                # cfg: the data: section of a config
            return load_dataset("digits", seed=cfg.seed)
    """
    return SOURCES.register(name, overwrite=overwrite)


def data_sources() -> list[str]:
    return SOURCES.names()


def is_data_source(name: str) -> bool:
    """A registered name, or ``package.module:loader`` (a loader function in the user's own importable file)."""
    return name in SOURCES or _MODULE_LOADER.fullmatch(name) is not None


def find_loader(name: str) -> Loader:
    """The loader a ``data.name`` names; ``package.module:loader`` is imported (its decorators register too)."""
    if name in SOURCES:
        return SOURCES.get(name)
    if _MODULE_LOADER.fullmatch(name):
        module_name, attr = name.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise InputError(
                f"data source {name}: cannot import {module_name} ({e}); is it on the Python path?"
            ) from None
        loader = getattr(module, attr, None)
        if not callable(loader):
            raise InputError(f"data source {name}: {module_name} has no function {attr}")
        return loader
    raise InputError(f"{SOURCES.unknown(name)}, or package.module:loader")


def load_data(cfg: Any) -> ImageData:
    """Load the data a ``data:`` config section describes."""
    data = find_loader(cfg.name)(cfg)
    if not isinstance(data, ImageData):
        raise InputError(f"data source {cfg.name} returned {type(data).__name__}, not an ImageData")
    return data


def _cache_dir(cfg: Any) -> Path | None:
    from matryoshka.data.files import DEFAULT_CACHE

    return (Path(cfg.cache_dir) if cfg.cache_dir else DEFAULT_CACHE) if cfg.cache else None


def _need_path(cfg: Any) -> str:
    if not cfg.path:
        raise InputError(f"data.name={cfg.name} needs data.path (the folder or file to read)")
    return cfg.path


@register_data("fashion_mnist")
def _fashion_mnist(cfg: Any) -> ImageData:
    return load_fashion_mnist(cfg.root, seed=cfg.seed, **({} if cfg.val_size is None else {"val_size": cfg.val_size}))


@register_data("digits")
def _digits(cfg: Any) -> ImageData:
    return load_digits(seed=cfg.seed, **({} if cfg.val_size is None else {"val_size": cfg.val_size}))


@register_data("imagefolder")
def _imagefolder(cfg: Any) -> ImageData:
    from matryoshka.data.sources import load_image_folder

    return load_image_folder(_need_path(cfg), **_image_options(cfg))


@register_data("table")
def _table(cfg: Any) -> ImageData:
    from matryoshka.data.sources import load_table

    return load_table(
        _need_path(cfg),
        label_column=cfg.label_column,
        feature_columns=cfg.feature_columns,
        image_column=cfg.image_column,
        **_image_options(cfg),
    )


def _image_options(cfg: Any) -> dict[str, Any]:
    """The ``data:`` keys an own-files loader takes, by name."""
    return {
        "image_size": cfg.image_size,
        "channels": cfg.channels,
        "val_fraction": cfg.val_fraction,
        "test_fraction": cfg.test_fraction,
        "seed": cfg.seed,
        "workers": cfg.workers,
        "cache_dir": _cache_dir(cfg),
        "background": cfg.background,
    }


DATASETS = ("fashion_mnist", "digits")  # the built-in data sets that need no path


def load_dataset(name: str, root: str | None = None, val_size: int | None = None, seed: int = 0) -> ImageData:
    """Load a built-in data set by name; ``val_size`` defaults to each data set's own (5,000 / 180)."""
    if name not in DATASETS:
        raise InputError(f"unknown data set {name!r}; choose one of {DATASETS}")
    return SOURCES.get(name)(SimpleNamespace(name=name, root=root, val_size=val_size, seed=seed))
