"""The JSON form of an audio request, ``{"inputs": [...]}``, parsed piece by piece as it arrives.

Each input is a file in base64 (``audio_base64``) or samples as numbers (``samples``,
``sample_rate``, ``dtype``; see :mod:`.schemas`). A body of 100 MB can hold 50 million numbers:
parsed whole into Python objects that is some 40 bytes a sample before the audio is even looked
at. Here the body is fed in pieces (:meth:`JsonInputs.feed`) and read as it comes:

* the skeleton (keys, names, rates) by a small tokenizer that holds at most one short value;
* each ``samples`` array straight into float32 blocks, a run of numbers at a time (read by
  pydantic-core's JSON parser, which also takes ``NaN`` and ``Infinity`` so that they get the
  same answer as non-finite samples in a file);
* each ``audio_base64`` string straight into the file's bytes.

Limits are checked while parsing, before the audio is held: ``max_inputs`` as each input starts,
and an input's length against ``max_input_seconds`` and what ``max_request_seconds`` has left as
soon as its rate is known (numbers are counted as they arrive). A request then holds about twice
its audio in float32 at most (the blocks, then the array they make), plus one piece of the body.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from vggish.audio import decode as audio
from vggish.errors import InvalidAudioError, LimitExceededError
from vggish.pipeline.options import EmbedOptions
from vggish.pipeline.source import Limits, Waveform

from .errors import InvalidParameterError, MissingAudioError
from .schemas import INT16_MAX, INT16_MIN, MAX_FLOAT_SAMPLE, InputName, SampleRate, SampleType

T = TypeVar("T")
Step = Generator[None, None, T]
"""A step of the parser: it yields when it needs more of the body, then returns its value."""
ParsedInput = tuple[str | None, bytes | Waveform]
"""An input's name and its audio: a file's bytes, or samples."""

FEED_BYTES = 1 << 18  # body bytes handed to the parser at a time
MAX_TOKEN_BYTES = 4096  # a name, rate or dtype
MAX_KEY_BYTES = 64  # a key (the longest known is 12)
MAX_ROW_BYTES = 1 << 16  # one frame of samples as text (at most 64 channels)
MAX_NUMBER_BYTES = 1 << 16  # one number as text
_NON_SPACE = re.compile(rb"[^ \t\r\n]")
_TOKEN_END = re.compile(rb"[ \t\r\n,\]}]")
_FRAMES_END = re.compile(rb"\][ \t\r\n]*\]")  # the last frame's end, then the array's
_SPACE = b" \t\r\n"
_NUMBER = b"0123456789+-.eE" + b"NaInfity"  # JSON numbers, NaN, Infinity
_SAMPLE_CHARS = _NUMBER + _SPACE + b","
_FRAME_CHARS = _SAMPLE_CHARS + b"[]"
_NO_OPTIONS = EmbedOptions()  # seconds limits do not depend on the options
_FIELD_TYPES: dict[str, TypeAdapter[Any]] = {
    "sample_rate": TypeAdapter(SampleRate),
    "dtype": TypeAdapter(SampleType),
    "name": TypeAdapter(InputName),
}
FILE_FIELDS = frozenset({"audio_base64", "name"})


@dataclass(frozen=True)
class BodyLimits:
    """What one JSON body may carry.

    Attributes:
        inputs: inputs per request (``max_inputs``).
        input_seconds: audio seconds per input (``max_input_seconds``).
        request_seconds: audio seconds per request (``max_request_seconds``).
    """

    inputs: int
    input_seconds: float
    request_seconds: float


def _invalid(path: str, message: str) -> InvalidParameterError:
    return InvalidParameterError(f"{path}: {message}", errors=[{"field": path, "message": message}])


class _Body:
    """The unread part of the body, with the reading steps the parser is made of."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0  # next unread byte of ``buf``
        self.before = 0  # bytes dropped from the front of ``buf``
        self.ended = False
        self.received = 0

    def add(self, data: bytes) -> None:
        del self.buf[: self.pos]
        self.before += self.pos
        self.pos = 0
        self.buf += data
        self.received += len(data)

    def malformed(self, what: str) -> InvalidParameterError:
        return InvalidParameterError(f"the JSON body is malformed at byte {self.before + self.pos}: {what}")

    def more(self, what: str) -> Step[None]:
        """Waits for more of the body; the body ending first is malformed (``what`` is unfinished)."""
        if self.ended:
            raise self.malformed(f"it ends inside {what}")
        yield

    def peek(self, what: str) -> Step[int]:
        """The next byte that is not white space (not consumed)."""
        while (found := _NON_SPACE.search(self.buf, self.pos)) is None:
            self.pos = len(self.buf)
            yield from self.more(what)
        self.pos = found.start()
        return self.buf[self.pos]

    def expect(self, char: bytes, what: str) -> Step[None]:
        if (yield from self.peek(what)) != char[0]:
            raise self.malformed(f"expected {char.decode()!r} {what}")
        self.pos += 1

    def closing_quote(self, start: int, limit: int) -> int:
        """Where the short string whose content starts at ``start`` ends (its quote), looking no
        further than ``limit`` bytes; -1 if not there (yet)."""
        stop = min(len(self.buf), start + limit + 1)
        quote = self.buf.find(b'"', start, stop)
        while quote >= 0:  # at most `limit` bytes, so counting each quote's backslashes is bounded
            slashes = quote - start - len(self.buf[start:quote].rstrip(b"\\"))
            if slashes % 2 == 0:
                return quote
            quote = self.buf.find(b'"', quote + 1, stop)
        return -1

    def scalar(self, path: str, limit: int = MAX_TOKEN_BYTES) -> Step[Any]:
        """A short string, number, ``true``, ``false`` or ``null`` (at most ``limit`` bytes)."""
        first = yield from self.peek(path)
        if first in b"{[":
            raise _invalid(path, "must be a number, a string or null")
        while True:
            if first == ord('"'):
                quote = self.closing_quote(self.pos + 1, limit)
                end = quote + 1 if quote >= 0 else -1
            else:
                found = _TOKEN_END.search(self.buf, self.pos)
                end = found.start() if found else -1
            if (end if end >= 0 else len(self.buf)) - self.pos > limit:
                raise _invalid(path, f"a key or value longer than {limit} bytes")
            if end >= 0:
                break
            yield from self.more(path)
        token = bytes(self.buf[self.pos : end])
        try:
            value = from_json(token)
        except ValueError as e:
            raise self.malformed(f"{path}: {e}") from e
        self.pos = end
        return value

    def key(self, where: str) -> Step[str]:
        if (yield from self.peek(where)) != ord('"'):
            raise self.malformed(f"expected a key in {where}")
        value = yield from self.scalar(where, MAX_KEY_BYTES)
        assert isinstance(value, str)
        return value

    def members(self, path: str, member: Callable[[str], Step[None]]) -> Step[None]:
        """An object: ``member(key)`` reads each value; a key given twice is refused."""
        where = path or "the body"
        if (yield from self.peek(where)) != ord("{"):
            raise _invalid(path or "body", "must be a JSON object")
        self.pos += 1
        if (yield from self.peek(where)) == ord("}"):
            self.pos += 1
            return
        seen: set[str] = set()
        while True:
            key = yield from self.key(where)
            if key in seen:
                raise _invalid(f"{path}.{key}".lstrip("."), "given twice")
            seen.add(key)
            yield from self.expect(b":", f"after the key {key!r}")
            yield from member(key)
            if (yield from self.separator(b"}", where)):
                return

    def elements(self, path: str, element: Callable[[int], Step[None]]) -> Step[int]:
        """An array: ``element(index)`` reads each item; returns how many there were."""
        if (yield from self.peek(path)) != ord("["):
            raise _invalid(path, "must be an array")
        self.pos += 1
        if (yield from self.peek(path)) == ord("]"):
            self.pos += 1
            return 0
        index = 0
        while True:
            yield from element(index)
            index += 1
            if (yield from self.separator(b"]", path)):
                return index

    def separator(self, close: bytes, where: str) -> Step[bool]:
        """Reads ``,`` (False: more follows) or ``close`` (True: the end)."""
        char = yield from self.peek(where)
        self.pos += 1
        if char == close[0]:
            return True
        if char != ord(","):
            self.pos -= 1
            raise self.malformed(f"expected ',' or {close.decode()!r} in {where}")
        return False

    def end(self) -> Step[None]:
        """Nothing but white space may follow the document."""
        while True:
            if _NON_SPACE.search(self.buf, self.pos) is not None:
                raise self.malformed("data after the JSON object")
            self.pos = len(self.buf)
            if self.ended:
                return
            yield


