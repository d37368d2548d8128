"""``vggish serve``: the REST service (``vggish_app``, from ``app/``) under uvicorn; the options
override the ``VGGISH_*`` settings. The one place in ``vggish/`` that imports the service."""

from __future__ import annotations

import argparse

from vggish.cli.runtime_args import add_runtime_args, add_weights_arg, settings_of

DESCRIPTION = """\
Serve VGGish over HTTP: POST /v1/embeddings, GET /v1/models, /healthz, /readyz, /metrics, /docs.
Every setting can also be given as a VGGISH_* environment variable (docs/service.md);
the options below override them."""

EPILOG = """\
examples:
  vggish serve                                   official weights on 127.0.0.1:8000
  vggish serve --weights random --port 9000      demo weights
  vggish serve --device cuda --precision fp16    on a GPU
  VGGISH_API_KEYS=k1,k2 vggish serve --host 0.0.0.0 --workers 2"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to bind (default: VGGISH_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: VGGISH_PORT or 8000)")
    add_weights_arg(p, "VGGISH_WEIGHTS, else the official weights")
    p.add_argument("--workers", type=int, help="worker processes, each with its own model (VGGISH_WORKERS)")
    add_runtime_args(p, batch=False)


def run(args: argparse.Namespace) -> int:
    try:
        from vggish.network.loader import check_device
        from vggish_app.main import serve
        from vggish_app.model_loader import resolve_weights
    except ModuleNotFoundError as e:
        raise RuntimeError(
            f"the REST service needs {e.name!r}: pip install 'vggish[serve]' "
            "(from a checkout: pip install -e '.[serve]')"
        ) from e
    settings = settings_of(args, "host", "port", "workers")  # a malformed VGGISH_*: one line, exit 1
    resolve_weights(settings)  # missing weights: one line, exit 1
    check_device(settings.device)  # no GPU for VGGISH_DEVICE=cuda: one line, exit 1
    return 0 if serve(settings) else 1
