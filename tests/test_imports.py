"""Imports: the index and the service load neither torch nor the training code (each checked in a fresh
interpreter, since this test process has long imported everything), and the index package has no import circle."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "matryoshka.train", "matryoshka.data", "matryoshka.nn")


@pytest.mark.parametrize(
    "module", ["matryoshka", "matryoshka.index", "matryoshka.engines", "matryoshka.service", "matryoshka.evaluate"]
)
def test_importing_loads_no_torch(module):
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert loaded.stdout.strip() == "", f"import {module} loaded {loaded.stdout.strip()}"


def test_the_public_names_load_on_first_use():
    import matryoshka

    for name in matryoshka.__all__:
        assert getattr(matryoshka, name) is not None, name
    assert set(matryoshka.__all__) <= set(dir(matryoshka))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        matryoshka.nope  # noqa: B018


def test_a_name_shared_with_a_submodule_stays_the_function():
    import importlib

    import matryoshka

    importlib.import_module("matryoshka.truncate")  # the import system binds submodules on their package
    assert callable(matryoshka.truncate) and matryoshka.truncate.__name__ == "truncate"


def test_the_index_package_has_no_import_circle():
    """No two modules of matryoshka.index reach each other, at module level or inside a function (type-checking
    imports aside): the store sits above the in-memory index, the index above its version files and log."""
    import itertools

    import grimp

    graph = grimp.build_graph("matryoshka", exclude_type_checking_imports=True)
    modules = sorted(m for m in graph.modules if m.startswith("matryoshka.index."))
    assert len(modules) > 20
    circles = [
        (a, b) for a, b in itertools.combinations(modules, 2) if graph.chain_exists(a, b) and graph.chain_exists(b, a)
    ]
    assert circles == []