@dataclass
class _Item:
    """One input as it is read: its fields, and its samples or file bytes so far."""

    index: int
    fields: dict[str, Any] = field(default_factory=dict)
    blocks: list[np.ndarray] = field(default_factory=list)
    frames: int = 0
    channels: int | None = None  # None: mono, a flat list
    has_samples: bool = False
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
    """Parses one JSON body fed in pieces into the request's inputs, under ``limits``.

    Raises (from :meth:`feed` and :meth:`finish`):
        InvalidParameterError: malformed JSON, unknown or invalid fields, bad base64 (422).
        InvalidAudioError: samples that are not audio: NaN or infinity, ragged frames, out of
            range for their ``dtype`` (422).
        LimitExceededError: more inputs or seconds than the limits allow (413).
        MissingAudioError: an empty body or an empty file (400).
    """

    def __init__(self, limits: BodyLimits) -> None:
        self.limits = limits
        self._body = _Body()
        self._inputs: list[ParsedInput] = []
        self._seconds = 0.0  # audio seconds of the inputs read so far
        self._steps = self._document()
        self._result: list[ParsedInput] | None = None

    def feed(self, data: bytes) -> None:
        """Reads the next piece of the body."""
        self._body.add(data)
        self._advance()

    def finish(self, data: bytes = b"") -> list[ParsedInput]:
        """Reads the last piece and returns the inputs, in order."""
        self._body.add(data)
        self._body.ended = True
        if not self._body.received:
            raise MissingAudioError('the JSON body is empty: send {"inputs": [...]}')
        self._advance()
        assert self._result is not None
        return self._result

    def _advance(self) -> None:
        try:
            next(self._steps)
        except StopIteration as done:
            self._result = done.value

    def _document(self) -> Step[list[ParsedInput]]:
        body = self._body
        count = -1

        def member(key: str) -> Step[None]:
            nonlocal count
            if key != "inputs":
                raise _invalid(key, "unknown field: the body holds `inputs` only")
            count = yield from body.elements("inputs", self._input)

        yield from body.members("", member)
        if count < 0:
            raise _invalid("inputs", "Field required")
        if count == 0:
            raise _invalid("inputs", "send at least one input")
        yield from body.end()
        return self._inputs

    def _input(self, index: int) -> Step[None]:
        if index >= self.limits.inputs:
            most = self.limits.inputs
            raise LimitExceededError(
                "max_inputs", f"more than {most} inputs sent; at most {most} per request"
            )
        item = _Item(index)
        yield from self._body.members(item.path, lambda key: self._field(item, key))
        self._inputs.append(self._finish(item))

    def _field(self, item: _Item, key: str) -> Step[None]:
        path = f"{item.path}.{key}"
        if key == "samples":
            item.has_samples = True
            yield from self._samples(item, path)
        elif key == "audio_base64":
            item.data = yield from self._base64(path)
        elif key in _FIELD_TYPES:
            value = yield from self._body.scalar(path)
            try:
                item.fields[key] = _FIELD_TYPES[key].validate_python(value)
            except ValidationError as e:
                raise _invalid(path, e.errors()[0]["msg"]) from e
            self._check(item)
        else:
            raise _invalid(
                path,
                "unknown field: an input holds `samples`, `sample_rate`, `dtype` and `name`, "
                "or `audio_base64` and `name`",
            )

    # --- samples ----------------------------------------------------------------------------

    def _samples(self, item: _Item, path: str) -> Step[None]:
        body = self._body
        if (yield from body.peek(path)) != ord("["):
            raise _invalid(path, "must be an array of numbers, or of frames of numbers")
        body.pos += 1
        first = yield from body.peek(path)
        if first == ord("]"):
            body.pos += 1
        elif first == ord("["):
            yield from self._frames(item, path)
        else:
            yield from self._mono(item, path)

    def _mono(self, item: _Item, path: str) -> Step[None]:
        """A flat array of numbers, one run (up to the last comma, or the end) at a time."""
        body = self._body
        while True:
            end = body.buf.find(b"]", body.pos)
            stop = end if end >= 0 else body.buf.rfind(b",", body.pos)
            if stop >= body.pos:
                self._add(item, path, _numbers(bytes(body.buf[body.pos : stop]), path, _SAMPLE_CHARS))
                body.pos = stop + 1
                if end >= 0:
                    return
                continue
            if len(body.buf) - body.pos > MAX_NUMBER_BYTES:
                raise _invalid(path, f"holds a number longer than {MAX_NUMBER_BYTES} characters")
            yield from body.more(path)

    def _frames(self, item: _Item, path: str) -> Step[None]:
        """An array of frames, ``[[l, r], ...]``, one run of whole frames at a time."""
        body = self._body
        first = True
        while True:
            if not first and (yield from body.separator(b"]", path)):
                return
            first = False
            while True:
                last = _FRAMES_END.search(body.buf, body.pos)
                stop = last.start() if last else body.buf.rfind(b"]", body.pos)
                if stop >= body.pos:
                    break
                if len(body.buf) - body.pos > MAX_ROW_BYTES:
                    raise InvalidAudioError(
                        f"{path}: a frame longer than {MAX_ROW_BYTES} bytes: frames hold 1 to "
                        f"{audio.MAX_CHANNELS} channels (an array of channels, samples: send it transposed)"
                    )
                yield from body.more(path)
            rows = _numbers(bytes(body.buf[body.pos : stop + 1]), path, _FRAME_CHARS)
            body.pos = stop + 1
            self._add(item, path, _frames(rows, item, path))

    def _add(self, item: _Item, path: str, values: np.ndarray) -> None:
        """Checks a run of samples, keeps it as float32 and checks the limits."""
        try:
            audio.check_finite(values, item.frames)  # the message every source gives
        except InvalidAudioError as e:
            raise InvalidAudioError(f"{item.label}: {e}") from None
        if len(values):
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
        """This input's seconds: its own limit, or what the request has left if that is less."""
        spare = self.limits.request_seconds - self._seconds
        if spare < self.limits.input_seconds:
            return Limits(seconds=max(spare, 0.0), seconds_name="max_request_seconds")
        return Limits(seconds=self.limits.input_seconds)

    # --- files ------------------------------------------------------------------------------

    def _base64(self, path: str) -> Step[bytes]:
        body = self._body
        if (yield from body.peek(path)) != ord('"'):
            raise _invalid(path, "must be a string: the file's bytes in base64")
        body.pos += 1
        decoder = _Base64(path)
        while True:
            # base64 holds neither quotes nor backslashes: the first quote ends it, unless escaped,
            # which makes the value invalid anyway (and an escaped backslash before it, too)
            quote = body.buf.find(b'"', body.pos)
            if quote > body.pos and body.buf[quote - 1] == ord("\\"):
                raise decoder.error("a quote or a backslash in it")
            stop = quote if quote >= 0 else _escape_free_end(body.buf, body.pos)
            decoder.add(bytes(body.buf[body.pos : stop]))
            body.pos = stop
            if quote >= 0:
                body.pos += 1
                return decoder.finish()
            yield from body.more(path)

    # --- the input, whole -------------------------------------------------------------------

    def _finish(self, item: _Item) -> ParsedInput:
        name = item.fields.get("name")
        given = set(item.fields) | ({"samples"} if item.has_samples else set())
        if item.data is not None:
            extra = sorted(given - FILE_FIELDS)
            if extra:
                raise _invalid(f"{item.path}.{extra[0]}", "unknown field for an `audio_base64` input")
            return name, item.data
        if not item.has_samples:
            raise _invalid(item.path, "send `samples` (with `sample_rate`) or `audio_base64`")
        if "sample_rate" not in item.fields:
            raise _invalid(f"{item.path}.sample_rate", "Field required")
        dtype = item.fields.get("dtype", "float32")
        _check_range(item, dtype)
        self._seconds += item.frames / item.fields["sample_rate"]
        return name, Waveform(_joined(item, dtype), item.fields["sample_rate"])


