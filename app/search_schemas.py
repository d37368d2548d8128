"""Request and response schemas of the collections routes (``/v1/collections``): find similar
sounds."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from .schemas import HEAD_NAME_PATTERN, Features, HeadAudioOptions

COLLECTION_NAME_PATTERN = HEAD_NAME_PATTERN  # the same rule as head names
SearchLevel = Literal["clip", "segment"]


class CollectionAudioOptions(HeadAudioOptions):
    """The audio options of adding to and searching a collection (short clips padded by default)."""

    force: bool = Field(
        False, description="add or search even if the collection has other weights or settings (else 409)"
    )


class AddItemsQuery(CollectionAudioOptions):
    """Query parameters of ``POST /v1/collections/{name}/items``."""

    id: str | None = Field(
        None, min_length=1, max_length=256, description="for a raw body (else the file name)"
    )


class SearchQuery(CollectionAudioOptions):
    """Query parameters of ``POST /v1/collections/{name}/search``."""

    k: int = Field(10, ge=1, description="results wanted (at most `search_max_k`, see the settings)")
    level: SearchLevel = Field(
        "clip",
        description="`clip`: cosine of the clip embeddings (the mean of each clip's segments); `segment`: "
        "each item's best pair of segments, which the result names",
    )


class SegmentOut(BaseModel):
    index: int = Field(description="the segment's position in its clip")
    start: float = Field(description="seconds")
    end: float = Field(description="seconds")


class SearchResult(BaseModel):
    id: str
    score: float = Field(description="cosine similarity, -1 to 1")
    metadata: dict[str, Any] | None = Field(None, description="the item's metadata (omitted when none)")
    segment: SegmentOut | None = Field(None, description="(segment level) the item's segment that matched")
    query_segment: SegmentOut | None = Field(
        None, description="(segment level) the query's segment that matched"
    )


class SearchResponse(BaseModel):
    object: Literal["list"] = "list"
    collection: str
    level: SearchLevel
    results: list[SearchResult] = Field(description="best first")
    warnings: list[str] | None = Field(None, description="e.g. that features were not compared")


class CollectionInfoOut(BaseModel):
    """A collection."""

    name: str
    items: int
    segments: int = Field(description="segment embeddings of all its items")
    features: Features = Field(description="its weights and front-end settings (null: unknown)")
    created_at: str = Field(description="ISO 8601, UTC")
    warnings: list[str] | None = Field(None, description="e.g. that it does not record its weights")


class CollectionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CollectionInfoOut]


class AddedItem(BaseModel):
    id: str
    segments: int
    replaced: bool = Field(description="an item of this id was replaced")


class AddItemsResponse(BaseModel):
    collection: CollectionInfoOut
    created: bool = Field(description="this request made the collection")
    items: list[AddedItem]
    warnings: list[str] | None = None
