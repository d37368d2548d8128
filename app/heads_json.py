"""The JSON body of ``POST /v1/heads``, checked while it is parsed (ijson events, as every JSON
body is read: :mod:`app.ingest`): each row of ``embeddings`` becomes float32 as it closes, the
first bad one refused (422); labels, rows and classes are counted against the limits (413) as they
come; the small fields are validated by :class:`~app.schemas.TrainOptions`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import ijson
import numpy as np
from starlette.requests import Request

from vggish import params
from vggish.errors import InvalidInputError, LimitExceededError, plural
from vggish.heads import MAX_ABS_FEATURE, check_label

from .config import Settings
from .ingest import parse_json_body
from .schemas import TrainOptions

SMALL_FIELDS = frozenset(TrainOptions.model_fields)
MAX_SMALL_EVENTS = 64  # a small field's JSON events at most ({"features": {4 keys}} takes 10)
Event = tuple[str, Any]
_WHAT = {"start_map": "an object", "start_array": "a list", "string": "a string", "boolean": "a boolean"}


@dataclass(frozen=True)
class TrainBody:
    """A parsed training body: its fields, its (N, 128) float32 embeddings and its N labels."""

    options: TrainOptions
    embeddings: np.ndarray
    labels: list[str]


class TrainBodyParser:
    """Parses a training body fed in pieces, within ``limits``; each piece's events are checked."""

    def __init__(self, limits: Settings) -> None:
        self.limits = limits
        self.rows: list[np.ndarray] = []
        self.labels: list[str] = []
        self.classes: dict[str, str] = {}  # each label once (repeated labels share it)
        self.fields: dict[str, Any] = {}
        self._events = ijson.sendable_list()
        self._parser = ijson.basic_parse_coro(self._events, use_float=True)
        self._consumer = self._body()
        next(self._consumer)
        self._done = False

    def feed(self, data: bytes) -> None:
        """Parses the next piece (InvalidInputError: bad JSON, row, label or field; LimitExceededError)."""
        if data:  # (an empty piece would tell ijson the body ended)
            self._step(lambda: self._parser.send(data))

    def finish(self, data: bytes = b"") -> TrainBody:
        """Parses the last piece and returns the body; raises as :meth:`feed`, and
        pydantic.ValidationError for the small fields."""
        self.feed(data)
        self._step(self._parser.close)
        missing = [key for key in ("embeddings", "labels") if key not in self.fields]
        if not self._done or missing:
            raise InvalidInputError(
                f"the body is a JSON object with `name`, `embeddings` and `labels`; {missing} missing"
            )
        if len(self.rows) < 2 or len(self.labels) < 2:
            raise InvalidInputError(
                f"a training needs at least 2 embeddings and 2 labels; "
                f"got {len(self.rows)} and {len(self.labels)}"
            )
        options = TrainOptions.model_validate({k: v for k, v in self.fields.items() if k in SMALL_FIELDS})
        return TrainBody(options, np.stack(self.rows), self.labels)

    def _step(self, step: Callable[[], object]) -> None:
        try:
            step()
        except ijson.JSONError as e:  # yajl's message, with the place it points at, on one line
            message = " ".join(str(e).split())[:300]
            raise InvalidInputError(
                f"the body is not valid JSON (numbers are finite: no NaN or Infinity): {message}"
            ) from None
        try:
            for event in self._events:
                self._consumer.send(event)
        except StopIteration:
            self._done = True
        finally:
            self._events.clear()

    def _body(self) -> Generator[None, Event, None]:
        """The top-level object: each field's events go to its reader."""
        event, _ = yield
        if event != "start_map":
            raise InvalidInputError("the body must be a JSON object with `name`, `embeddings` and `labels`")
        while True:
            event, key = yield
            if event == "end_map":
                return
            if key in self.fields:
                raise InvalidInputError(f"the body gives `{key}` twice")
            if key in ("embeddings", "labels"):
                yield from (self._rows() if key == "embeddings" else self._labels())
                self.fields[key] = True
            elif key in SMALL_FIELDS:
                self.fields[key] = yield from self._small(key)
            else:
                raise InvalidInputError(
                    f"unknown field `{key:.64}`: a training body has `embeddings`, `labels` and "
                    f"{sorted(SMALL_FIELDS)}"
                )

    def _rows(self) -> Generator[None, Event, None]:
        """``embeddings``: a list of rows of 128 numbers, each checked as it closes."""
        event, _ = yield
        if event != "start_array":
            raise InvalidInputError("`embeddings` must be a list of rows of 128 numbers")
        while True:
            event, _ = yield
            if event == "end_array":
                return
            where = f"embeddings[{len(self.rows)}]"
            if event != "start_array":
                raise InvalidInputError(f"{where} must be a list of {params.EMBEDDING_SIZE} numbers")
            self._count("max_train_examples", "rows", len(self.rows) + 1)
            row: list[float] = []
            while (item := (yield))[0] == "number":
                if len(row) == params.EMBEDDING_SIZE:
                    raise InvalidInputError(f"{where} holds more than {params.EMBEDDING_SIZE} numbers")
                row.append(item[1])
            if item[0] != "end_array":
                raise InvalidInputError(
                    f"{where} holds {_WHAT.get(item[0], item[0])}: rows hold numbers only"
                )
            self.rows.append(_row(row, where))

    def _labels(self) -> Generator[None, Event, None]:
        """``labels``: a list of label strings, each checked and counted as it comes."""
        event, _ = yield
        if event != "start_array":
            raise InvalidInputError("`labels` must be a list of strings, one per embedding")
        while True:
            event, value = yield
            if event == "end_array":
                return
            where = f"labels[{len(self.labels)}]"
            if event != "string":
                raise InvalidInputError(f"{where} must be a string")
            self._count("max_train_examples", "labels", len(self.labels) + 1)
            try:
                label = self.classes.setdefault(check_label(value), value)
            except InvalidInputError as e:
                raise InvalidInputError(f"{where}: {e}") from None
            self._count("max_train_classes", "classes", len(self.classes))
            self.labels.append(label)

    def _small(self, key: str) -> Generator[None, Event, Any]:
        """A small field's value (at most ``MAX_SMALL_EVENTS`` events), built as JSON would."""
        builder = ijson.ObjectBuilder()
        depth = 0
        for _ in range(MAX_SMALL_EVENTS):
            event, value = yield
            depth += event in ("start_map", "start_array")
            depth -= event in ("end_map", "end_array")
            builder.event(event, value)
            if depth == 0:
                return builder.value
        raise InvalidInputError(f"`{key}` is larger than any valid value of it")

    def _count(self, limit: str, what: str, count: int) -> None:
        most = getattr(self.limits, limit)
        if count > most:
            raise LimitExceededError(limit, f"more than {most} {what} sent; at most {most} per training")


