"""``vggish serve``: the REST service (``app/``) under uvicorn.

The service's settings come from ``VGGISH_*`` environment variables; the options given here
are written into the environment so that every uvicorn worker process reads the same settings.
The service lives in the ``app`` package beside this library (``pip install 'vggish[serve]'``).
"""

from __future__ import annotations

import argparse
import importlib
import os
from typing import Any

from vggish.cli.runtime_args import add_runtime_args
from vggish.weights import check_device

DESCRIPTION = """\
Serve VGGish over HTTP: POST /v1/embeddings, GET /v1/models, /healthz, /readyz, /metrics, /docs.
Every setting can also be given as a VGGISH_* environment variable (see the README);
the options below override them."""

EPILOG = """\
examples:
  vggish serve                                   official weights on 127.0.0.1:8000
  vggish serve --weights random --port 9000      demo weights
  vggish serve --device cuda --precision fp16    on a GPU
  VGGISH_API_KEYS=k1,k2 vggish serve --host 0.0.0.0 --workers 2"""


def register(subparsers: Any) -> None:
    """Adds the ``serve`` subcommand."""
    p = subparsers.add_parser(
        "serve",
        help="run the REST service",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", help="address to bind (default: VGGISH_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: VGGISH_PORT or 8000)")
    p.add_argument("--weights", metavar="W", help="weights .safetensors file, or 'random' (VGGISH_WEIGHTS)")
    p.add_argument("--workers", type=int, help="worker processes, each with its own model (VGGISH_WORKERS)")
    add_runtime_args(p, batch=False)
    p.set_defaults(func=run)


def _import(module: str) -> Any:
    """Imports a module of the service, with a one-line hint when it is not installed."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise RuntimeError(
            f"the REST service needs {e.name!r}: pip install 'vggish[serve]' "
            "(from a checkout: pip install -e '.[serve]')"
        ) from e


def run(args: argparse.Namespace) -> int:
    """Checks the weights (one line on failure), then runs uvicorn until interrupted."""
    names = {"threads": "NUM_THREADS"}
    for name in ("host", "port", "weights", "workers", "device", "backend", "precision", "threads"):
        value = getattr(args, name)
        if value is not None:
            os.environ[f"VGGISH_{names.get(name, name.upper())}"] = str(value)
    uvicorn = _import("uvicorn")
    settings = _import("app.config").Settings()
    _import("app.model_loader").resolve_weights(settings)  # missing weights: one line, exit 1
    check_device(settings.device)  # no GPU for VGGISH_DEVICE=cuda: one line, exit 1
    uvicorn.run(
        "app.main:app",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=False,  # the app logs every request as JSON, with its request id
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
    )
    return 0
