"""The request and response bodies of the service (pydantic), apart from the routes that use them."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from matryoshka.index.ids import check_ids

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _one_id(value: object) -> int | str:
    """The store's id checks on the raw JSON value (true and 5.0 are not ids), so a bad id gets one clear message."""
    check_ids([value], None)
    return value


VectorId = Annotated[
    int | str,
    BeforeValidator(_one_id),
    Field(description="an integer in [0, 2^63 - 1] or a string of at most 512 bytes"),
]
API_KEY_ENV = "MRL_API_KEY"


class RawInputs(BaseModel):
    """Raw inputs for a server started with a model; the run's stored preprocessing is applied to them."""

    model_config = ConfigDict(extra="forbid")
    images: list[str] | None = Field(None, description="base64-encoded PNG/JPEG/BMP/WebP files (image models)")
    texts: list[str] | None = Field(None, description="texts (text models)")
    inputs: list[list[FiniteFloat]] | None = Field(
        None, description="raw values, flattened: 0-255 pixels (C*H*W) or feature columns (feature models)"
    )

    def given(self) -> list[str]:
        return [name for name in ("images", "texts", "inputs") if getattr(self, name) is not None]


class SearchRequest(RawInputs):
    vectors: list[list[FiniteFloat]] | None = Field(None, description="query embeddings, each of the index's dim")
    k: int = Field(10, ge=1, description="results per query")
    plan: str | None = Field(
        None, description="full | adaptive:DS:K:DR | funnel:D1xK1,D2xK2,... (default: the index's tuned plan)"
    )
    exact: bool = Field(False, description="allow a first stage at a dim without a shortlist structure (full scan)")
    return_text: bool = Field(False, description="also return each hit's kept text ('texts'; null where none)")


class EmbedRequest(RawInputs):
    dim: int | None = Field(
        None, ge=1, description="prefix length, up to the model's dim (default: the index's dim, unit length)"
    )


class EmbedResponse(BaseModel):
    embeddings: list[list[float]]
    dim: int = Field(..., description="the embeddings' dim (the index's, unless the request asked for another)")


class SearchResponse(BaseModel):
    ids: list[list[int | str]]
    scores: list[list[float]]
    texts: list[list[str | None]] | None = Field(
        None, description="with return_text: the text kept beside each hit (null where none)"
    )


class AddRequest(BaseModel):
    """Rows to add: ``vectors`` of the index's dim, or ``texts`` the server embeds with its run (``--model``); the
    texts are kept beside the new ids either way."""

    model_config = ConfigDict(extra="forbid")
    vectors: list[list[FiniteFloat]] | None = Field(None, min_length=1)
    texts: list[str] | None = Field(
        None,
        min_length=1,
        description="one text per row, kept beside its id (a search with return_text returns it); without 'vectors' "
        "they are the rows themselves: the server's text model embeds them at the index's dim",
    )
    ids: list[VectorId] | None = None


class AddResponse(BaseModel):
    ids: list[int | str]
    ntotal: int


class DeleteResponse(BaseModel):
    deleted: int | str = Field(
        ..., description="the id deleted (DELETE /vectors/{id}) or how many (POST /vectors/delete)"
    )
    ntotal: int


class DeleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[VectorId] = Field(..., min_length=1)
