"""``vggish serve`` as users run it: every line it writes is one JSON object, warnings included,
and several worker processes start from the factory and the settings (no environment writes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import IO

import httpx
import pytest
from service_helpers import REPO, _wait_server, clip, free_port


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_serve_logs_json_lines_only(workers: int) -> None:
    port = free_port()
    command = [sys.executable, "-m", "vggish", "serve", "--weights", "random", "--port", str(port)]
    command += ["--workers", str(workers)]
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, cwd=REPO, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_server(proc, base, log)
            _wait_all_ready(log, workers)  # /readyz answered by one worker says nothing of the others
            for _ in range(2 * workers):  # reach every worker, most likely
                r = httpx.post(
                    base + "/v1/embeddings", content=clip(1.5), headers={"content-type": "audio/wav"}
                )
                assert r.status_code == 200 and r.json()["weights"] == "random"
        finally:
            proc.send_signal(signal.SIGTERM)
            # uvicorn drains, then re-raises the signal it caught (one worker); its supervisor exits 0.
            assert proc.wait(timeout=90) in (0, -signal.SIGTERM)
        log.seek(0)
        lines = [line for line in log.read().decode().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is JSON
    assert all({"time", "level", "logger", "message", "request_id"} <= set(r) for r in records)
    warned = [r for r in records if r["logger"] == "py.warnings"]
    assert len(warned) == workers  # each worker says its weights are random, once
    assert all(r["message"].startswith("UserWarning: VGGish is using RANDOM weights") for r in warned)
    assert not any("load_model(" in r["message"] for r in warned)  # no source line
    assert sum(r["message"] == "POST /v1/embeddings 200" for r in records) == 2 * workers
    assert sum(r["message"] == "ready" for r in records) == workers
    assert sum(r["message"] == "Application shutdown complete." for r in records) == workers


def _wait_all_ready(log: IO[bytes], workers: int) -> None:
    """Wait until every worker has logged "ready" (pread: the server's processes share the file offset)."""
    fd = log.fileno()
    deadline = time.monotonic() + 180
    while True:
        text = os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")
        ready = sum(_message(line) == "ready" for line in text.splitlines())
        if ready >= workers:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{ready} of {workers} workers logged ready: {text[-2000:]}")
        time.sleep(0.2)


def _message(line: str) -> object:
    try:
        return json.loads(line).get("message")
    except ValueError:  # a line still being written
        return None