def _row(numbers: list[float], where: str) -> np.ndarray:
    """A closed row as float32, if it is 128 finite numbers within ±MAX_ABS_FEATURE."""
    if len(numbers) != params.EMBEDDING_SIZE:
        raise InvalidInputError(
            f"{where} holds {plural(len(numbers), 'number')}; every row holds {params.EMBEDDING_SIZE}"
        )
    row = np.array(numbers, dtype=np.float64)
    if not np.all(np.abs(row) <= MAX_ABS_FEATURE):
        raise InvalidInputError(
            f"{where} holds values beyond ±{MAX_ABS_FEATURE:g}; VGGish embeddings are far smaller"
        )
    return row.astype(np.float32)


TRAIN_HINT = "send fewer rows or fewer digits, or train from the audio files (multipart/form-data)"


async def read_train_body(request: Request, limits: Settings) -> TrainBody:
    """Reads and parses a JSON training body as it arrives, as every JSON body is
    (:func:`app.ingest.parse_json_body`).

    Raises:
        LimitExceededError: a body over ``max_json_bytes``, or over the training limits (413).
        InvalidInputError, pydantic.ValidationError: a malformed body (422).
        BusyError, BodyTimeoutError, ClientDisconnectedError: as :func:`app.ingest.parse_json_body`.
    """
    parser = TrainBodyParser(limits)
    return await parse_json_body(request, parser.feed, parser.finish, TRAIN_HINT, ": retry later")
