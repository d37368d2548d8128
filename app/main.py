"""The FastAPI app factory ``create_app(settings)``, and ``app`` (made on first access from the
``VGGISH_*`` environment) for ``uvicorn app.main:app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from uvicorn.supervisors import Multiprocess

from vggish.heads.store import BaseHeadStore, SqliteHeadStore, StoreUnavailableError, open_store
from vggish.network.cpus import limit_blas_threads
from vggish.version import __version__

from .config import Settings
from .docs import install_docs
from .errors import install_error_handlers
from .heads_service import Trainings
from .logs import configure_logging, log_config, warnings_to_log
from .metrics import Metrics
from .middleware import PROTECTED_PATHS, TIMING_HEADERS, ProtectedPathsMiddleware, RequestContextMiddleware
from .model_loader import load_configured_model
from .openapi_docs import install_openapi
from .routes import collections, embeddings, heads, health, metrics, models, stream
from .routes.ui import install_ui
from .search_service import open_store as open_collections
from .search_service import store_of
from .service import EmbeddingService

logger = logging.getLogger("app.main")

DESCRIPTION = """\
VGGish audio embeddings (Google's AudioSet model, TensorFlow reference numbers) over HTTP.
Requests are merged into model batches; see `/v1/models` for the limits and `/metrics`.

Live audio: the WebSocket `/v1/stream` (not listed below: OpenAPI describes HTTP only) takes a
JSON first message (`sample_rate`, `format` `s16le`|`f32le`, `channels`, `hop`, `pad`,
`resampler`, `head`, `postprocess`, `api_key`), then binary PCM, and sends each embedding as
soon as its 0.975 s window is complete; `{"type": "end"}` ends it. A page to try it all is at `/`."""


async def _warm_up(app: FastAPI, service: EmbeddingService) -> None:
    if service.settings.warmup:
        try:
            await service.warm_up()
        except Exception:
            logger.exception("warm-up failed: the model cannot run; /readyz stays 503")
            raise
    app.state.ready = True
    logger.info("ready", extra={"weights": service.weights_id, "device": str(service.model.device)})


@contextlib.contextmanager
def _on_exit_signals(callback: Callable[[], None]) -> Iterator[None]:
    """Calls ``callback`` on SIGINT / SIGTERM before the handlers already installed (uvicorn's),
    while the block runs; off the main thread (a test client) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def handler(sig: int, frame: FrameType | None) -> None:
        callback()
        chained = previous.get(sig)
        if callable(chained):
            chained(sig, frame)
        elif chained == signal.SIG_DFL:  # what the signal would have done without us
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    for exit_signal in (signal.SIGINT, signal.SIGTERM):
        previous[exit_signal] = signal.signal(exit_signal, handler)
    try:
        yield
    finally:
        for number, before in previous.items():
            if signal.getsignal(number) is handler:
                signal.signal(number, before)


async def _open_store(store: BaseHeadStore) -> None:
    """Upgrades the heads schema now (a wrong PostgreSQL URL stops the start; a new SQLite database
    is made on the first write). A data directory that cannot be written is logged; the service
    starts, and heads writes answer 503 naming the fix."""
    if not isinstance(store, SqliteHeadStore):
        await asyncio.to_thread(store.open)
        return
    if not store.writable():
        logger.warning(
            f"VGGISH_DATA_DIR={store.path.parent} is not writable by uid {os.getuid()}: mount a "
            "writable volume or set VGGISH_DATA_DIR (heads can be read, not saved or deleted)"
        )
    elif store.path.exists():
        try:
            await asyncio.to_thread(store.open)
        except StoreUnavailableError as e:
            logger.error(f"the heads store cannot be used: {e}")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Loads the model, serves (``/readyz`` 503 until warmed up), then drains the queue and stops
    the worker threads. SIGINT / SIGTERM stop head trainings at once (503) and drain live streams."""
    settings: Settings = app.state.settings
    configure_logging(settings.log_level)
    with warnings_to_log():
        await _open_store(app.state.heads)
        await open_collections(app.state.collections)
        model = await asyncio.to_thread(load_configured_model, settings)
        limit_blas_threads(1)  # the decode threads are the parallelism (see vggish.network.cpus)
        service = EmbeddingService(model, settings, app.state.metrics)
        trainings = Trainings(settings.train_threads, app.state.metrics)
        app.state.service, app.state.trainings = service, trainings
        warm = asyncio.create_task(_warm_up(app, service))
        loop, draining = asyncio.get_running_loop(), asyncio.Event()
        app.state.draining = draining

        def on_exit() -> None:
            trainings.stop()
            loop.call_soon_threadsafe(draining.set)  # live streams flush and close (routes/stream.py)

        try:
            with _on_exit_signals(on_exit):
                yield
        finally:
            draining.set()
            app.state.ready = False
            await asyncio.gather(warm, return_exceptions=True)
            await asyncio.to_thread(trainings.close)
            await asyncio.to_thread(service.close)
            await asyncio.to_thread(app.state.collections.close)
            # A stopped app holds no model: an app object outlives its lifespan where something
            # keeps it (a test's client; FastAPI's module-level routers link back to each app).
            app.state.service = app.state.trainings = None
            logger.info("stopped")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Builds the app (``settings`` default: from ``VGGISH_*``); nothing loads until its lifespan starts."""
    settings = settings or Settings()
    app = FastAPI(
        title="VGGish",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,  # served offline by install_docs
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.service = None
    app.state.ready = False
    app.state.trainings = None
    app.state.draining = None  # an asyncio.Event while serving, set on SIGINT / SIGTERM
    app.state.heads = open_store(settings.heads_location)
    app.state.collections = store_of(settings)
    install_error_handlers(app)
    for module in (embeddings, stream, heads, collections, models, health, metrics):
        app.include_router(module.router)
    install_openapi(app, PROTECTED_PATHS if settings.protect_docs else ())
    install_docs(app)
    install_ui(app)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origin_list),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-Id", "X-Filename"],
            expose_headers=["X-Request-Id", *TIMING_HEADERS],
        )
    if settings.protect_docs:
        app.add_middleware(ProtectedPathsMiddleware, keys=settings.api_key_list)
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    return app


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    """uvicorn's configuration for serving ``create_app(settings)`` in each worker process."""
    return uvicorn.Config(
        functools.partial(create_app, settings),  # pickled into worker processes: no environment
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level),  # uvicorn's lines are JSON too
        access_log=False,  # the app logs every request as JSON, with its request id
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
        ws=stream.DrainingWebSocketProtocol,  # open streams drain on shutdown
        ws_max_size=settings.stream_max_message_bytes,  # a larger message is refused as it arrives
    )


def serve(settings: Settings) -> bool:
    """Serves until interrupted; returns whether the server started (True once several workers ran)."""
    config = uvicorn_config(settings)
    if settings.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return True
    server = uvicorn.Server(config)
    server.run()
    return bool(server.started)


def __getattr__(name: str) -> FastAPI:
    """``app``, made on first access, so that importing this module reads no environment."""
    if name == "app":
        globals()["app"] = made = create_app()
        return made
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
