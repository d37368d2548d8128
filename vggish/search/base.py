"""What both collection stores share: items, queries, matches, errors, checks and the API.

An item is a clip: its segment embeddings (one per example, (N, 128) float32) with their
[start, end] seconds, its clip embedding (the mean of its segments'), and optional JSON metadata.
Similarity is the cosine. At ``clip`` level an item scores the cosine of its clip embedding with
the query's; at ``segment`` level it scores its best pair of (its segment, a query segment), and
the match says which pair that is. A collection records what made its embeddings
(:class:`vggish.heads.FeatureSpec`: the weights' SHA-256, hop, pad, resampler) and refuses items
or queries of other ones unless forced.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from vggish import params
from vggish.errors import ConflictError, InvalidInputError, LimitExceededError, NotFoundError
from vggish.features.logmel import example_timestamps
from vggish.heads import FeatureSpec

Level = Literal["clip", "segment"]
LEVELS: tuple[Level, ...] = ("clip", "segment")
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_ID_CHARS = 256
MAX_METADATA_BYTES = 4096  # one item's metadata as compact JSON
MAX_ABS_VALUE = 1e6  # VGGish embeddings are far smaller; larger values are refused
# Defaults of the limits (the service's settings override them).
DEFAULT_MAX_COLLECTIONS = 1000
DEFAULT_MAX_ITEMS = 1_000_000  # items per collection
DEFAULT_MAX_SEGMENTS = 10_000  # segments per item (2.7 hours at the reference hop)
DEFAULT_MAX_K = 1000
DEFAULT_MAX_QUERY_SEGMENTS = 64
UNKNOWN = FeatureSpec()  # the features of embeddings whose provenance nobody gave
# Compared between a collection and what is added or searched. Not ``pad``: it decides only
# whether a clip shorter than one example gets one, never the embedding of an example.
_FEATURE_LABELS = {"weights_sha256": "weights", "hop_seconds": "hop", "resampler": "resampler"}


class CollectionNotFoundError(NotFoundError):
    """No collection has this name."""


class ItemNotFoundError(NotFoundError):
    """The collection has no item of this id."""


class FeaturesMismatchError(ConflictError):
    """Embeddings of other weights or front-end settings than a collection's.

    Attributes:
        collection: the collection's :class:`FeatureSpec`.
        used: the one of the items or the query.
        differences: the fields that differ (``weights``, ``hop``, ``resampler``).
    """

    def __init__(self, message: str, collection: FeatureSpec, used: FeatureSpec, differences: list[str]):
        super().__init__(message)
        self.collection = collection
        self.used = used
        self.differences = differences


def validate_collection_name(name: object) -> str:
    """``name`` if it is 1-64 characters of ``[A-Za-z0-9_.-]``, other than ``.`` and ``..``.

    Raises:
        InvalidInputError: any other name.
    """
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name in (".", ".."):
        raise InvalidInputError(
            f"a collection name is 1-64 characters of A-Z a-z 0-9 _ . - (not . or ..); got {name!r}"
        )
    return name


def validate_item_id(item_id: object) -> str:
    """``item_id`` if it is 1-256 characters, not blank, without control characters or lone
    surrogates (a file name or a relative path fits).

    Raises:
        InvalidInputError: any other id.
    """
    if not isinstance(item_id, str) or not item_id.strip():
        raise InvalidInputError(f"an item id is a non-empty string; got {item_id!r}")
    if len(item_id) > MAX_ID_CHARS:
        raise InvalidInputError(f"an item id has at most {MAX_ID_CHARS} characters; got {len(item_id)}")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in item_id):
        raise InvalidInputError(f"an item id holds no control characters or lone surrogates; got {item_id!r}")
    return item_id


def check_vectors(x: object, what: str = "embeddings") -> np.ndarray:
    """(N, 128) float32 of finite, non-zero rows within ±``MAX_ABS_VALUE`` (a zero vector has no
    direction, so no cosine).

    Raises:
        InvalidInputError: another shape, NaN or infinity, a value too large, or a zero row.
    """
    try:
        v = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"{what} must be rows of {params.EMBEDDING_SIZE} numbers") from e
    if v.ndim != 2 or v.shape[1] != params.EMBEDDING_SIZE or v.shape[0] == 0:
        raise InvalidInputError(f"{what} must be (N >= 1, {params.EMBEDDING_SIZE}); got shape {v.shape}")
    if not np.isfinite(v).all():
        raise InvalidInputError(f"{what} hold NaN or infinite values")
    if np.abs(v).max() > MAX_ABS_VALUE:
        raise InvalidInputError(f"{what} values must lie within ±{MAX_ABS_VALUE:g}; VGGish's do")
    out = v.astype(np.float32)
    if not (np.abs(out).max(axis=1) > 0).all():
        raise InvalidInputError(f"{what} hold a zero vector, which has no direction to compare")
    return out


def check_timestamps(t: object, count: int) -> np.ndarray:
    """(count, 2) float64 [start, end] seconds, finite, 0 <= start <= end.

    Raises:
        InvalidInputError: any other array.
    """
    try:
        ts = np.asarray(t, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InvalidInputError("timestamps must be [start, end] pairs of numbers") from e
    if ts.shape != (count, 2):
        raise InvalidInputError(
            f"timestamps must be {count} [start, end] pairs (one per row); got {ts.shape}"
        )
    if not np.isfinite(ts).all() or (ts[:, 0] < 0).any() or (ts[:, 1] < ts[:, 0]).any():
        raise InvalidInputError("timestamps must be finite [start, end] seconds with 0 <= start <= end")
    return ts


def check_metadata(metadata: object) -> dict[str, Any] | None:
    """A JSON object of at most ``MAX_METADATA_BYTES`` (compact), or None.

    Raises:
        InvalidInputError: not an object, not JSON, or too large.
    """
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise InvalidInputError(f"metadata must be a JSON object; got {type(metadata).__name__}")
    try:
        text = json.dumps(dict(metadata), separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"metadata must be JSON (no NaN or infinity): {e}") from e
    if len(text.encode("utf-8")) > MAX_METADATA_BYTES:
        raise InvalidInputError(f"metadata takes at most {MAX_METADATA_BYTES} bytes as JSON")
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def clip_embedding(segments: np.ndarray) -> np.ndarray:
    """(128,) float32: the mean of an item's segment embeddings (summed in float64)."""
    mean: np.ndarray = segments.mean(axis=0, dtype=np.float64).astype(np.float32)
    return mean


