"""Reading ``POST /v1/embeddings`` bodies: multipart files, a raw audio body, or JSON.

The body is read from the request stream with the upload limit enforced as bytes arrive (and
from ``Content-Length`` before any arrive), so nothing past the limit is ever buffered.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from typing import Any

from pydantic import TypeAdapter
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from app.decode import AudioInput, EncodedAudio, SampleArray
from app.errors import InvalidParameterError, LimitExceededError, MissingAudioError, UnsupportedMediaTypeError
from app.schemas import Base64Audio, EmbeddingsRequest

_REQUEST_ADAPTER = TypeAdapter(EmbeddingsRequest)
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


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``limit`` bytes."""
    parts: list[bytes] = []
    stream: AsyncIterator[bytes] = Request(request.scope, limited_receive(request.receive, limit)).stream()
    async for chunk in stream:
        parts.append(chunk)
    return b"".join(parts)


async def read_inputs(request: Request, limit: int, max_inputs: int) -> list[AudioInput]:
    """Parses the body by its media type into inputs.

    Raises:
        MissingAudioError: no audio at all (400).
        UnsupportedMediaTypeError: a media type other than multipart, JSON, audio/* or octet-stream (415).
        LimitExceededError: over ``limit`` bytes or ``max_inputs`` inputs (413).
        InvalidParameterError: malformed JSON or base64 (422).
    """
    check_content_length(request, limit)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        inputs = await _multipart(request, limit)
    elif media_type == "application/json":
        inputs = _json_inputs(await read_body(request, limit))
    elif media_type.startswith(RAW_TYPES):
        inputs = _raw(await read_body(request, limit), request.headers.get("x-filename"))
    elif not media_type and not await read_body(request, limit):
        raise MissingAudioError("the request has no body: send audio as multipart `file` parts, raw or JSON")
    else:
        raise UnsupportedMediaTypeError(
            f"media type {media_type or '(none)'!r} is not accepted: use multipart/form-data, "
            "application/json, audio/* or application/octet-stream"
        )
    if len(inputs) > max_inputs:
        raise LimitExceededError("max_inputs", f"{len(inputs)} inputs sent; at most {max_inputs} per request")
    return inputs


def _raw(body: bytes, name: str | None) -> list[AudioInput]:
    if not body:
        raise MissingAudioError("the request body is empty: send the audio file's bytes")
    return [EncodedAudio(name, body)]


async def _multipart(request: Request, limit: int) -> list[AudioInput]:
    inputs, _ = await read_form(request, limit)
    return inputs


async def read_form(request: Request, limit: int) -> tuple[list[AudioInput], dict[str, list[str]]]:
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
        inputs: list[AudioInput] = []
        for part in files:
            data = await part.read()
            if not data:
                raise MissingAudioError(f"the `file` part {part.filename!r} is empty")
            inputs.append(EncodedAudio(part.filename, data))
        fields: dict[str, list[str]] = {}
        for key, value in form.multi_items():
            if isinstance(value, str):
                fields.setdefault(key, []).append(value)
    return inputs, fields


def _json_inputs(body: bytes) -> list[AudioInput]:
    if not body:
        raise MissingAudioError('the JSON body is empty: send {"inputs": [...]}')
    request = _REQUEST_ADAPTER.validate_json(body)
    return [_json_input(index, item) for index, item in enumerate(request.inputs)]


def _json_input(index: int, item: Any) -> AudioInput:
    if isinstance(item, Base64Audio):
        try:
            data = base64.b64decode(item.audio_base64, validate=True)
        except (binascii.Error, ValueError) as e:
            raise InvalidParameterError(f"inputs.{index}.audio_base64 is not valid base64 ({e})") from e
        if not data:
            raise MissingAudioError(f"inputs.{index}.audio_base64 is empty")
        return EncodedAudio(item.name, data)
    return SampleArray(item.name, item.samples, item.sample_rate)
