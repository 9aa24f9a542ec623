"""The disk tier under a memory limit: a cgroup (v1, as root) below what the index with its rows in RAM needs."""

import numpy as np
import pytest

from matryoshka.bench import memlimit
from matryoshka.index import MatryoshkaIndex

REASON = memlimit.unavailable()


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_the_disk_tier_answers_under_a_limit_that_the_ram_index_exceeds(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((60_000, 256)) * np.linspace(2, 0.2, 256)).astype(np.float32)  # 61 MB of rows
    q = (x[:50] + 0.05 * rng.standard_normal((50, 256))).astype(np.float32)
    plan = "adaptive:32:100:256"
    for tier in ("ram", "disk"):
        index = MatryoshkaIndex(256, [32], full_vectors=tier, default_plan=plan)
        index.add(x)
        index.save(tmp_path / tier)
    paths = {"rows in RAM": ("ours", tmp_path / "ram"), "disk tier": ("ours-disk", tmp_path / "disk")}
    table = memlimit.limits_table(x, q, paths, tmp_path)
    ram, disk = table["rows"]["rows in RAM"], table["rows"]["disk tier"]
    assert disk["peak_free_mib"] < ram["peak_free_mib"] - 40  # the rows stay on the disk
    assert ram["killed"] and not ram["ran"]
    assert disk["ran"]  # and finds what the same index finds with no limit
    np.testing.assert_array_equal(disk["ids"], MatryoshkaIndex.load(tmp_path / "ram").search(q, 10)[1])