def _numbers(text: bytes, path: str, allowed: bytes) -> np.ndarray:
    """A run of numbers (or of frames) as float64: ``1, 2.5, NaN`` or ``[1, 2], [3, 4]``."""
    if text.translate(None, allowed):
        raise _invalid(path, "must hold numbers only (or frames of numbers)")
    if not text.strip(_SPACE):
        raise _invalid(path, "an empty element (a comma too many?)")
    try:
        values = from_json(b"[" + text + b"]")
    except ValueError as e:
        raise _invalid(path, f"malformed numbers ({e})") from e
    try:
        return np.array(values, dtype=np.float64)
    except OverflowError as e:  # an integer beyond float64
        raise InvalidAudioError(f"{path}: a number beyond any sample's range") from e
    except ValueError as e:  # frames of different lengths, or numbers mixed with frames
        raise InvalidAudioError(f"{path}: rows must all have the same number of channels") from e


def _frames(rows: np.ndarray, item: _Item, path: str) -> np.ndarray:
    if rows.ndim != 2:
        raise InvalidAudioError(f"{path}: frames must be flat lists of numbers, one per channel")
    try:
        audio.check_array_channels(rows.shape)
    except InvalidAudioError as e:
        raise InvalidAudioError(f"{path}: {e}") from None
    if item.channels is None:
        item.channels = int(rows.shape[1])
    elif rows.shape[1] != item.channels:
        raise InvalidAudioError(f"{path}: rows must all have the same number of channels")
    return rows


