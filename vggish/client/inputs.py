"""Audio inputs -> request bodies (bytes, re-sendable): arrays on the 16-bit grid as PCM WAV, other
float arrays as JSON ``samples``, so the server computes what ``model.embed(array, rate)`` does."""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import httpx
import numpy as np
import soundfile as sf

from vggish.audio.decode import validate_waveform
from vggish.params import INT16_SCALE

FileSource = str | os.PathLike[str] | bytes | BinaryIO
"""A file path, a whole file's bytes, or a readable binary file object."""
AudioInput = FileSource | tuple[np.ndarray, int]
"""A file source, or ``(array, sample_rate)``: (samples,) or (samples, channels), float or int16."""

FORM_PART_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class FilePart:
    """An audio file's bytes, with the name the caller knows it by (None for bytes and arrays)."""

    name: str | None
    data: bytes


@dataclass(frozen=True)
class SamplesPart:
    samples: np.ndarray
    sample_rate: int
    name: str | None = None


WirePart = FilePart | SamplesPart


@dataclass(frozen=True)
class Body:
    content: bytes
    content_type: str


def is_single(inputs: object) -> bool:
    if isinstance(inputs, str | os.PathLike | bytes | bytearray | memoryview):
        return True
    if callable(getattr(inputs, "read", None)):
        return True
    return isinstance(inputs, tuple) and len(inputs) == 2 and isinstance(inputs[0], np.ndarray)


def prepare(inputs: AudioInput | Sequence[AudioInput]) -> list[WirePart]:
    """Reads files and encodes arrays, of one input or a sequence (ValueError: an array the
    library refuses, or no input; TypeError: not an input)."""
    if isinstance(inputs, np.ndarray):
        raise TypeError("an array needs its sample rate: pass (array, sample_rate)")
    items = [inputs] if is_single(inputs) else list(inputs)  # type: ignore[arg-type]
    if not items:
        raise ValueError("no input given: pass a path, bytes, a binary file or (array, sample_rate)")
    return [_prepare_one(item) for item in items]


def read_file(source: object) -> tuple[str | None, bytes]:
    """A path's, bytes' or binary file object's (name, bytes); TypeError for anything else."""
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        with open(path, "rb") as f:
            return os.path.basename(path), f.read()
    if isinstance(source, bytes | bytearray | memoryview):
        return None, bytes(source)
    if isinstance(source, io.TextIOBase):
        raise TypeError("file objects must be opened in binary mode ('rb'), not text mode")
    read = getattr(source, "read", None)
    if not callable(read):
        raise TypeError(f"expected a path, bytes or a binary file object; got {type(source)}")
    name = getattr(source, "name", None)
    return (os.path.basename(name) if isinstance(name, str) else None), bytes(read())


def _prepare_one(item: object) -> WirePart:
    if isinstance(item, np.ndarray):
        raise TypeError("an array needs its sample rate: pass (array, sample_rate)")
    if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], np.ndarray)):
        return FilePart(*read_file(item))
    array, sample_rate = item
    validate_waveform(array, sample_rate)  # the library's checks and errors, before any upload
    pcm = _on_16_bit_grid(array)
    if pcm is not None:
        return FilePart(None, wav_bytes(pcm, int(sample_rate), "PCM_16"))
    return SamplesPart(np.asarray(array, dtype=np.float64), int(sample_rate))


def _on_16_bit_grid(array: np.ndarray) -> np.ndarray | None:
    if array.dtype == np.int16:
        return array
    scaled = np.asarray(array, dtype=np.float64) * INT16_SCALE  # exact: a power of two
    if scaled.size and (scaled.min() < -INT16_SCALE or scaled.max() > INT16_SCALE - 1):
        return None
    return scaled.astype(np.int16) if np.array_equal(scaled, np.rint(scaled)) else None


def wav_bytes(samples: np.ndarray, sample_rate: int, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def as_file(part: WirePart, index: int) -> tuple[str, bytes]:
    """A multipart ``file`` part: (filename, bytes); samples become a float WAV file."""
    if isinstance(part, FilePart):
        return part.name or f"input-{index}", part.data
    return f"input-{index}.wav", wav_bytes(part.samples.astype(np.float32), part.sample_rate, "FLOAT")


def audio_body(parts: Sequence[WirePart], fields: Mapping[str, list[str]] | None = None) -> Body:
    """Multipart (with the form ``fields``) when every input is a file, else JSON ``inputs``."""
    if all(isinstance(part, FilePart) for part in parts):
        return multipart(fields or {}, [as_file(part, i) for i, part in enumerate(parts)])
    return json_body({"inputs": [json_input(part) for part in parts]})


def json_input(part: WirePart) -> dict[str, Any]:
    if isinstance(part, FilePart):
        return {"audio_base64": base64.b64encode(part.data).decode("ascii"), "name": part.name}
    return {"samples": part.samples.tolist(), "sample_rate": part.sample_rate, "name": part.name}


def multipart(fields: Mapping[str, str | list[str]], files: Sequence[tuple[str, bytes]]) -> Body:
    parts = [("file", (filename, data, FORM_PART_TYPE)) for filename, data in files]
    request = httpx.Request("POST", "http://multipart.invalid/", data=dict(fields), files=parts)
    return Body(request.read(), request.headers["content-type"])


def json_body(payload: Mapping[str, Any]) -> Body:
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    return Body(text.encode("utf-8"), "application/json")


def labelled_clips(
    clips: Mapping[str, Sequence[AudioInput]] | tuple[Sequence[AudioInput], Sequence[str]],
) -> tuple[list[AudioInput], list[str]]:
    """``{label: [inputs]}`` or ``(inputs, labels)`` -> (inputs, labels) of equal length."""
    if isinstance(clips, Mapping):
        pairs = [(item, str(label)) for label, items in clips.items() for item in _many(items, label)]
        return [item for item, _ in pairs], [label for _, label in pairs]
    inputs, labels = clips
    inputs, labels = list(inputs), [str(label) for label in labels]
    if len(inputs) != len(labels):
        raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels: give one label per input")
    return inputs, labels


def _many(items: Sequence[AudioInput], label: str) -> list[AudioInput]:
    if is_single(items):
        raise TypeError(f"clips[{label!r}] must be a list of inputs, not one input")
    return list(items)
