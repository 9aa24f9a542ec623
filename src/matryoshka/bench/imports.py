"""How long a fresh process takes to import the package's entry points, and whether torch came along.

    mrl bench imports

Each module is imported in a new interpreter ``--runs`` times (median reported); ``import torch`` alone is timed the
same way as the reference for what the light imports avoid. Goal: ``import matryoshka.service`` in <= 0.6 s without
torch.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

MODULES = ("matryoshka", "matryoshka.index", "matryoshka.service", "matryoshka.cli", "torch")
GOAL_S = 0.6
_PROBE = "import sys, time; t = time.perf_counter(); import {m}; print(time.perf_counter() - t, 'torch' in sys.modules)"


def time_import(module: str) -> tuple[float, bool]:
    """(seconds, torch loaded) of importing ``module`` in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(m=module)], capture_output=True, text=True, timeout=300, check=True
    )
    seconds, torch_loaded = done.stdout.split()
    return float(seconds), torch_loaded == "True"


def run(runs: int = 5, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    results: dict[str, Any] = {}
    for module in MODULES:
        times, torch_loaded = [], False
        for _ in range(runs):
            seconds, torch_loaded = time_import(module)
            times.append(seconds)
        results[module] = {"median_s": statistics.median(times), "torch": torch_loaded}
    table = Table(title=f"import time in a fresh process (median of {runs})")
    for col in ("module", "seconds", "loads torch", "goal"):
        table.add_column(col, justify="right")
    for module, r in list(results.items()):
        goal = ""
        if module == "matryoshka.service":
            met = r["median_s"] <= GOAL_S and not r["torch"]
            goal = f"<= {GOAL_S} s, no torch: " + ("met" if met else "NOT met")
            results["met"] = met
        table.add_row(module, f"{r['median_s']:.2f}", "yes" if r["torch"] else "no", goal)
    console.print(table)
    return results
