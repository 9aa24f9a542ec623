"""A busy neighbour: a process that keeps one core busy while latencies are measured beside it.

On a shared machine a search rarely has the cores to itself; latency figures taken only on an idle machine hide
every wait for a core (see :mod:`matryoshka.index.threads`)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator

SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


@contextlib.contextmanager
def busy_process(max_seconds: float = 3600) -> Iterator[subprocess.Popen]:
    """Run the block beside one process spinning on a core (it stops by itself after ``max_seconds``)."""
    proc = subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=max_seconds)])
    time.sleep(0.3)  # let it reach its loop
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()