@dataclass(frozen=True)
class Item:
    """One clip of a collection (build with :meth:`of`, which validates).

    Attributes:
        id: 1-256 characters (e.g. a file name or a relative path).
        embeddings: (N, 128) float32 segment embeddings, N >= 1.
        timestamps: (N, 2) float64 [start, end] seconds of each segment.
        metadata: a small JSON object kept with it and returned with its matches.
    """

    id: str
    embeddings: np.ndarray = field(repr=False)
    timestamps: np.ndarray = field(repr=False)
    metadata: dict[str, Any] | None = None

    @classmethod
    def of(
        cls,
        item_id: str,
        embeddings: object,
        timestamps: object | None = None,
        metadata: object = None,
        hop_seconds: float = params.EXAMPLE_HOP_SECONDS,
    ) -> Item:
        """A validated item; without ``timestamps``, segment k spans [k * hop, k * hop + 0.975).

        Raises:
            InvalidInputError: a bad id, vectors, timestamps or metadata.
        """
        x = check_vectors(embeddings)
        ts = (
            example_timestamps(len(x), hop_seconds)
            if timestamps is None
            else check_timestamps(timestamps, len(x))
        )
        return cls(validate_item_id(item_id), x, ts, check_metadata(metadata))

    @property
    def clip(self) -> np.ndarray:
        """(128,) float32: the clip embedding, the mean of the segments'."""
        return clip_embedding(self.embeddings)


@dataclass(frozen=True)
class Query:
    """What to search for: one or more vectors, with the segments' times when they are segments.

    Attributes:
        vectors: (Q, 128) float32: a clip-level query is their mean; a segment-level one scores
            each of them.
        timestamps: (Q, 2) seconds of each query segment, or None (one bare vector).
        exclude: an item id left out of the results (the item a query by id comes from).
    """

    vectors: np.ndarray = field(repr=False)
    timestamps: np.ndarray | None = field(default=None, repr=False)
    exclude: str | None = None

    @classmethod
    def embedding(cls, vector: object) -> Query:
        """A query by one 128-d vector (at segment level: against every segment)."""
        return cls(check_vectors(np.asarray(vector, dtype=np.float64).reshape(1, -1), "the embedding"))

    @classmethod
    def segments(cls, embeddings: object, timestamps: object | None = None) -> Query:
        """A query by a clip's segments (e.g. an analysed clip's embeddings)."""
        x = check_vectors(embeddings)
        ts = example_timestamps(len(x)) if timestamps is None else check_timestamps(timestamps, len(x))
        return cls(x, ts)

    @classmethod
    def of_item(cls, item: Item) -> Query:
        """A query by a stored item: its segments, the item itself left out of the results."""
        return cls(item.embeddings, item.timestamps, exclude=item.id)

    @property
    def clip(self) -> np.ndarray:
        """(128,) float32: the clip-level query vector."""
        return clip_embedding(self.vectors)


