"""A writer killed with SIGKILL mid-way: it prints the number of each acknowledged write, one per line."""

from __future__ import annotations

import subprocess
import sys
import time


def kill_after_acks(script: str, args: list[str], enough: int, timeout: float = 60) -> int:
    """Run ``python -c script args...``, kill -9 it once it has acknowledged write ``enough`` (or after
    ``timeout`` seconds), and return the number of the last write it acknowledged (-1: none)."""
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True)
    acked, deadline = -1, time.time() + timeout
    try:
        for line in proc.stdout:
            acked = int(line)
            if acked >= enough or time.time() > deadline:
                break
    finally:
        proc.kill()
        proc.wait()
    for line in proc.stdout.read().splitlines():  # acknowledged before the kill landed
        acked = int(line)
    return acked
