"""What the commands share: the one error handler, the --device option, comma-separated int options."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

import typer

from matryoshka.errors import InputError, MatryoshkaError

P = ParamSpec("P")
R = TypeVar("R")

Device = Annotated[str, typer.Option(help="auto, cpu or cuda")]


def new_app(help: str | None = None) -> typer.Typer:
    """A command group: ``-h`` as well as ``--help``, help when called bare, plain tracebacks for bugs."""
    return typer.Typer(
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        help=help,
    )


def one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a :class:`MatryoshkaError` (bad input, missing or corrupt files) into ``error: ...`` on stderr, exit 2."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except MatryoshkaError as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None

    return run


def int_list(text: str, option: str) -> list[int]:
    """``"8,16,32"`` -> ``[8, 16, 32]``; anything else is an InputError naming the option."""
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise InputError(f"bad {option}: {text!r} is not a comma-separated list of ints") from None
