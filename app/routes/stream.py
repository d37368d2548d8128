"""``/v1/stream``: live PCM in over a WebSocket, each embedding out as soon as its window is complete.

The protocol (docs/streaming.md has it in full):

1. The client sends a text message, JSON :class:`~app.schemas.StreamStart` (``sample_rate``,
   ``format``, ``channels``, ``hop``, ``pad``, ``resampler``, ``head``, ``postprocess``,
   ``api_key``); the server answers ``{"type": "ready", ...}``.
2. The client sends binary messages of interleaved PCM; the server sends
   ``{"type": "embedding", "index", "start", "end", "embedding", ["postprocessed"], ["labels"]}``
   as each 0.975 s window is complete.
3. The client sends ``{"type": "end"}``; the server flushes, sends ``{"type": "end", "examples",
   "seconds"}`` and closes with 1000.

A stream is live audio: one that runs ahead of real time by more than ``stream_burst_seconds`` is
read at real-time speed (its socket is not read meanwhile). When the server shuts down (SIGTERM
under ``vggish serve``), open streams are drained: no more audio is read, what was received is
flushed and its embeddings sent, then ``{"type": "end", ..., "detail"}`` and close 1012 (the client
resends the audio after ``seconds`` to another server); new streams are refused (4503).

Any error: ``{"type": "error", "status", "title", "detail", "problem_type", ...}`` (the problem
body HTTP answers), then close code 4000 + status (4401, 4403, 4404, 4408, 4413, 4422, 4429, 4503,
4504) or 1011 for a server fault. Browsers cannot set headers on WebSockets, so the key comes in
the first message, or as ``Authorization: Bearer`` on the handshake from other clients.
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
from ..deps import bearer_token, check_api_key
from ..errors import (
    ForbiddenOriginError,
    InvalidParameterError,
    NotReadyError,
    StreamTimeoutError,
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
    """Streams embeddings of live PCM (see the module's docstring for the protocol)."""
    await websocket.accept()
    settings: Settings = websocket.app.state.settings
    draining: asyncio.Event = websocket.app.state.draining or asyncio.Event()
    try:
        start = await handshake(websocket, settings, draining)
        service = _service(websocket, draining)
        options = service.options(start.hop, start.pad, start.resampler, start.postprocess)
        head, warning = await _head(websocket, service, start, options)
        with opened(service, start, options, head) as session:
            ready = session.ready_message()
            if warning is not None:
                ready["warnings"] = [warning]
            await websocket.send_json(ready)
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
    """Checks the origin and a key sent on the handshake, reads the first message, checks a key
    sent in it, then the message itself.

    Raises:
        ForbiddenOriginError: a browser page of another origin than this server or the CORS list.
        UnauthorizedError: no key or a wrong one, when the server has keys (a wrong one on the
            handshake is refused before any message is read).
        InvalidParameterError: the first message is not a valid :class:`StreamStart`.
        StreamTimeoutError: no first message within ``request_timeout_s``.
        NotReadyError: the server is shutting down.
    """
    _check_origin(websocket, settings)
    header_key = bearer_token(websocket.headers.get("authorization"))
    if header_key is not None:
        check_api_key(settings, header_key, KEY_HOW)
    message = await receive(websocket, settings, draining)
    if message is None:
        raise NotReadyError("the server is shutting down; open the stream again in a moment")
    text = message.get("text")
    first = _json_object(text) if text is not None else None
    given = first.get("api_key") if first is not None else None
    if isinstance(given, str) or header_key is None:
        check_api_key(settings, given if isinstance(given, str) else None, KEY_HOW)
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
    """The next message (``text`` or ``bytes``), within ``request_timeout_s`` and the size limit;
    None once ``draining`` is set (the server is shutting down), before or while waiting.

    Raises:
        WebSocketDisconnect: the client went away.
        StreamTimeoutError: no message within ``request_timeout_s``.
        LimitExceededError: a message over ``stream_max_message_bytes``.
    """
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
    """Reads PCM and sends embeddings at the same time, until both are done or one fails.

    Returns:
        Whether the stream was drained (the server is shutting down) rather than ended by the client.

    Raises:
        StreamTimeoutError: open for longer than ``max_input_seconds + request_timeout_s`` (live
            audio cannot last longer than its limit; a stream that trickles is not kept forever).
    """
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
    """Pushes PCM until the client's end, or the server's shutdown (then what was received is
    flushed, a frame cut in two dropped); returns whether it was the shutdown."""
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
    metrics = getattr(websocket.app.state, "metrics", None)
    if metrics is not None:
        metrics.failures.labels(reason=problem_of(exc).slug).inc()
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
    """The named head and what the ready message warns of, checked against the weights and
    options of this stream as classify does (WeightsMismatchError: 409, close 4409, unless ``force``)."""
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
    """A text message as a JSON object, or None when it is not one, or holds more than
    ``MAX_JSON_BRACKETS`` brackets (the messages are flat objects; what nests thousands deep
    would exhaust the parser's stack)."""
    text = text or ""
    if text.count("{") + text.count("[") > MAX_JSON_BRACKETS:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class DrainingWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, but for its shutdown: an open stream is left to the app,
    which drains it and closes it with 1012 itself (within uvicorn's graceful shutdown), instead
    of being closed at once."""

    def shutdown(self) -> None:
        if self.handshake_complete and self.initial_response is None and not self.close_sent:
            return
        super().shutdown()
