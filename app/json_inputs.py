"""The JSON form of an audio request, ``{"inputs": [...]}``, parsed piece by piece as it arrives.

ijson's events become float32 blocks run by run (a request holds about twice its audio in float32
at most), and limits are checked while parsing. ``NaN``, ``Infinity`` and numbers beyond float64
get the answer that non-finite samples in a file get.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass, field
from typing import Any

import ijson
import numpy as np
from pydantic import TypeAdapter, ValidationError

from vggish.audio import decode as audio
from vggish.errors import InvalidAudioError, LimitExceededError
from vggish.pipeline.options import EmbedOptions
from vggish.pipeline.source import Limits, Waveform

from .errors import InvalidParameterError, MissingAudioError
from .schemas import INT16_MAX, INT16_MIN, MAX_FLOAT_SAMPLE, InputName, SampleRate, SampleType

ParsedInput = tuple[str | None, bytes | Waveform]
"""An input's name and its audio: a file's bytes, or samples."""

_BACKEND = ijson.get_backend("yajl2_c")
_NO_OPTIONS = EmbedOptions()  # seconds limits do not depend on the options
_FIELD_TYPES: dict[str, TypeAdapter[Any]] = {
    "sample_rate": TypeAdapter(SampleRate),
    "dtype": TypeAdapter(SampleType),
    "name": TypeAdapter(InputName),
}
_FILE_FIELDS = frozenset({"audio_base64", "name"})
_KNOWN_FIELDS = frozenset({"samples", "audio_base64", *_FIELD_TYPES})
_NON_FINITE = ("NaN", "Infinity", "-Infinity")
_SHOWN_KEY = 64  # characters of an unknown key shown in messages
_SCALARS = frozenset({"number", "string", "boolean", "null"})

# where the parser is, so what the next event may be: the body's object, `inputs`' array, an
# input's object or one of its values, a samples array (mono, frames, inside a frame), the end
_START, _TOP, _LIST, _INPUTS, _ITEM, _VALUE, _SAMPLES, _FRAMES, _ROW, _END = range(10)
_IN_SAMPLES = (_SAMPLES, _FRAMES, _ROW)
_TOKEN_CHARS = frozenset("+-.0123456789aefinrtyINE")  # of numbers and of NaN, Infinity


@dataclass(frozen=True)
class BodyLimits:
    """``max_inputs``, ``max_input_seconds`` and ``max_request_seconds``."""

    inputs: int
    input_seconds: float
    request_seconds: float


def _invalid(path: str, message: str) -> InvalidParameterError:
    return InvalidParameterError(f"{path}: {message}", errors=[{"field": path, "message": message}])


@dataclass
class _Item:
    """One input as it is read: its fields, and its samples or file bytes so far."""

    index: int
    fields: dict[str, Any] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)  # its keys so far
    blocks: list[np.ndarray] = field(default_factory=list)
    frames: int = 0
    channels: int | None = None  # None: mono, a flat list
    row: list[float] = field(default_factory=list)  # the frame being read
    low: float = math.inf
    high: float = -math.inf
    integral: bool = True
    data: bytes | None = None

    @property
    def path(self) -> str:
        return f"inputs.{self.index}"

    @property
    def label(self) -> str:
        name = self.fields.get("name")
        return repr(name) if name else self.path


class JsonInputs:
    """Parses one JSON body fed in pieces into the request's inputs, under ``limits``."""

    def __init__(self, limits: BodyLimits) -> None:
        self.limits = limits
        self._events = ijson.sendable_list()
        self._parser = _BACKEND.basic_parse_coro(self._events, use_float=True)
        self._received = 0
        self._state = _START
        self._has_inputs = False
        self._key = ""  # the key whose value comes next
        self._item: _Item | None = None
        self._inputs: list[ParsedInput] = []
        self._seconds = 0.0  # audio seconds of the inputs read so far

    def feed(self, data: bytes) -> None:
        self._received += len(data)
        self._parse(lambda: self._parser.send(data))

    def finish(self, data: bytes = b"") -> list[ParsedInput]:
        """Reads the last piece and returns the inputs."""
        if data:
            self.feed(data)
        if not self._received:
            raise MissingAudioError('the JSON body is empty: send {"inputs": [...]}')
        self._parse(self._parser.close)
        assert self._state == _END
        return self._inputs

    def _parse(self, step: Any) -> None:
        """Runs one step of the parser, then reads its events (those before a syntax error too)."""
        try:
            step()
        except ijson.JSONError as e:
            self._read(self._events)
            raise self._syntax_error(str(e)) from None
        self._read(self._events)

    def _syntax_error(self, message: str) -> Exception:
        """A non-finite number among samples is invalid audio; anything else is malformed JSON."""
        reason = message.splitlines()[0] if message.strip() else "it is not JSON"
        item = self._item
        if item is not None and self._state in _IN_SAMPLES:
            if "integer overflow" in reason:
                return InvalidAudioError(f"{item.path}.samples: a number beyond any sample's range")
            if "floating point) overflow" in reason or _token_at_error(message) in _NON_FINITE:
                try:
                    audio.check_finite(np.array([math.nan]), item.frames)
                except InvalidAudioError as e:
                    return InvalidAudioError(f"{item.label}: {e}")
        if item is None:
            where = {_START: "the body", _TOP: "the body", _END: "what follows it"}.get(self._state, "inputs")
        else:
            where = item.path if self._state == _ITEM else f"{item.path}.{self._key}"
        if "premature EOF" in reason:
            return InvalidParameterError(f"the JSON body is malformed: it ends inside {where}")
        return InvalidParameterError(f"the JSON body is malformed in {where}: {reason}")

    # --- the document -------------------------------------------------------------------------

    def _read(self, events: list[tuple[str, Any]]) -> None:
        at, count = 0, len(events)
        while at < count:
            if self._state in _IN_SAMPLES:
                at = self._samples(events, at)
                continue
            event, value = events[at]
            at += 1
            self._event(event, value)
        events.clear()

    def _event(self, event: str, value: Any) -> None:
        state = self._state
        if state == _START:
            if event != "start_map":
                raise _invalid("body", "must be a JSON object")
            self._state = _TOP
        elif state == _TOP:
            self._top(event, value)
        elif state == _LIST:
            if event != "start_array":
                raise _invalid("inputs", "must be an array")
            self._state = _INPUTS
        elif state == _INPUTS:
            if event == "end_array":
                self._state = _TOP
            elif event != "start_map":
                raise _invalid(f"inputs.{len(self._inputs)}", "must be a JSON object")
            elif len(self._inputs) >= (most := self.limits.inputs):
                raise LimitExceededError(
                    "max_inputs", f"more than {most} inputs sent; at most {most} a request"
                )
            else:
                self._item = _Item(len(self._inputs))
                self._state = _ITEM
        elif state == _ITEM:
            self._member(event, value)
        else:
            self._value(event, value)

    def _top(self, event: str, key: Any) -> None:
        if event == "end_map":
            if not self._has_inputs:
                raise _invalid("inputs", "Field required")
            if not self._inputs:
                raise _invalid("inputs", "send at least one input")
            self._state = _END
        elif key != "inputs":
            raise _invalid(_shown(key), "unknown field: the body holds `inputs` only")
        elif self._has_inputs:
            raise _invalid("inputs", "given twice")
        else:
            self._has_inputs = True
            self._state = _LIST

    def _member(self, event: str, key: Any) -> None:
        item = self._item
        assert item is not None
        if event == "end_map":
            self._inputs.append(self._finish(item))
            self._item = None
            self._state = _INPUTS
            return
        if key not in _KNOWN_FIELDS:
            raise _invalid(
                f"{item.path}.{_shown(key)}",
                "unknown field: an input holds `samples`, `sample_rate`, `dtype` and `name`, "
                "or `audio_base64` and `name`",
            )
        if key in item.seen:
            raise _invalid(f"{item.path}.{key}", "given twice")
        item.seen.add(key)
        self._key = key
        self._state = _VALUE

    def _value(self, event: str, value: Any) -> None:
        item = self._item
        assert item is not None
        key, path = self._key, f"{item.path}.{self._key}"
        self._state = _ITEM
        if key == "samples":
            if event != "start_array":
                raise _invalid(path, "must be an array of numbers, or of frames of numbers")
            self._state = _SAMPLES
        elif key == "audio_base64":
            if event != "string":
                raise _invalid(path, "must be a string: the file's bytes in base64")
            item.data = _base64(value, path)
        elif event not in _SCALARS:
            raise _invalid(path, "must be a number, a string or null")
        else:
            try:
                item.fields[key] = _FIELD_TYPES[key].validate_python(value)
            except ValidationError as e:
                raise _invalid(path, e.errors()[0]["msg"]) from e
            self._check(item)

    # --- samples --------------------------------------------------------------------------------

    def _samples(self, events: list[tuple[str, Any]], at: int) -> int:
        """Reads sample events from ``at`` while they last; returns where it stopped."""
        item = self._item
        assert item is not None
        values: list[float] = []
        count = len(events)
        path = f"{item.path}.samples"
        while at < count:
            event, value = events[at]
            state = self._state
            if event == "number":
                if state == _FRAMES:
                    raise InvalidAudioError(f"{path}: rows must all have the same number of channels")
                (item.row if state == _ROW else values).append(value)
            elif event == "end_array":
                if state == _ROW:
                    self._end_row(item, path, values)
                    self._state = _FRAMES
                else:
                    self._state = _ITEM
                    at += 1
                    break
            elif event == "start_array":
                if state == _ROW or (state == _SAMPLES and (values or item.frames)):
                    raise _invalid(path, "must be an array of numbers, or of frames of numbers")
                self._state = _ROW
            else:
                raise _invalid(path, "must hold numbers only (or frames of numbers)")
            at += 1
        if len(item.row) > audio.MAX_CHANNELS:  # a frame too long to be one: refused before it ends
            self._end_row(item, path, values)
        if values:
            shape = (-1,) if item.channels is None else (-1, item.channels)
            self._add(item, path, np.array(values, dtype=np.float64).reshape(shape))
        return at

    def _end_row(self, item: _Item, path: str, values: list[float]) -> None:
        row = item.row
        try:
            audio.check_array_channels((1, len(row)))
        except InvalidAudioError as e:
            raise InvalidAudioError(f"{path}: {e}") from None
        if item.channels is None:
            item.channels = len(row)
        elif len(row) != item.channels:
            raise InvalidAudioError(f"{path}: rows must all have the same number of channels")
        values.extend(row)
        row.clear()

    def _add(self, item: _Item, path: str, values: np.ndarray) -> None:
        try:
            audio.check_finite(values, item.frames)  # the message every source gives
        except InvalidAudioError as e:
            raise InvalidAudioError(f"{item.label}: {e}") from None
        item.low = min(item.low, float(values.min()))
        item.high = max(item.high, float(values.max()))
        item.integral = item.integral and bool(np.all(values == np.rint(values)))
        with np.errstate(over="ignore"):  # out-of-range values are refused by _check
            item.blocks.append(values.astype(np.float32))
        item.frames += len(values)
        self._check(item)

    def _check(self, item: _Item) -> None:
        """What can be refused now: the values for their dtype, the length for the limits."""
        dtype = item.fields.get("dtype")
        if dtype is not None:
            _check_range(item, dtype)
        rate = item.fields.get("sample_rate")
        if rate is not None and item.frames:
            self._limits().check_length(item.frames, rate, _NO_OPTIONS, item.label)

    def _limits(self) -> Limits:
        """This input's seconds: its own limit, or what the request has left."""
        spare = self.limits.request_seconds - self._seconds
        if spare < self.limits.input_seconds:
            return Limits(seconds=max(spare, 0.0), seconds_name="max_request_seconds")
        return Limits(seconds=self.limits.input_seconds)

    # --- the input, whole -----------------------------------------------------------------------

    def _finish(self, item: _Item) -> ParsedInput:
        name = item.fields.get("name")
        if item.data is not None:
            extra = sorted(item.seen - _FILE_FIELDS)
            if extra:
                raise _invalid(f"{item.path}.{extra[0]}", "unknown field for an `audio_base64` input")
            return name, item.data
        if "samples" not in item.seen:
            raise _invalid(item.path, "send `samples` (with `sample_rate`) or `audio_base64`")
        if "sample_rate" not in item.fields:
            raise _invalid(f"{item.path}.sample_rate", "Field required")
        dtype = item.fields.get("dtype", "float32")
        _check_range(item, dtype)
        self._seconds += item.frames / item.fields["sample_rate"]
        return name, Waveform(_joined(item, dtype), item.fields["sample_rate"])