def _check_range(item: _Item, dtype: str) -> None:
    """Float samples within ±MAX_FLOAT_SAMPLE; int16 samples whole and within int16."""
    if not item.frames:
        return
    if dtype == "int16":
        if not item.integral or item.low < INT16_MIN or item.high > INT16_MAX:
            raise InvalidAudioError(
                f'{item.label}: "dtype": "int16" takes whole numbers in [{INT16_MIN}, {INT16_MAX}]; '
                f"the samples span [{item.low:g}, {item.high:g}]"
                + ("" if item.integral else " and are not all whole numbers")
            )
        return
    peak = max(-item.low, item.high)
    if peak > MAX_FLOAT_SAMPLE:
        raise InvalidAudioError(
            f"{item.label}: float samples reach {peak:g}, but full scale is 1 (at most "
            f"{MAX_FLOAT_SAMPLE:g} is accepted): scale them, e.g. int16 values / 32768, "
            'or send "dtype": "int16"'
        )


def _joined(item: _Item, dtype: str) -> np.ndarray:
    """The input's blocks as one array, each block freed once copied."""
    shape = (item.frames,) if item.channels is None else (item.frames, item.channels)
    out = np.empty(shape, np.int16 if dtype == "int16" else np.float32)
    blocks, at = item.blocks, 0
    blocks.reverse()
    while blocks:
        block = blocks.pop()
        out[at : at + len(block)] = block
        at += len(block)
    return out


