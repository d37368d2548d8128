"""The JSON parser of audio requests (ijson, fed piece by piece): any split of the body gives the
same inputs as a whole-body parse, limits are refused before the rest of the body is read, bad
bodies get 4xx kinds."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vggish.errors import InvalidAudioError, LimitExceededError
from vggish.pipeline.source import Waveform
from vggish_app.errors import InvalidParameterError, MissingAudioError
from vggish_app.json_inputs import BodyLimits, JsonInputs, ParsedInput

LIMITS = BodyLimits(inputs=4, input_seconds=600.0, request_seconds=900.0)


def parse(body: bytes, step: int = 1 << 18, limits: BodyLimits = LIMITS) -> list[ParsedInput]:
    parser = JsonInputs(limits)
    for start in range(0, len(body), step):
        parser.feed(body[start : start + step])
    return parser.finish()


def samples_of(parsed: ParsedInput) -> np.ndarray:
    source = parsed[1]
    assert isinstance(source, Waveform)
    return np.asarray(source.samples)


floats = st.floats(-2.0, 2.0, allow_nan=False, width=64)
ints = st.integers(-32768, 32767)


@st.composite
def sample_inputs(draw: st.DrawFn) -> tuple[dict[str, Any], np.ndarray]:
    """An input object (keys in any order) and the array the server must make of it."""
    int16 = draw(st.booleans())
    channels = draw(st.sampled_from([None, 1, 2, 5]))
    values = draw(st.lists(ints if int16 else floats, max_size=60))
    if channels is not None:
        values = values[: len(values) - len(values) % channels]
        rows: Any = [values[i : i + channels] for i in range(0, len(values), channels)]
    else:
        rows = values
    item: dict[str, Any] = {"samples": rows, "sample_rate": draw(st.sampled_from([8000, 16000, 44100]))}
    if int16 or draw(st.booleans()):
        item["dtype"] = "int16" if int16 else "float32"
    if draw(st.booleans()):
        item["name"] = draw(st.text(max_size=20))
    keys = draw(st.permutations(list(item)))
    expected = np.asarray(rows, dtype=np.int16 if int16 else np.float32)
    if channels is not None and not values:
        expected = expected.reshape(0)  # `[]`: no frames, read as an empty mono array
    return {k: item[k] for k in keys}, expected


@settings(max_examples=150, deadline=None)
@given(
    items=st.lists(sample_inputs(), min_size=1, max_size=3),
    indent=st.sampled_from([None, 0, 2]),
    step=st.integers(1, 64),
)
def test_any_split_of_any_body_gives_the_whole_parse(
    items: list[tuple[dict[str, Any], np.ndarray]], indent: int | None, step: int
) -> None:
    body = json.dumps({"inputs": [item for item, _ in items]}, indent=indent).encode()
    parsed = parse(body, step)
    assert len(parsed) == len(items)
    for (name, source), (item, expected) in zip(parsed, items, strict=True):
        assert name == item.get("name") and isinstance(source, Waveform)
        assert source.sample_rate == item["sample_rate"]
        assert source.samples.dtype == expected.dtype
        np.testing.assert_array_equal(source.samples, expected)


@pytest.mark.parametrize("step", [1, 5, 1 << 18])
def test_base64_files_decode_across_pieces(step: int) -> None:
    data = bytes(range(256)) * 40
    text = base64.b64encode(data).decode()
    escaped = json.dumps({"inputs": [{"name": "x.wav", "audio_base64": text}]}).replace("/", "\\/")
    assert "\\/" in escaped  # as PHP's json_encode writes it
    unicode = escaped.replace("\\/", "\\u002F")
    for body in (json.dumps({"inputs": [{"audio_base64": text, "name": "x.wav"}]}), escaped, unicode):
        assert parse(body.encode(), step) == [("x.wav", data)]


def test_int16_samples_are_whole_numbers_in_range() -> None:
    body = b'{"inputs": [{"samples": [[-32768, 32767], [0, 1]], "sample_rate": 8000, "dtype": "int16"}]}'
    samples = samples_of(parse(body)[0])
    assert samples.dtype == np.int16 and samples.tolist() == [[-32768, 32767], [0, 1]]


def test_seconds_limit_is_refused_before_the_rest_of_the_body_is_read() -> None:
    """With the rate first, a 700 s input (11.2 million numbers) is refused within the first
    ~600 s of numbers: the rest is never parsed, so it is never held."""
    head = b'{"inputs": [{"sample_rate": 16000, "samples": ['
    piece = b"0," * 100_000  # 100k samples per piece
    parser = JsonInputs(LIMITS)
    parser.feed(head)
    for _ in range(96):  # 96 pieces: 600 s, at the limit
        parser.feed(piece)
    with pytest.raises(LimitExceededError) as caught:
        parser.feed(piece)  # the 97th passes it; the other 15 are never read
    assert caught.value.limit == "max_input_seconds"


def test_request_seconds_count_the_inputs_before() -> None:
    one = {"samples": [0] * 8000 * 5, "sample_rate": 8000}  # 5 s each
    body = json.dumps({"inputs": [one, one, one]}).encode()
    with pytest.raises(LimitExceededError) as caught:
        parse(body, limits=BodyLimits(inputs=4, input_seconds=6.0, request_seconds=12.0))
    assert caught.value.limit == "max_request_seconds"
    assert len(parse(body, limits=BodyLimits(inputs=4, input_seconds=6.0, request_seconds=15.0))) == 3


def test_inputs_limit_is_refused_as_the_next_input_starts() -> None:
    parser = JsonInputs(LIMITS)
    parser.feed(b'{"inputs": [' + b",".join([b'{"audio_base64": "AAAA"}'] * 4))
    with pytest.raises(LimitExceededError) as caught:
        parser.feed(b', {"audio_base64": "')
    assert caught.value.limit == "max_inputs"


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_non_finite_numbers_are_invalid_audio_wherever_the_body_is_cut(token: str) -> None:
    """Not JSON, but Python's json writes NaN and Infinity: they get the answer non-finite
    samples in a file get, naming the first one, whichever piece of the body they arrive in."""
    for body in (
        b'{"inputs": [{"samples": [0.5, 0.25, %s, 1], "sample_rate": 8000}]}' % token.encode(),
        b'{"inputs": [{"sample_rate": 8000, "samples": [[0.5, 0], [0.25, 0], [0, %s]]}]}' % token.encode(),
    ):
        for cut in range(1, len(body)):
            with pytest.raises(InvalidAudioError, match=NAN_AT_2):
                parse_cut(body, cut)


NAN_AT_2 = r"inputs\.0: the audio contains NaN or infinity \(first at sample 2\)"


def parse_cut(body: bytes, cut: int) -> list[ParsedInput]:
    parser = JsonInputs(LIMITS)
    parser.feed(body[:cut])
    return parser.finish(body[cut:])


def _input(**fields: Any) -> bytes:
    item = {"sample_rate": 16000, **fields}
    return json.dumps({"inputs": [item]}).encode()


def _raw(samples: str) -> bytes:
    """A body whose samples are written as given (JSON that ``json.dumps`` would not write)."""
    return b'{"inputs": [{"samples": [%s], "sample_rate": 8000}]}' % samples.encode()


BAD: dict[str, tuple[bytes, type[Exception], str]] = {
    "nan": (_raw("0.1, NaN"), InvalidAudioError, "NaN or infinity \\(first at sample 1\\)"),
    "infinity": (_raw("-Infinity"), InvalidAudioError, "NaN or infinity"),
    "overflowing float": (_raw("1e400"), InvalidAudioError, "NaN or infinity"),
    "int16-like floats": (_input(samples=[0, 1200, -3000]), InvalidAudioError, "divide by 32768|int16"),
    "int16 not whole": (_input(samples=[0.5], dtype="int16"), InvalidAudioError, "whole numbers"),
    "int16 out of range": (_input(samples=[40000], dtype="int16"), InvalidAudioError, "whole numbers"),
    "huge integer": (_input(samples=[10**400]), InvalidAudioError, "range"),
    "unknown dtype": (_input(samples=[0.1], dtype="int32"), InvalidParameterError, "dtype"),
    "ragged frames": (_input(samples=[[0.1, 0.2], [0.3]]), InvalidAudioError, "same number of channels"),
    "empty frame": (_input(samples=[[]]), InvalidAudioError, "0 channels"),
    "channels first": (_input(samples=[[0.0] * 100] * 3), InvalidAudioError, "transpose|waveform.T"),
    "nested frames": (_input(samples=[[[0.1]]]), InvalidParameterError, "samples"),
    "booleans": (_input(samples=[True, False]), InvalidParameterError, "numbers only"),
    "strings": (_input(samples=["0.1"]), InvalidParameterError, "numbers only"),
    "samples a string": (_input(samples="abc"), InvalidParameterError, "must be an array"),
    "trailing comma": (_raw("1,"), InvalidParameterError, "samples"),
    "no sample rate": (b'{"inputs": [{"samples": [0.1]}]}', InvalidParameterError, "sample_rate: Field requ"),
    "fractional rate": (_input(samples=[0.1], sample_rate=16000.5), InvalidParameterError, "sample_rate"),
    "zero rate": (_input(samples=[0.1], sample_rate=0), InvalidParameterError, "sample_rate"),
    "rate as object": (_input(samples=[0.1], sample_rate={"hz": 1}), InvalidParameterError, "sample_rate"),
    "name over 256": (_input(samples=[0.1], name="n" * 300), InvalidParameterError, "name"),
    "unknown field": (_input(samples=[0.1], colour="red"), InvalidParameterError, "colour: unknown field"),
    "field twice": (b'{"inputs": [{"name": "a", "name": "b"}]}', InvalidParameterError, "given twice"),
    "both forms": (_input(samples=[0.1], audio_base64="AAAA"), InvalidParameterError, "sample_rate"),
    "neither form": (b'{"inputs": [{"name": "a"}]}', InvalidParameterError, "send `samples`"),
    "bad base64": (b'{"inputs": [{"audio_base64": "%%%%"}]}', InvalidParameterError, "not valid base64"),
    "base64 after padding": (b'{"inputs": [{"audio_base64": "AA==AAAA"}]}', InvalidParameterError, "base64"),
    "base64 unpadded": (b'{"inputs": [{"audio_base64": "AAA"}]}', InvalidParameterError, "padding"),
    "empty base64": (b'{"inputs": [{"audio_base64": ""}]}', MissingAudioError, "empty"),
    "no inputs": (b"{}", InvalidParameterError, "inputs: Field required"),
    "empty inputs": (b'{"inputs": []}', InvalidParameterError, "at least one"),
    "inputs not a list": (b'{"inputs": {}}', InvalidParameterError, "must be an array"),
    "unknown top field": (b'{"inputs": [], "x": 1}', InvalidParameterError, "unknown field"),
    "not an object": (b"[1, 2]", InvalidParameterError, "object"),
    "truncated": (
        b'{"inputs": [{"samples": [0.1, 0.2',
        InvalidParameterError,
        "ends inside inputs.0.samples",
    ),
    "trailing data": (_input(samples=[0.1]) + b" {}", InvalidParameterError, "malformed in what follows it"),
    "not JSON": (b"{'inputs': []}", InvalidParameterError, "malformed in the body"),
    "white space only": (b"  \n", InvalidParameterError, "ends inside the body"),
    "long key": (b'{"' + b"k" * 5000 + b'": 1}', InvalidParameterError, "k{64}\\.\\.\\.: unknown field"),
    "long name": (_input(samples=[0.1], name="n" * 5000), InvalidParameterError, "at most 256 characters"),
    "empty body": (b"", MissingAudioError, "empty"),
    "escaped quotes in a name": (
        b'{"inputs": [{"name": "' + b'\\"' * 3000 + b'"}]}',
        InvalidParameterError,
        "at most 256 characters",
    ),
    "frame of 65 channels": (_input(samples=[[0.0] * 65]), InvalidAudioError, "65 channels"),
    "mono then a frame": (_raw("0.1, [0.2]"), InvalidParameterError, "samples: must be an array of numbers"),
    "a frame then a number": (_raw("[0.1], 0.2"), InvalidAudioError, "same number of channels"),
    "backslashes as base64": (
        b'{"inputs": [{"audio_base64": "' + b"\\\\" * 2_000 + b'"}]}',
        InvalidParameterError,
        "base64",
    ),
    "escaped quote in base64": (
        b'{"inputs": [{"audio_base64": "AAAA\\"AAAA"}]}',
        InvalidParameterError,
        "base64",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BAD))
@pytest.mark.parametrize("step", [3, 1 << 18])
def test_bad_bodies(name: str, step: int) -> None:
    body, kind, match = BAD[name]
    with pytest.raises(kind, match=match):
        parse(body, step)
