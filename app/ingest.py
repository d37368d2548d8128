"""Reading request bodies: audio as multipart files, a raw body or JSON, and the other routes'.

Every body is read by :func:`body_chunks` within its size, deadline and least rate; raw and
multipart bodies are spooled, JSON bodies parsed as they arrive.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from tempfile import SpooledTemporaryFile
from typing import IO, Any, BinaryIO, TypeVar

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from vggish.errors import LimitExceededError
from vggish.pipeline.source import Waveform

from .config import Settings
from .errors import (
    BodyTimeoutError,
    BusyError,
    ClientDisconnectedError,
    InvalidParameterError,
    MissingAudioError,
    UnsupportedMediaTypeError,
)
from .json_inputs import BodyLimits, JsonInputs

SPOOL_BYTES = 1 << 20  # a body or a multipart file part is kept in memory up to this, then on disk
WRITE_BYTES = 1 << 20  # bytes gathered before each write to a spooled body, and read back at a time
BODY_GRACE_S = 10.0  # seconds a body may take before the least rate applies (connection, first bytes)
FEED_BYTES = 1 << 18  # JSON body bytes parsed at a time: their parse events are held at once
PENDING_JSON_BODIES = 4  # JSON bodies arriving at once hold at most this many times max_json_bytes
RAW_TYPES = ("audio/", "application/octet-stream")
JSON_HINT = (
    "send long audio as multipart/form-data or as a raw body (audio/* or application/octet-stream), "
    "or as a compressed file (FLAC, MP3...) in `audio_base64`"
)
T = TypeVar("T")


@dataclass(frozen=True)
class Upload:
    """One input of a request: its name and its audio (a file's bytes, a spooled file, or samples)."""

    name: str | None
    source: bytes | BinaryIO | Waveform


@dataclass(frozen=True)
class BodyLimit:
    """How large a body may be: ``size`` bytes, the setting that says so, what to do instead."""

    size: int
    setting: str = "max_upload_bytes"
    hint: str = ""

    def exceeded(self) -> LimitExceededError:
        detail = f"the request body is larger than {self.size} bytes"
        return LimitExceededError(self.setting, f"{detail}: {self.hint}" if self.hint else detail)


async def body_chunks(request: Request, limit: int | BodyLimit) -> AsyncIterator[bytes]:
    """The body's pieces as they arrive, within its size limit (413, a declared ``Content-Length``
    refused before reading), deadline and least rate (408), until the client leaves (499)."""
    limit = limit if isinstance(limit, BodyLimit) else BodyLimit(limit)
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise InvalidParameterError(f"Content-Length must be a number of bytes; got {declared!r}")
    if declared is not None and int(declared) > limit.size:
        raise limit.exceeded()
    settings: Settings = request.app.state.settings
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.body_timeout_s
    received, waited = 0, 0.0
    while True:
        allowance = BODY_GRACE_S + received / settings.min_body_bytes_per_s - waited
        began = loop.time()
        try:
            message = await asyncio.wait_for(request.receive(), max(min(deadline - began, allowance), 0.0))
        except asyncio.TimeoutError:
            raise _too_slow(settings, received, loop.time() >= deadline) from None
        waited += loop.time() - began
        if message["type"] == "http.disconnect":
            raise ClientDisconnectedError(f"the client left after sending {received} bytes of its body")
        chunk: bytes = message.get("body", b"")
        received += len(chunk)
        if received > limit.size:
            raise limit.exceeded()
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def _too_slow(settings: Settings, received: int, late: bool) -> BodyTimeoutError:
    if late:
        return BodyTimeoutError(
            f"the body did not arrive within body_timeout_s={settings.body_timeout_s:g} s "
            f"({received} bytes received)",
            limit="body_timeout_s",
        )
    return BodyTimeoutError(
        f"the body arrives slower than min_body_bytes_per_s={settings.min_body_bytes_per_s} on "
        f"average ({received} bytes received)",
        limit="min_body_bytes_per_s",
    )


async def spool_body(request: Request, limit: int | BodyLimit) -> tuple[SpooledTemporaryFile[bytes], int]:
    """The whole body in a spooled temporary file at its start, and its size; the caller closes it."""
    spooled: SpooledTemporaryFile[bytes] = SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (returned)
    try:
        size, pending = 0, bytearray()
        async for chunk in body_chunks(request, limit):
            size += len(chunk)
            pending += chunk
            if len(pending) >= WRITE_BYTES:
                await asyncio.to_thread(spooled.write, pending)
                pending = bytearray()
        spooled.write(pending)
        spooled.seek(0)
    except BaseException:
        spooled.close()
        raise
    return spooled, size


async def read_body(request: Request, limit: int | BodyLimit) -> bytes:
    """The whole body (spooled while it arrives)."""
    spooled, _ = await spool_body(request, limit)
    with spooled:
        return await asyncio.to_thread(spooled.read)


class _SpooledFile(io.RawIOBase):
    """A spooled body or file part as the decoders read it; closing or dropping it closes the file."""

    def __init__(self, file: IO[bytes], size: int) -> None:
        super().__init__()
        self._file = file
        self.size = size
        file.seek(0)

    @property
    def name(self) -> str:
        return f"<{self.size} bytes>"

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._file.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()
        super().close()


def _upload(name: str | None, file: IO[bytes], size: int) -> Upload:
    return Upload(name, io.BufferedReader(_SpooledFile(file, size)))


def media_type(request: Request) -> str:
    """The request's media type, lower case, without parameters ("" when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_inputs(request: Request, limit: int, max_inputs: int) -> list[Upload]:
    """Parses the body by its media type into inputs (multipart and raw bodies up to ``limit``
    bytes, JSON up to ``max_json_bytes``)."""
    kind = media_type(request)
    if kind == "multipart/form-data":
        inputs, _ = await read_form(request, limit)
    elif kind == "application/json":
        inputs = await _json(request, max_inputs)
    elif kind.startswith(RAW_TYPES):
        inputs = [await _raw(request, limit)]
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


async def _raw(request: Request, limit: int) -> Upload:
    spooled, size = await spool_body(request, limit)
    if not size:
        spooled.close()
        raise MissingAudioError("the request body is empty: send the audio file's bytes")
    return _upload(request.headers.get("x-filename"), spooled, size)


async def read_form(request: Request, limit: int) -> tuple[list[Upload], dict[str, list[str]]]:
    """A multipart body's ``file`` parts as inputs (400 when none or one is empty), and its text
    fields (name -> values, in order); the body is spooled, then parsed."""
    spooled, _ = await spool_body(request, limit)
    with spooled:
        parser = MultiPartParser(request.headers, _read_back(spooled), max_part_size=limit)
        try:
            form = await parser.parse()
        except MultiPartException as e:
            raise HTTPException(400, e.message) from e
    files: list[UploadFile] = []
    fields: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            fields.setdefault(key, []).append(value)
        elif key == "file":
            files.append(value)
        else:
            value.file.close()
    inputs = [_upload(part.filename, part.file, part.size or 0) for part in files]
    if not inputs:
        raise MissingAudioError("the form has no `file` part holding an audio file")
    for part in files:
        if not part.size:
            raise MissingAudioError(f"the `file` part {part.filename!r} is empty")
    return inputs, fields


async def _read_back(spooled: SpooledTemporaryFile[bytes]) -> AsyncGenerator[bytes, None]:
    while chunk := await asyncio.to_thread(spooled.read, WRITE_BYTES):
        yield chunk


class _PendingJson:
    """Bytes of JSON bodies still arriving in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes = 0

    def reserve(self, size: int, most: int) -> bool:
        with self._lock:
            if self.bytes + size > most:
                return False
            self.bytes += size
            return True

    def release(self, size: int) -> None:
        with self._lock:
            self.bytes -= size


PENDING_JSON = _PendingJson()
JSON_THREAD = ThreadPoolExecutor(1, thread_name_prefix="vggish-json")
"""Where JSON bodies are parsed, one piece at a time: parsing holds the GIL, and a piece's events
take many times its bytes."""


async def parse_json_body(
    request: Request, feed: Callable[[bytes], None], finish: Callable[[bytes], T], hint: str, busy: str
) -> T:
    """Feeds a JSON body to a parser as it arrives (:data:`FEED_BYTES` at a time, on
    :data:`JSON_THREAD`) within ``max_json_bytes`` (``hint``: what to send instead) and the budget
    of JSON bodies arriving at once (else BusyError, 503; ``busy`` ends its message); raises as
    :func:`body_chunks` too."""
    s: Settings = request.app.state.settings
    most = PENDING_JSON_BODIES * s.max_json_bytes
    loop = asyncio.get_running_loop()
    pending, taken = bytearray(), 0
    try:
        async for chunk in body_chunks(request, BodyLimit(s.max_json_bytes, "max_json_bytes", hint)):
            if not PENDING_JSON.reserve(len(chunk), most):
                raise BusyError(
                    f"JSON bodies arriving at once hold {most} bytes, the most this server takes{busy}",
                    headers={"Retry-After": str(s.retry_after_s)},
                )
            taken += len(chunk)
            pending += chunk
            if len(pending) >= FEED_BYTES:
                await loop.run_in_executor(JSON_THREAD, feed, bytes(pending))
                pending.clear()
        return await loop.run_in_executor(JSON_THREAD, finish, bytes(pending))
    finally:
        PENDING_JSON.release(taken)


async def _json(request: Request, max_inputs: int) -> list[Upload]:
    s: Settings = request.app.state.settings
    parser = JsonInputs(BodyLimits(max_inputs, s.max_input_seconds, s.max_request_seconds))
    busy = f" ({PENDING_JSON_BODIES} x max_json_bytes): retry later, or {JSON_HINT}"
    parsed = await parse_json_body(request, parser.feed, parser.finish, JSON_HINT, busy)
    return [Upload(name, source) for name, source in parsed]
