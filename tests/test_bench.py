import subprocess
import sys

from typer.testing import CliRunner

from matryoshka.cli import app


def test_train_overhead_benchmark_runs_and_prints_ratios():
    cmd = [
        sys.executable,
        "-m",
        "matryoshka.bench.train_overhead",
        "--backbone",
        "mlp",
        "--embed-dim",
        "64",
        "--batch-size",
        "32",
        "--steps",
        "2",
        "--rounds",
        "2",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith(("MRL", "single"))}
    assert set(lines) == {"single", "MRL", "MRL-E"}
    assert float(lines["MRL"].split()[2]) > 0


def test_retrieval_benchmark_small():
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "retrieval",
            "--n",
            "3000",
            "--dim",
            "64",
            "--queries",
            "50",
            "--single-queries",
            "3",
            "--repeats",
            "1",
            "--clusters",
            "20",
            "--skip-real",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ours, adaptive D_s=16 K=200 D_r=64" in result.output and "memory per vector" in result.output
