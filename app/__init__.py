"""The VGGish REST service: FastAPI app, dynamic batching across requests, limits and metrics.

Run it with ``vggish serve`` or ``uvicorn app.main:app``; settings come from ``VGGISH_*``
environment variables (see :mod:`app.config`).
"""
