"""The public surface: what the docs and examples import is exported at the top or by a documented subpackage, and
the class docstrings' examples run."""

import ast
import importlib
import re
from pathlib import Path

import pytest

import matryoshka

ROOT = Path(__file__).resolve().parents[1]
# Subpackages documented as such: their __all__ is public.
DOCUMENTED = {
    "matryoshka",
    "matryoshka.adaptive",
    "matryoshka.data",
    "matryoshka.engines",
    "matryoshka.evaluate",
    "matryoshka.index",
    "matryoshka.nn",
    "matryoshka.nn.backbones",
    "matryoshka.report",
    "matryoshka.posthoc",
    "matryoshka.service",
    "matryoshka.train",
}


def _code_blocks(path: Path) -> list[str]:
    text = path.read_text()
    if path.suffix == ".py":
        return [text]
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _imports(code: str) -> list[tuple[str, str]]:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("matryoshka")
        for alias in node.names
    ]


FILES = sorted([*ROOT.glob("docs/*.md"), *ROOT.glob("examples/**/*.py"), ROOT / "README.md"])


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_and_examples_import_only_the_public_surface(path):
    outside = []
    for code in _code_blocks(path):
        for module, name in _imports(code):
            public = module in DOCUMENTED and name in getattr(importlib.import_module(module), "__all__", ())
            if not public and name not in matryoshka.__all__:
                outside.append(f"from {module} import {name}")
    assert not outside, f"{path.name} imports names outside the public surface: {outside}"


def _example(obj) -> str | None:
    """The code block after ``Example::`` in an object's docstring (dedented), if any."""
    import inspect
    import textwrap

    doc = inspect.getdoc(obj) or ""
    if "Example::" not in doc:
        return None
    block = doc.split("Example::", 1)[1]
    lines = []
    for line in block.split("\n")[1:]:
        if line.strip() and not line.startswith(" "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


@pytest.mark.parametrize("name", matryoshka.__all__)
def test_every_public_name_has_a_docstring_example_that_runs(name, monkeypatch):
    code = _example(getattr(matryoshka, name))
    if code is None:
        import inspect

        assert ">>>" in (inspect.getdoc(getattr(matryoshka, name)) or ""), f"{name} has no example in its docstring"
        return
    monkeypatch.chdir(ROOT)  # examples may read the repository's configs
    exec(compile(code, f"<{name} example>", "exec"), {"__name__": f"example_{name}"})


@pytest.mark.parametrize("name", ["connect", "export_index", "search", "parse_uri"])
def test_the_engine_functions_examples_run(name):
    import matryoshka.engines

    pytest.importorskip("qdrant_client", reason="qdrant-client is not installed")
    code = _example(getattr(matryoshka.engines, name))
    exec(compile(code, f"<engines.{name} example>", "exec"), {"__name__": f"example_{name}"})
