"""Reading ``POST /v1/embeddings`` bodies: multipart files, a raw audio body, or JSON.

The body is read from the request stream with the upload limit enforced as bytes arrive (and
from ``Content-Length`` before any arrive), so nothing past the limit is ever buffered. JSON
bodies are never held whole: :mod:`.json_inputs` parses them as they arrive, straight into
float32 arrays and file bytes, with the inputs and seconds limits checked while parsing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from vggish.errors import LimitExceededError
from vggish.pipeline.source import Waveform

from .config import Settings
from .errors import InvalidParameterError, MissingAudioError, UnsupportedMediaTypeError
from .json_inputs import FEED_BYTES, BodyLimits, JsonInputs


@dataclass(frozen=True)
class Upload:
    """One input of a request: its name (echoed in results) and its audio, a file's bytes or samples."""

    name: str | None
    source: bytes | Waveform


RAW_TYPES = ("audio/", "application/octet-stream")


def _too_large(limit: int) -> LimitExceededError:
    return LimitExceededError("max_upload_bytes", f"the request body is larger than {limit} bytes")


def check_content_length(request: Request, limit: int) -> None:
    """Refuses a declared ``Content-Length`` over the limit before reading anything."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isdigit():
        raise InvalidParameterError(f"Content-Length must be a number of bytes; got {declared!r}")
    if int(declared) > limit:
        raise _too_large(limit)


def limited_receive(receive: Receive, limit: int) -> Receive:
    """Wraps an ASGI ``receive`` so that more than ``limit`` body bytes raise 413."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(limit)
        return message

    return wrapped


def body_stream(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body's pieces as they arrive, refused with 413 as soon as they pass ``limit`` bytes."""
    return Request(request.scope, limited_receive(request.receive, limit)).stream()


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``limit`` bytes."""
    parts = [chunk async for chunk in body_stream(request, limit)]
    return b"".join(parts)


def media_type(request: Request) -> str:
    """The request's media type, lower case, without parameters ("" when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_inputs(request: Request, limit: int, max_inputs: int) -> list[Upload]:
    """Parses the body by its media type into inputs.

    Raises:
        MissingAudioError: no audio at all (400).
        UnsupportedMediaTypeError: a media type other than multipart, JSON, audio/* or octet-stream (415).
        LimitExceededError: over ``limit`` bytes or ``max_inputs`` inputs (413).
        InvalidParameterError: malformed JSON or base64 (422).
    """
    check_content_length(request, limit)
    kind = media_type(request)
    if kind == "multipart/form-data":
        inputs = await _multipart(request, limit)
    elif kind == "application/json":
        inputs = await _json(request, limit, max_inputs)
    elif kind.startswith(RAW_TYPES):
        inputs = _raw(await read_body(request, limit), request.headers.get("x-filename"))
    elif not kind and not await read_body(request, limit):
        raise MissingAudioError("the request has no body: send audio as multipart `file` parts, raw or JSON")
    else:
        raise UnsupportedMediaTypeError(
            f"media type {kind or '(none)'!r} is not accepted: use multipart/form-data, "
            "application/json, audio/* or application/octet-stream"
        )
    if len(inputs) > max_inputs:
        raise LimitExceededError("max_inputs", f"{len(inputs)} inputs sent; at most {max_inputs} per request")
    return inputs


def _raw(body: bytes, name: str | None) -> list[Upload]:
    if not body:
        raise MissingAudioError("the request body is empty: send the audio file's bytes")
    return [Upload(name, body)]


async def _multipart(request: Request, limit: int) -> list[Upload]:
    inputs, _ = await read_form(request, limit)
    return inputs


async def read_form(request: Request, limit: int) -> tuple[list[Upload], dict[str, list[str]]]:
    """A multipart body's ``file`` parts as inputs, and its text fields (name -> values, in order).

    Raises:
        MissingAudioError: no ``file`` part, or an empty one (400).
        LimitExceededError: over ``limit`` bytes (413).
    """
    limited = Request(request.scope, limited_receive(request.receive, limit))
    async with limited.form(max_part_size=limit) as form:
        files = [part for part in form.getlist("file") if isinstance(part, UploadFile)]
        if not files:
            raise MissingAudioError("the form has no `file` part holding an audio file")
        inputs: list[Upload] = []
        for part in files:
            data = await part.read()
            if not data:
                raise MissingAudioError(f"the `file` part {part.filename!r} is empty")
            inputs.append(Upload(part.filename, data))
        fields: dict[str, list[str]] = {}
        for key, value in form.multi_items():
            if isinstance(value, str):
                fields.setdefault(key, []).append(value)
    return inputs, fields


async def _json(request: Request, limit: int, max_inputs: int) -> list[Upload]:
    """A JSON body parsed as it arrives (in a worker thread, a few hundred kB at a time), its
    seconds limits those of the app's settings."""
    settings: Settings = request.app.state.settings
    parser = JsonInputs(BodyLimits(max_inputs, settings.max_input_seconds, settings.max_request_seconds))
    pending = bytearray()
    async for chunk in body_stream(request, limit):
        pending += chunk
        if len(pending) >= FEED_BYTES:
            await asyncio.to_thread(parser.feed, bytes(pending))
            pending.clear()
    parsed = await asyncio.to_thread(parser.finish, bytes(pending))
    return [Upload(name, source) for name, source in parsed]
