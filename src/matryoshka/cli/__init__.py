"""The `mrl` command line: one module per command group, each command a thin layer over a library function."""

from matryoshka.cli import adapt, bench, demo, evaluate, index, serve, train
from matryoshka.cli._common import new_app

app = new_app("Matryoshka Representation Learning: train, evaluate and serve nested embeddings.")
app.add_typer(train.app)
app.add_typer(evaluate.app)
app.add_typer(index.app, name="index")
app.command("search", hidden=True)(index.search)  # the spelling from before `mrl index search`
app.add_typer(adapt.app, name="adapt")
app.add_typer(serve.app)
app.add_typer(bench.app, name="bench")
app.add_typer(demo.app)


def main() -> None:
    app()


__all__ = ["app", "main"]
