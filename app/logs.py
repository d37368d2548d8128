"""JSON log lines carrying the request id of the request being served: under ``vggish serve``
every line the process writes (the app's, uvicorn's, the library's, Python warnings) is one JSON
object.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# Record attributes that are not the caller's ``extra`` (uvicorn adds a coloured copy of messages).
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and any ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id.get(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    """Sends the ``app`` loggers' records to stderr as JSON lines at ``level``."""
    logger = logging.getLogger("app")
    logger.setLevel(level.upper())
    logger.propagate = False
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)


_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's ``log_config``: JSON lines on stderr; ours at ``level``, others' from WARNING."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    ours = {"level": level.upper()}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": handler},
        "root": {"handlers": ["json"], "level": "WARNING"},
        "loggers": {name: ours for name in (*_UVICORN, "vggish", "py.warnings")},
    }


@contextmanager
def warnings_to_log() -> Iterator[None]:
    """Inside the block, a warning is a ``py.warnings`` log record (so a JSON line too)."""
    log = logging.getLogger("py.warnings")

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        log.warning("%s: %s", category.__name__, message, extra={"source": f"{filename}:{lineno}"})

    before = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = before