def _escape_free_end(buf: bytearray, start: int) -> int:
    """Where base64 text read so far may be cut without splitting an escape (``\\/``, ``\\u002F``):
    before a backslash among the last 6 bytes. (A cut inside ``\\\\`` fails to decode, as the
    backslash it stands for would.)"""
    slash = buf.rfind(b"\\", max(start, len(buf) - 6))
    return slash if slash >= 0 else len(buf)


class _Base64:
    """Base64 text, fed in pieces, decoded into the file's bytes (4 characters at a time)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.out = bytearray()
        self.carry = b""
        self.padded = False

    def add(self, text: bytes) -> None:
        if b"\\" in text:  # escaped characters, e.g. "\/" from some encoders
            try:
                text = str(from_json(b'"' + text + b'"')).encode("ascii", "replace")
            except ValueError as e:
                raise _invalid(self.path, f"a malformed escape ({e})") from e
        data = self.carry + text
        whole = len(data) - len(data) % 4
        if whole:
            if self.padded:
                raise self.error("data after the padding")
            try:
                self.out += base64.b64decode(data[:whole], validate=True)
            except (binascii.Error, ValueError) as e:
                raise self.error(str(e)) from e
            self.padded = data[whole - 1] == ord("=")
        self.carry = data[whole:]

    def finish(self) -> bytes:
        if self.carry:
            raise self.error("Incorrect padding")
        if not self.out:
            raise MissingAudioError(f"{self.path} is empty")
        return bytes(self.out)

    def error(self, reason: str) -> InvalidParameterError:
        return InvalidParameterError(f"{self.path} is not valid base64 ({reason})")
