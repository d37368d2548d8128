"""JSON bodies of the collection routes that carry embeddings, parsed as they arrive (ijson).

``POST /v1/collections/{name}/items``: ``{"items": [{"id", "embeddings", "timestamps",
"metadata"}], "features": {...}}``. ``POST /v1/collections/{name}/search``: ``{"embedding":
[...]}``, ``{"embeddings": [[...]], "timestamps": [[...]]}`` or ``{"id": "..."}``, with optional
``features``. Numbers go straight into compact arrays as ijson's events come; each row is checked
(128 finite numbers; a timestamp is 2) as it closes, and the counts (items per request, segments
per item or query) as they grow, so a body is refused at the first bad row or the first count past
its limit, before it is held whole.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Any, ClassVar

import ijson

from vggish import params
from vggish.errors import InvalidInputError, LimitExceededError
from vggish.heads import FeatureSpec
from vggish.search.base import MAX_METADATA_BYTES

from .errors import InvalidParameterError

PEEK_BYTES = 1 << 16  # the first key of a JSON body is found within this many bytes


def first_key(head: bytes) -> str | None:
    """The first key of a JSON object that starts in ``head`` (None when ``head`` does not hold
    it whole yet; ``""`` when the body is not an object with a short first key)."""
    text = head.lstrip()
    if not text:
        return None
    if text[:1] != b"{":
        return ""
    text = text[1:].lstrip()
    if not text:
        return None
    if text[:1] != b'"':
        return ""
    end = text.find(b'"', 1)
    if end < 0:
        return None if len(text) < 256 else ""
    return text[1:end].decode("utf-8", "replace")


@dataclass
class _Rows:
    """Rows of ``width`` numbers, kept as float64 in one flat array."""

    width: int
    what: str
    limit: int
    limit_name: str
    values: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]
    count: int = 0
    open_row: int = 0  # numbers in the row being read

    def number(self, value: Any, path: str) -> None:
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            number = math.inf
        if isinstance(value, bool) or not math.isfinite(number):
            raise InvalidParameterError(f"{path}: every value of {self.what} must be a finite number")
        self.open_row += 1
        if self.open_row > self.width:
            raise InvalidParameterError(f"{path}: each row of {self.what} has {self.width} numbers")
        self.values.append(number)

    def close_row(self, path: str) -> None:
        if self.open_row != self.width:
            raise InvalidParameterError(
                f"{path}: each row of {self.what} has {self.width} numbers; one has {self.open_row}"
            )
        self.open_row = 0
        self.count += 1
        if self.count > self.limit:
            raise LimitExceededError(self.limit_name, f"more than {self.limit} rows of {self.what}")

    def array(self) -> list[list[float]] | None:
        import numpy as np

        if not self.count:
            return None
        return np.frombuffer(self.values, np.float64).reshape(self.count, self.width)  # type: ignore[return-value]


@dataclass
class RawItem:
    """An item as the body gave it (validated into a :class:`vggish.search.Item` at the end)."""

    id: Any = None
    embeddings: _Rows | None = None
    timestamps: _Rows | None = None
    metadata: Any = None


class EmbeddingsBody:
    """An embeddings body, fed in pieces (:meth:`feed`), its fields collected as they arrive.

    Args:
        form: ``items`` (an add) or ``query`` (a search).
        max_items: items per request (``items`` form).
        max_rows: segments per item, or per query.
        rows_limit: the name of ``max_rows``' setting.
    """

    TOP_KEYS: ClassVar[dict[str, frozenset[str]]] = {
        "items": frozenset({"items", "features"}),
        "query": frozenset({"embedding", "embeddings", "timestamps", "id", "features"}),
    }
    ITEM_KEYS: ClassVar[frozenset[str]] = frozenset({"id", "embeddings", "timestamps", "metadata"})

    def __init__(self, form: str, max_items: int, max_rows: int, rows_limit: str) -> None:
        self.form, self.max_items, self.max_rows, self.rows_limit = form, max_items, max_rows, rows_limit
        self.items: list[RawItem] = []
        self.query = RawItem()
        self.features: Any = None
        self._events = ijson.sendable_list()
        self._parser = ijson.parse_coro(self._events, use_float=True)
        self._builder: tuple[str, Any] | None = None  # (prefix, ObjectBuilder) of a free JSON value
        self.keys: set[str] = set()  # the top-level keys seen

    def feed(self, chunk: bytes) -> None:
        """Parses the next piece of the body.

        Raises:
            InvalidParameterError: malformed JSON, an unknown key, a bad row (422).
            LimitExceededError: too many items or rows (413).
        """
        if not chunk:  # ijson reads an empty piece as the end of the body
            return
        try:
            self._parser.send(chunk)
        except ijson.JSONError as e:
            raise InvalidParameterError(f"the JSON body is malformed: {_short(e)}") from None
        for prefix, event, value in self._events:
            self._event(prefix, event, value)
        del self._events[:]

    def finish(self) -> None:
        """Ends the body (malformed when it stops early)."""
        try:
            self._parser.close()
        except ijson.JSONError as e:
            raise InvalidParameterError(f"the JSON body is malformed: {_short(e)}") from None
        for prefix, event, value in self._events:
            self._event(prefix, event, value)
        del self._events[:]
        if not self.keys:
            raise InvalidParameterError("the JSON body is empty: send an object")

    def feature_spec(self) -> FeatureSpec:
        """The ``features`` sent (unknown when none).

        Raises:
            InvalidParameterError: not a features object.
        """
        try:
            return FeatureSpec.from_dict({} if self.features is None else self.features)
        except InvalidInputError as e:
            raise InvalidParameterError(f"features: {e}") from None

    def _event(self, prefix: str, event: str, value: Any) -> None:
        if self._builder is not None:
            self._build(prefix, event, value)
            return
        if prefix == "":
            if event == "map_key":
                self._top_key(value)
            elif event not in ("start_map", "end_map"):
                raise InvalidParameterError("the JSON body must be an object")
            return
        head, _, rest = prefix.partition(".")
        if self.form == "items" and head == "items":
            self._items_event(rest, event, value)
        elif head == "features":
            self._start_builder(prefix, event, value)
        else:
            self._query_event(head, rest, event, value)

    def _top_key(self, key: str) -> None:
        allowed = self.TOP_KEYS[self.form]
        if key not in allowed:
            raise InvalidParameterError(
                f"unknown key {key!r} in the JSON body; expected some of {sorted(allowed)}"
            )
        if key in self.keys:
            raise InvalidParameterError(f"the key {key!r} is given twice")
        self.keys.add(key)

    def _items_event(self, rest: str, event: str, value: Any) -> None:
        if rest == "":
            if event not in ("start_array", "end_array"):
                raise InvalidParameterError("items must be a list of objects")
            return
        if rest == "item":
            if event == "start_map":
                self.items.append(RawItem())
                if len(self.items) > self.max_items:
                    raise LimitExceededError(
                        "search_max_items_per_request", f"more than {self.max_items} items in one request"
                    )
            elif event == "map_key":
                if value not in self.ITEM_KEYS:
                    raise InvalidParameterError(f"items[{len(self.items) - 1}]: unknown key {value!r}")
            elif event != "end_map":
                raise InvalidParameterError("items must be a list of objects")
            return
        where = f"items[{len(self.items) - 1}]"
        self._field(self.items[-1], where, rest.removeprefix("item."), event, value)

    def _query_event(self, head: str, rest: str, event: str, value: Any) -> None:
        path = head if not rest else f"{head}.{rest}"
        if head == "embedding":  # one vector: a row of its own
            if rest == "":
                if event == "start_array":
                    self.query.embeddings = _Rows(params.EMBEDDING_SIZE, "the embedding", 1, "embedding")
                    return
                if event == "end_array" and self.query.embeddings is not None:
                    self.query.embeddings.close_row(path)
                    return
                raise InvalidParameterError("embedding must be a list of 128 numbers")
            if rest == "item" and event == "number" and self.query.embeddings is not None:
                self.query.embeddings.number(value, path)
                return
            raise InvalidParameterError("embedding must be a list of 128 numbers")
        self._field(self.query, "the query", path, event, value)

    def _field(self, item: RawItem, where: str, path: str, event: str, value: Any) -> None:
        key, _, rest = path.partition(".")
        if key == "id":
            if event != "string":
                raise InvalidParameterError(f"{where}.id must be a string")
            item.id = value
        elif key in ("embeddings", "timestamps"):
            width = params.EMBEDDING_SIZE if key == "embeddings" else 2
            rows = getattr(item, key)
            if rows is None:
                rows = _Rows(width, f"{where}.{key}", self.max_rows, self.rows_limit)
                setattr(item, key, rows)
            self._matrix(rows, f"{where}.{key}", rest, event, value)
        elif key == "metadata":
            self._start_builder(f"{where}|metadata", event, value, item)
        else:
            raise InvalidParameterError(f"{where}: unknown key {key!r}")

    @staticmethod
    def _matrix(rows: _Rows, path: str, rest: str, event: str, value: Any) -> None:
        """Events of a list of rows of numbers (``rest``: "", "item" or "item.item")."""
        if rest == "" and event in ("start_array", "end_array"):
            return
        if rest == "item" and event == "start_array":
            return
        if rest == "item" and event == "end_array":
            rows.close_row(path)
            return
        if rest == "item.item" and event == "number":
            rows.number(value, path)
            return
        raise InvalidParameterError(f"{path} must be a list of rows of numbers")

    def _start_builder(self, prefix: str, event: str, value: Any, item: RawItem | None = None) -> None:
        builder = ijson.ObjectBuilder()
        self._builder = (prefix, (builder, item, 0, 0))
        self._build(prefix, event, value)

    def _build(self, prefix: str, event: str, value: Any) -> None:
        assert self._builder is not None
        name, (builder, item, depth, events) = self._builder
        builder.event(event, value)
        depth += {"start_map": 1, "start_array": 1, "end_map": -1, "end_array": -1}.get(event, 0)
        if events > MAX_METADATA_BYTES:  # each value takes a byte of JSON at least
            raise InvalidParameterError(
                f"{name.replace('|', '.')}: at most {MAX_METADATA_BYTES} bytes as JSON"
            )
        if depth > 0:
            self._builder = (name, (builder, item, depth, events + 1))
            return
        self._builder = None
        if item is None:
            self.features = builder.value
        else:
            item.metadata = builder.value


def _short(error: Exception) -> str:
    return " ".join(str(error).split())[:200]