@dataclass(frozen=True)
class Segment:
    """A segment of an item or of the query: its position and [start, end] seconds."""

    index: int
    start: float
    end: float


@dataclass(frozen=True)
class Match:
    """One result, best first.

    Attributes:
        id: the item's id.
        score: the cosine similarity (clip level: of the clip embeddings; segment level: of the
            best segment pair).
        metadata: the item's metadata.
        segment: (segment level) the item's segment that matched.
        query_segment: (segment level, a query of several segments) the query's segment that matched.
    """

    id: str
    score: float
    metadata: dict[str, Any] | None = None
    segment: Segment | None = None
    query_segment: Segment | None = None


@dataclass(frozen=True)
class CollectionInfo:
    """A collection's description."""

    name: str
    features: FeatureSpec
    items: int
    segments: int
    created_at: str


@dataclass(frozen=True)
class AddResult:
    """What an add did.

    Attributes:
        collection: the collection after it.
        created: whether this add made the collection.
        replaced: the ids that replaced items of the same id.
        warning: what to know (features unknown on one side, or a mismatch that force let through).
    """

    collection: CollectionInfo
    created: bool
    replaced: tuple[str, ...]
    warning: str | None = None


def check_features(
    collection: FeatureSpec, used: FeatureSpec, force: bool = False, name: str | None = None
) -> str | None:
    """Refuses embeddings of other weights, hop or resampler than a collection's.

    Only fields known on both sides are compared; ``pad`` is recorded but not compared (it only
    decides whether a clip shorter than one example gets one).

    Returns:
        None when both sides are fully known and equal; else a warning (a side does not say what
        made its embeddings, or ``force`` let a mismatch through).

    Raises:
        FeaturesMismatchError: a field differs and ``force`` is false.
    """
    what = "the collection" if name is None else f"collection {name!r}"
    differ = [
        label
        for key, label in _FEATURE_LABELS.items()
        if None not in (getattr(collection, key), getattr(used, key))
        and not _same(getattr(collection, key), getattr(used, key))
    ]
    if differ:
        message = (
            f"{what} holds embeddings of {collection.describe()}, but these are of {used.describe()}: "
            f"{', '.join(differ)} differ{'s' if len(differ) == 1 else ''}, so cosines would mean nothing"
        )
        if not force:
            raise FeaturesMismatchError(
                f"{message}; use the collection's weights and settings, a new collection, or force it "
                "(force=true; CLI --force)",
                collection,
                used,
                differ,
            )
        return f"{message} (forced)"
    unknown = [
        label
        for key, label in _FEATURE_LABELS.items()
        if (getattr(collection, key) is None) != (getattr(used, key) is None)
    ]
    if unknown:
        return f"{what} or these embeddings do not record their {', '.join(unknown)}: those are not compared"
    return None


def unknown_warning(name: str) -> str:
    """What a collection made of embeddings of unknown provenance says."""
    return (
        f"collection {name!r} does not record the weights and settings that made its embeddings "
        "(send `features` with them): nothing added or searched is checked against it"
    )


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=0, abs_tol=1e-9)
    return a == b


