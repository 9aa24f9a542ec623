"""The run that embeds raw inputs for an index: the dim it serves the index at, and the texts it accepts.

Shared by ``mrl serve`` and ``mrl index add --texts``, so a text is refused (or a model's prefix is cut) the same
way on both paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matryoshka.errors import InputError

# A cap on each text, in characters per token the model reads. English averages about 4 characters a token; 32
# leaves room for long words, URLs, code and runs of whitespace, so no text the model would read in full is
# refused, while a 15 MB text is refused before its tokenizer spends seconds on what the model never reads.
CHARS_PER_TOKEN = 32
DEFAULT_MAX_TOKENS = 512  # a model that records no max_seq_length: the common transformer limit


class TextTooLongError(InputError):
    """A text longer than the model's cap (the service answers 413)."""


def matryoshka_dims(run: Any) -> list[int]:
    """The dims the run was trained to be cut to (its recorded nesting), or [] for a run trained at one dim (an
    FF-k head, or a text run with ``model.matryoshka: false``)."""
    model = run.info.get("config", {}).get("model", {})
    if model.get("head") == "ff" or model.get("matryoshka") is False:
        return []
    return [int(m) for m in run.info.get("nesting") or []]


def served_dim(run: Any, index_dim: int, model_prefix: bool, model_name: object, index_name: object) -> int:
    """The dim the run's embeddings are cut to for an index of ``index_dim``: the index's own.

    A wider model is cut when the index's dim is one of the dims the run was trained for (a Matryoshka run), or
    when ``model_prefix`` says so for any other prefix; anything else is refused in one line."""
    if run.dim == index_dim:
        return index_dim
    if run.dim > index_dim and (model_prefix or index_dim in matryoshka_dims(run)):
        return index_dim
    if run.dim > index_dim:
        hint = (
            f"; {index_dim} is not one of the dims it was trained for ({matryoshka_dims(run) or 'none'}): pass "
            f"--model-prefix to search with its first {index_dim} dims anyway"
        )
    else:
        hint = "; build the index from this model's embeddings"
    raise InputError(f"the model {model_name} gives {run.dim} dims but the index {index_name} holds {index_dim}{hint}")


def max_text_chars(run: Any) -> int:
    """The longest text (in characters) the run's text model takes: its ``max_seq_length`` x CHARS_PER_TOKEN."""
    encoder = getattr(run.model, "base", run.model)  # a frozen-base run wraps its SentenceTransformer
    return int(getattr(encoder, "max_seq_length", None) or DEFAULT_MAX_TOKENS) * CHARS_PER_TOKEN


def check_texts(texts: Sequence[str], max_chars: int, where: str = "texts[{}]", first: int = 0) -> None:
    """Refuse empty or blank texts (nothing to embed: they would match arbitrary rows) and texts over ``max_chars``,
    naming the first offender by ``where.format(i)`` (``first``: the number of the first text, 1 for file lines)."""
    blank = next((i for i, text in enumerate(texts) if not text.strip()), None)
    if blank is not None:
        raise InputError(f"{where.format(blank + first)} is empty or blank: there is nothing to embed")
    long = next((i for i, text in enumerate(texts) if len(text) > max_chars), None)
    if long is not None:
        tokens = max_chars // CHARS_PER_TOKEN
        raise TextTooLongError(
            f"{where.format(long + first)} has {len(texts[long]):,} characters; each text may have at most "
            f"{max_chars:,} (the model reads {tokens} tokens, {CHARS_PER_TOKEN} characters a token): shorten it"
        )
