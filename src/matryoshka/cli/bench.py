"""`mrl bench NAME`: the benchmarks of matryoshka.bench (ratios measured side by side in one run)."""

from __future__ import annotations

from typing import Annotated

import typer

from matryoshka.cli._common import fail, new_app

app = new_app()


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="retrieval, train-overhead, adaptor or text; options go to the benchmark")
    ],
) -> None:
    """Run a benchmark (ratios side by side in one run); python -m matryoshka.bench.NAME --help lists options."""
    import sys

    from matryoshka.bench import adaptor, retrieval, text, train_overhead

    benches = {
        "retrieval": retrieval.main,
        "train-overhead": train_overhead.main,
        "adaptor": adaptor.main,
        "text": text.main,
    }
    if name not in benches:
        fail(f"unknown benchmark {name!r}; choose one of {', '.join(benches)}")
    sys.argv = [f"mrl bench {name}", *ctx.args]
    benches[name]()