def check_k(k: int, max_k: int) -> int:
    """``k`` if 1 <= k <= ``max_k``.

    Raises:
        InvalidInputError: k < 1.
        LimitExceededError: k > max_k.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInputError(f"k must be a whole number of 1 or more; got {k!r}")
    if k > max_k:
        raise LimitExceededError("search_max_k", f"k={k}; at most {max_k} results per search")
    return k


Items = list[Item]  # aliases: ``list`` is also a store method's name
Matches = list[Match]
Infos = list[CollectionInfo]


@dataclass(frozen=True)
class StoreLimits:
    """What a store holds at most, and what one search may ask.

    Attributes:
        collections: collections in the store.
        items: items per collection.
        segments: segments per item.
        k: results per search.
        query_segments: segments of a segment-level query.
    """

    collections: int = DEFAULT_MAX_COLLECTIONS
    items: int = DEFAULT_MAX_ITEMS
    segments: int = DEFAULT_MAX_SEGMENTS
    k: int = DEFAULT_MAX_K
    query_segments: int = DEFAULT_MAX_QUERY_SEGMENTS

    def check_items(self, items: Sequence[Item]) -> None:
        """Refuses a request of items with more segments than allowed, or repeated ids.

        Raises:
            LimitExceededError: an item over ``segments``.
            InvalidInputError: no item, or an id twice.
        """
        if not items:
            raise InvalidInputError("no item to add")
        for item in items:
            if len(item.embeddings) > self.segments:
                raise LimitExceededError(
                    "search_max_segments",
                    f"item {item.id!r} has {len(item.embeddings)} segments; at most {self.segments}",
                )
        seen: set[str] = set()
        for item in items:
            if item.id in seen:
                raise InvalidInputError(f"the id {item.id!r} is given twice: each item needs its own")
            seen.add(item.id)

    def check_search(self, level: Level, k: int) -> None:
        """Refuses a bad level or k (before a query is made, e.g. by embedding audio).

        Raises:
            InvalidInputError: an unknown level, k < 1.
            LimitExceededError: k over the limit.
        """
        if level not in LEVELS:
            raise InvalidInputError(f"level must be one of {LEVELS}; got {level!r}")
        check_k(k, self.k)

    def check_query(self, query: Query, level: Level, k: int) -> None:
        """:meth:`check_search`, and refuses a segment-level query of too many segments.

        Raises:
            InvalidInputError, LimitExceededError: as above.
        """
        self.check_search(level, k)
        if level == "segment" and len(query.vectors) > self.query_segments:
            raise LimitExceededError(
                "search_max_query_segments",
                f"the query has {len(query.vectors)} segments; at most {self.query_segments} at segment "
                "level (search a shorter clip, or at clip level)",
            )


class BaseCollectionStore(ABC):
    """Named collections of items in one database: the API both backends share.

    :class:`~vggish.search.sqlite.SqliteCollectionStore` keeps them in SQLite in a data directory
    and searches exactly in memory; :class:`~vggish.search.postgres.PostgresCollectionStore` in
    PostgreSQL with pgvector, which replicas share. :func:`vggish.search.open_collections` picks
    one from a location. Both create their schema on first use and raise RuntimeError when the
    database cannot be used.
    """

    limits: StoreLimits

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the collections are, fit to print (a URL without its password)."""

    @abstractmethod
    def open(self) -> None:
        """Creates or upgrades the schema now (otherwise done on first use)."""

    def close(self) -> None:
        """Releases what the store holds open (PostgreSQL's pooled connections); it stays usable."""
        return None

    @abstractmethod
    def list(self) -> Infos:
        """Every collection, by name (byte order)."""

    @abstractmethod
    def get(self, name: str) -> CollectionInfo:
        """One collection (CollectionNotFoundError when absent)."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Deletes a collection and its items (CollectionNotFoundError when absent)."""

    @abstractmethod
    def delete_item(self, name: str, item_id: str) -> None:
        """Deletes one item (CollectionNotFoundError, ItemNotFoundError when absent)."""

    @abstractmethod
    def get_item(self, name: str, item_id: str) -> Item:
        """One stored item (CollectionNotFoundError, ItemNotFoundError when absent)."""

    def add(
        self, name: str, items: Sequence[Item], features: FeatureSpec = UNKNOWN, force: bool = False
    ) -> AddResult:
        """Adds items in one transaction, making the collection on the first add (recording
        ``features``); an item whose id exists replaces it.

        Raises:
            InvalidInputError: a bad name, no item, an id twice.
            FeaturesMismatchError: ``features`` differ from the collection's and ``force`` is false.
            LimitExceededError: more collections, items or segments than the limits allow.
        """
        validate_collection_name(name)
        self.limits.check_items(items)
        return self._add(name, list(items), features, force)

    def search(self, name: str, query: Query | str, k: int = 10, level: Level = "clip") -> Matches:
        """The ``k`` items most similar to ``query`` (a :class:`Query`, or a stored item's id),
        best first.

        Raises:
            CollectionNotFoundError, ItemNotFoundError: no such collection or item.
            InvalidInputError, LimitExceededError: a bad level, k, or too many query segments.
        """
        validate_collection_name(name)
        if isinstance(query, str):
            query = Query.of_item(self.get_item(name, validate_item_id(query)))
        self.limits.check_query(query, level, k)
        return self._search(name, query, k, level)

    @abstractmethod
    def _add(self, name: str, items: Items, features: FeatureSpec, force: bool) -> AddResult: ...

    @abstractmethod
    def _search(self, name: str, query: Query, k: int, level: Level) -> Matches: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"


def segment_of(timestamps: np.ndarray | None, index: int) -> Segment | None:
    """Segment ``index`` of an array of [start, end] rows (None without the array)."""
    if timestamps is None:
        return None
    start, end = timestamps[index]
    return Segment(int(index), float(start), float(end))


def cosine(score: float) -> float:
    """A float32 cosine as a Python float, clipped to [-1, 1] (rounding can pass 1 by an ulp)."""
    return min(1.0, max(-1.0, float(score)))