def _shown(key: object) -> str:
    text = str(key)
    return text if len(text) <= _SHOWN_KEY else text[:_SHOWN_KEY] + "..."


def _token_at_error(message: str) -> str:
    """The word under the caret of yajl's message, e.g. ``NaN`` (or ``Na`` where the piece ended)."""
    lines = message.splitlines()
    if len(lines) < 3 or "^" not in lines[2]:
        return ""
    text, caret = lines[1], lines[2].index("^")
    start = end = min(caret, len(text))
    while start > 0 and text[start - 1] in _TOKEN_CHARS:
        start -= 1
    while end < len(text) and text[end] in _TOKEN_CHARS:
        end += 1
    word = text[start:end]
    return next((token for token in _NON_FINITE if word.strip("-") and token.startswith(word)), word)


def _check_range(item: _Item, dtype: str) -> None:
    """Float samples within ±MAX_FLOAT_SAMPLE; int16 samples whole and within int16."""
    if not item.frames:
        return
    if dtype != "int16":
        check_float_peak(max(-item.low, item.high), item.label, '"dtype": "int16"')
    elif not item.integral or item.low < INT16_MIN or item.high > INT16_MAX:
        raise InvalidAudioError(
            f'{item.label}: "dtype": "int16" takes whole numbers in [{INT16_MIN}, {INT16_MAX}]; '
            f"the samples span [{item.low:g}, {item.high:g}]"
            + ("" if item.integral else " and are not all whole numbers")
        )


def check_float_peak(peak: float, label: str, int16: str) -> None:
    """Refuses float samples beyond ±MAX_FLOAT_SAMPLE (``int16``: how to send integers instead)."""
    if peak > MAX_FLOAT_SAMPLE:
        raise InvalidAudioError(
            f"{label}: float samples reach {peak:g}, but full scale is 1 (at most {MAX_FLOAT_SAMPLE:g} "
            f"is accepted): scale them, e.g. int16 values / 32768, or send {int16}"
        )


def _joined(item: _Item, dtype: str) -> np.ndarray:
    """The input's blocks as one array, each freed once copied."""
    shape = (item.frames,) if item.channels is None else (item.frames, item.channels)
    out = np.empty(shape, np.int16 if dtype == "int16" else np.float32)
    blocks, at = item.blocks, 0
    blocks.reverse()
    while blocks:
        block = blocks.pop()
        out[at : at + len(block)] = block
        at += len(block)
    return out


def _base64(text: str, path: str) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidParameterError(f"{path} is not valid base64 ({e})") from e
    if not data:
        raise MissingAudioError(f"{path} is empty")
    return data
