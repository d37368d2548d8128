"""``/v1/stream``: live PCM in over a WebSocket, each embedding out as soon as its window is complete.

The protocol is docs/streaming.md's: a JSON :class:`~app.schemas.StreamStart`, binary PCM, then
``{"type": "end"}``; errors are the problem body as ``{"type": "error", ...}`` and close code 4000 +
status (1011 for a server fault). On shutdown open streams are drained and closed with 1012.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from vggish.errors import LimitExceededError
from vggish.heads import FeatureSpec, Head, check_compatible
from vggish.heads.store import BaseHeadStore
from vggish.pipeline.options import EmbedOptions

from ..config import Settings
from ..deps import bearer_token, check_key
from ..errors import (
    ForbiddenOriginError,
    InvalidParameterError,
    NotReadyError,
    StreamTimeoutError,
    count_failure,
    invalid_parameters,
    problem_of,
    stream_error,
)
from ..schemas import StreamStart
from ..service import EmbeddingService
from ..streaming import StreamSession, opened

logger = logging.getLogger("app.stream")
router = APIRouter(tags=["stream"])

CLOSE_NORMAL = 1000
CLOSE_SERVICE_RESTART = 1012  # the server is shutting down: open the stream again (elsewhere)
MAX_JSON_BRACKETS = 8  # in a text message: its settings are a flat object
SEND_ERROR_TIMEOUT_S = 5.0  # a client that does not read its error is not waited for longer
KEY_HOW = "`api_key` in the first message, or `Authorization: Bearer <key>` on the handshake"


@router.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    """Streams embeddings of live PCM."""
    await websocket.accept()
    settings: Settings = websocket.app.state.settings
    draining: asyncio.Event = websocket.app.state.draining or asyncio.Event()
    try:
        start = await handshake(websocket, settings, draining)
        service = _service(websocket, draining)
        options = service.options(start.hop, start.pad, start.resampler, start.postprocess)
        head, warning = await _head(websocket, service, start, options)
        with opened(service, start, options, head) as session:
            await websocket.send_json(session.ready_message(warning))
            drained = await _serve(websocket, session, settings, draining)
            await websocket.send_json(session.end_message(drained))
            logger.info("stream ended", extra={"examples": session.sent, "seconds": session.seconds})
        if drained:
            await websocket.close(CLOSE_SERVICE_RESTART, reason="the server is shutting down")
        else:
            await websocket.close(CLOSE_NORMAL)
    except WebSocketDisconnect:
        return
    except Exception as e:  # every error is the client's answer: a problem message and a close code
        await _fail(websocket, e)


async def handshake(websocket: WebSocket, settings: Settings, draining: asyncio.Event) -> StreamStart:
    """Checks the origin and a key sent on the handshake (before reading), reads the first
    message, checks a key sent in it, then validates it as :class:`StreamStart`."""
    _check_origin(websocket, settings)
    header_key = bearer_token(websocket.headers.get("authorization"))
    if header_key is not None:
        check_key(settings.api_key_list, header_key, KEY_HOW)
    message = await receive(websocket, settings, draining)
    if message is None:
        raise NotReadyError("the server is shutting down; open the stream again in a moment")
    first = _json_object(message.get("text"))
    given = first.get("api_key") if first is not None else None
    if isinstance(given, str) or header_key is None:
        check_key(settings.api_key_list, given if isinstance(given, str) else None, KEY_HOW)
    if first is None:
        raise InvalidParameterError(
            "the first message must be a JSON object (text) of the stream's settings, flat (no nesting), "
            'e.g. {"sample_rate": 48000, "format": "f32le"}'
        )
    try:
        return StreamStart.model_validate(first)
    except ValidationError as e:
        raise invalid_parameters(e) from e


async def receive(websocket: WebSocket, settings: Settings, draining: asyncio.Event) -> dict[str, Any] | None:
    """The next message (``text`` or ``bytes``), within ``request_timeout_s`` (StreamTimeoutError)
    and ``stream_max_message_bytes`` (LimitExceededError); None once ``draining`` is set."""
    if draining.is_set():
        return None
    timeout = settings.request_timeout_s
    receiving, drain = asyncio.ensure_future(websocket.receive()), asyncio.ensure_future(draining.wait())
    try:
        await asyncio.wait({receiving, drain}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        drain.cancel()
        waiting = not receiving.done()
        if waiting:  # (a message that comes later stays queued for the next receive)
            receiving.cancel()
    if waiting:
        if draining.is_set():
            return None
        raise StreamTimeoutError(
            f'no message within request_timeout_s={timeout:g}; send audio or {{"type": "end"}}'
        )
    message = receiving.result()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", CLOSE_NORMAL))
    size = len(message.get("bytes") or b"") + len((message.get("text") or "").encode())
    limit = settings.stream_max_message_bytes
    if size > limit:
        raise LimitExceededError("stream_max_message_bytes", f"a message of {size} bytes; at most {limit}")
    return dict(message)


async def _serve(
    websocket: WebSocket, session: StreamSession, settings: Settings, draining: asyncio.Event
) -> bool:
    """Reads PCM and sends embeddings at the same time, until both are done or one fails, within
    ``max_input_seconds + request_timeout_s``; returns whether the stream was drained."""
    longest = settings.max_input_seconds + settings.request_timeout_s
    receiving = asyncio.ensure_future(_receive_all(websocket, session, settings, draining))
    sending = asyncio.ensure_future(_send_all(websocket, session))
    try:
        tasks = {receiving, sending}
        done, _ = await asyncio.wait(tasks, timeout=longest, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
        if done != tasks:
            raise StreamTimeoutError(
                f"the stream was open for {longest:g} s (max_input_seconds + request_timeout_s); "
                "open a new one"
            )
        return receiving.result()
    finally:
        for task in (receiving, sending):
            task.cancel()
        await asyncio.gather(receiving, sending, return_exceptions=True)


async def _receive_all(
    websocket: WebSocket, session: StreamSession, settings: Settings, draining: asyncio.Event
) -> bool:
    """Pushes PCM until the client's end or the server's shutdown; returns whether it was the shutdown."""
    while True:
        message = await receive(websocket, settings, draining)
        if message is None:
            await session.finish(whole_frames=False)
            return True
        data = message.get("bytes")
        if data is not None:
            await session.push(data)  # waits while the backlog is full: the socket is not read
            continue
        if _json_object(message.get("text")) == {"type": "end"}:
            await session.finish()
            return False
        raise InvalidParameterError(
            'after the first message, send binary PCM or the text {"type": "end"}; got '
            f"{(message.get('text') or '')[:60]!r}"
        )


async def _send_all(websocket: WebSocket, session: StreamSession) -> None:
    async for message in session.messages():
        await websocket.send_json(message)


async def _fail(websocket: WebSocket, exc: Exception) -> None:
    """Sends the error message and closes with its code (unless the client is gone already)."""
    message, code = stream_error(exc)
    count_failure(websocket, problem_of(exc).slug)
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError, asyncio.TimeoutError):
        await asyncio.wait_for(websocket.send_json(message), SEND_ERROR_TIMEOUT_S)
        await websocket.close(code, reason=message["title"])


def _service(websocket: WebSocket, draining: asyncio.Event) -> EmbeddingService:
    service: EmbeddingService | None = websocket.app.state.service
    if service is None:
        raise NotReadyError("the model is not loaded yet; retry in a moment")
    if draining.is_set():
        raise NotReadyError("the server is shutting down; open the stream again in a moment")
    return service


async def _head(
    websocket: WebSocket, service: EmbeddingService, start: StreamStart, options: EmbedOptions
) -> tuple[Head | None, str | None]:
    """The named head, checked against this stream's weights and options as classify does, and
    what the ready message warns of."""
    if start.head is None:
        return None, None
    store: BaseHeadStore = websocket.app.state.heads
    record, head = await asyncio.to_thread(store.load, start.head)
    used = FeatureSpec.for_model(service.model, options)
    return head, check_compatible(record.features, used, start.force, start.head)


def _check_origin(websocket: WebSocket, settings: Settings) -> None:
    """Browsers send ``Origin``: pages of this server and of ``VGGISH_CORS_ORIGINS`` may stream."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return
    allowed = settings.cors_origin_list
    if "*" in allowed or origin in allowed or urlsplit(origin).netloc == websocket.headers.get("host"):
        return
    raise ForbiddenOriginError(
        f"pages from {origin} may not stream to this server; list it in VGGISH_CORS_ORIGINS"
    )


def _json_object(text: str | None) -> dict[str, Any] | None:
    """A text message as a flat JSON object, else None (deep nesting would exhaust the parser's stack)."""
    text = text or ""
    if text.count("{") + text.count("[") > MAX_JSON_BRACKETS:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class DrainingWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, but on shutdown an open stream is left to the app to drain."""

    def shutdown(self) -> None:
        if self.handshake_complete and self.initial_response is None and not self.close_sent:
            return
        super().shutdown()
