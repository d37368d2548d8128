"""Downloads against a real HTTP server on loopback that can misbehave, and the official chain.

The server serves bytes the tests make and records every request (its Range header, the status
it answered and how many body bytes it sent), so retries are proved from the server's side.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import http.server
import json
import os
import re
import socket
import stat
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pooch
import pytest
import requests

from vggish import weights as W
from vggish.cli import main
from vggish.network import loader
from vggish.weights import download as D
from vggish.weights import install as I
from vggish.weights import verify as V

REPO = Path(__file__).resolve().parents[1]
# The official files' table, copied verbatim from the project's reference document (see its note).
OFFICIAL_TABLE = REPO / "tests" / "data" / "official_files.md"

NORMAL = "normal"  # 200 with the whole file
TRUNCATE_ONCE = "truncate-once"  # first answer promises the whole body, sends half, closes
DROP_ONCE = "drop-once"  # first answer sends part of the body, then resets the connection
UNAVAILABLE = "unavailable"  # always 503


@dataclass
class Seen:
    """One request as the server saw and answered it."""

    path: str
    range: str | None
    status: int
    sent: int = 0


@dataclass
class ServerState:
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        state = self.server.state
        with state.lock:
            data, behaviour = state.files.get(self.path, (b"", ""))
            first = not any(s.path == self.path for s in state.seen)
            seen = Seen(self.path, self.headers.get("Range"), 0)
            state.seen.append(seen)
        if not behaviour or behaviour == UNAVAILABLE:
            seen.status = 404 if not behaviour else 503
            self.send_error(seen.status)
            return
        seen.status = 200
        self._headers(200, {"Content-Length": str(len(data))})
        body = data[: len(data) // 2] if first and behaviour in (TRUNCATE_ONCE, DROP_ONCE) else data
        self.wfile.write(body)
        self.wfile.flush()
        seen.sent = len(body)
        if first and behaviour == DROP_ONCE:
            self._reset()

    def _headers(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()

    def _reset(self) -> None:
        """Closes the socket with SO_LINGER 0, so the client gets a reset, not an orderly close."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    state: ServerState

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the reset connection makes the handler's cleanup fail; that is the point


@dataclass
class Loopback:
    state: ServerState
    base: str

    def serve(self, name: str, data: bytes, behaviour: str = NORMAL, **remote: Any) -> D.RemoteFile:
        """Serves ``data`` as ``/name`` and returns a RemoteFile for it (digests from the data)."""
        with self.state.lock:
            self.state.files[f"/{name}"] = (data, behaviour)
        fields = {"size": len(data), "md5": hashlib.md5(data).hexdigest(), **remote}
        return D.RemoteFile(name=name, url=f"{self.base}/{name}", **fields)

    def seen(self, name: str) -> list[Seen]:
        with self.state.lock:
            return [s for s in self.state.seen if s.path == f"/{name}"]


@pytest.fixture
def server() -> Iterator[Loopback]:
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.state = ServerState()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield Loopback(httpd.state, f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(scope="module")
def payload() -> bytes:
    return np.random.default_rng(7).integers(0, 256, 3_000_000, dtype=np.uint8).tobytes()


@dataclass
class Attempts:
    """Every request the downloader sent and every wait between attempts."""

    opened: list[str] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)


@pytest.fixture(autouse=True)
def attempts(monkeypatch: pytest.MonkeyPatch) -> Attempts:
    """Records requests and waits; the waits between attempts (pooch's) take no time here."""
    record = Attempts()
    real_get = requests.get

    def get(url: str, *args: Any, **kwargs: Any) -> Any:
        record.opened.append(url)
        return real_get(url, *args, **kwargs)

    monkeypatch.setattr(requests, "get", get)
    monkeypatch.setattr(pooch.core, "time", SimpleNamespace(sleep=record.waits.append))
    return record


def fetch(remote: D.RemoteFile, folder: Path, **kwargs: Any) -> Path:
    options: dict[str, Any] = {"progress": False, "timeout": 10.0, **kwargs}
    return D.download(remote, folder, **options).path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- plain downloads ------------------------------------------------------------------------------


def test_download_verifies_and_moves_into_place(server: Loopback, payload: bytes, tmp_path: Path) -> None:
    remote = server.serve("a.bin", payload)
    done = D.download(remote, tmp_path / "new", progress=False)
    assert done.path == tmp_path / "new" / "a.bin" and done.path.read_bytes() == payload
    assert done.size == len(payload) and done.md5 == remote.md5
    assert done.sha256 == hashlib.sha256(payload).hexdigest()
    assert leftovers(tmp_path / "new") == ["a.bin"]
    assert [(s.range, s.status, s.sent) for s in server.seen("a.bin")] == [(None, 200, len(payload))]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_downloaded_file_gets_the_umasks_permissions(
    umask: int, server: Loopback, payload: bytes, tmp_path: Path
) -> None:
    old = os.umask(umask)
    try:
        path = fetch(server.serve("a.bin", payload[:1000]), tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_sha256_is_checked_when_known(server: Loopback, payload: bytes, tmp_path: Path) -> None:
    good = server.serve("a.bin", payload, sha256=hashlib.sha256(payload).hexdigest())
    assert fetch(good, tmp_path).read_bytes() == payload
    bad = server.serve("b.bin", payload, sha256="0" * 64)  # the MD5 is right, the SHA-256 wrong
    with pytest.raises(D.ChecksumError, match="SHA256"):
        fetch(bad, tmp_path, retries=0)
    assert leftovers(tmp_path) == ["a.bin"]


def test_unknown_size_is_fine(server: Loopback, payload: bytes, tmp_path: Path) -> None:
    remote = server.serve("a.bin", payload, size=None)
    assert fetch(remote, tmp_path).read_bytes() == payload


def test_progress_bar_names_the_file(
    server: Loopback, payload: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fetch(server.serve("bar.bin", payload), tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "bar.bin" in err and "2.86M/2.86M" in err  # 3,000,000 bytes in MiB, all of them


def test_no_progress_prints_nothing(
    server: Loopback, payload: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fetch(server.serve("quiet.bin", payload), tmp_path, progress=False)
    assert capsys.readouterr() == ("", "")


def test_verified_file_in_place_needs_no_request(server: Loopback, payload: bytes, tmp_path: Path) -> None:
    remote = server.serve("a.bin", payload)
    (tmp_path / "a.bin").write_bytes(payload)
    assert fetch(remote, tmp_path).read_bytes() == payload
    assert server.seen("a.bin") == []


def test_wrong_file_in_place_is_replaced(server: Loopback, payload: bytes, tmp_path: Path) -> None:
    remote = server.serve("a.bin", payload)
    (tmp_path / "a.bin").write_bytes(b"stale" * 100)
    assert fetch(remote, tmp_path).read_bytes() == payload
    assert len(server.seen("a.bin")) == 1 and leftovers(tmp_path) == ["a.bin"]


# --- retries --------------------------------------------------------------------------------------


def test_truncated_transfer_is_retried_from_the_start(
    server: Loopback, payload: bytes, tmp_path: Path, attempts: Attempts
) -> None:
    remote = server.serve("a.bin", payload, TRUNCATE_ONCE)
    assert fetch(remote, tmp_path).read_bytes() == payload
    first, second = server.seen("a.bin")
    assert (first.range, first.status, first.sent) == (None, 200, len(payload) // 2)
    assert (second.range, second.status, second.sent) == (None, 200, len(payload))
    assert leftovers(tmp_path) == ["a.bin"] and len(attempts.waits) == 1


def test_dropped_connection_is_retried(server: Loopback, payload: bytes, tmp_path: Path) -> None:
    remote = server.serve("a.bin", payload, DROP_ONCE)
    assert fetch(remote, tmp_path).read_bytes() == payload
    first, second = server.seen("a.bin")
    assert first.sent == len(payload) // 2 and (second.status, second.sent) == (200, len(payload))
    assert leftovers(tmp_path) == ["a.bin"]


def test_retries_exhausted_names_the_url(server: Loopback, payload: bytes, tmp_path: Path) -> None:
    remote = server.serve("a.bin", payload, UNAVAILABLE)
    with pytest.raises(D.DownloadError, match=re.escape(remote.url)) as info:
        fetch(remote, tmp_path, retries=2)
    message = str(info.value)
    assert "after 3 attempts" in message and "503" in message and "\n" not in message
    assert [s.status for s in server.seen("a.bin")] == [503, 503, 503]
    assert leftovers(tmp_path) == []  # no partial file under any name


def closed_port() -> int:
    """A loopback port that nothing listens on once this function returns."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def unreachable(url: str, tmp_path: Path, **kwargs: Any) -> str:
    """The one-line error of downloading ``url``, which must fail without a retry."""
    remote = D.RemoteFile("a.bin", url, None, hashlib.md5(b"").hexdigest())
    with pytest.raises(D.DownloadError, match=re.escape(url)) as info:
        fetch(remote, tmp_path, retries=5, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.endswith("; not retried")
    return message


def test_connection_refused_is_not_retried(attempts: Attempts, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/a.bin"
    message = unreachable(url, tmp_path)
    assert "the connection was refused (127.0.0.1: Connection refused)" in message
    assert attempts.opened == [url] and attempts.waits == []
    assert leftovers(tmp_path) == []


def test_unresolvable_host_name_is_not_retried(attempts: Attempts, tmp_path: Path) -> None:
    url = "http://vggish-download-test.invalid/a.bin"  # RFC 6761: .invalid names never resolve
    message = unreachable(url, tmp_path)
    assert "the host name vggish-download-test.invalid does not resolve (" in message
    assert message.endswith("): no network or no DNS; not retried")
    assert attempts.opened == [url] and attempts.waits == []


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        (errno.ENETUNREACH, "the network is unreachable"),
        (errno.EHOSTUNREACH, "there is no route to the host"),
        (errno.ENETDOWN, "the network is down"),
    ],
)
def test_no_route_is_not_retried(
    code: int, cause: str, attempts: Attempts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What connect() raises on a machine without a route (made up here: loopback always routes)."""

    def no_route(self: socket.socket, address: Any) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(socket.socket, "connect", no_route)
    url = f"http://127.0.0.1:{closed_port()}/a.bin"
    assert f"{cause} (127.0.0.1: {os.strerror(code)}); not retried" in unreachable(url, tmp_path)
    assert attempts.opened == [url] and attempts.waits == []


def test_time_out_is_retried(attempts: Attempts, tmp_path: Path) -> None:
    """A server that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/a.bin"
        remote = D.RemoteFile("a.bin", url, None, hashlib.md5(b"").hexdigest())
        with pytest.raises(D.DownloadError, match=r"after 3 attempts \(last error: .*timed out") as info:
            fetch(remote, tmp_path, retries=2, timeout=0.2)
    assert "\n" not in str(info.value)
    assert attempts.opened == [url] * 3 and len(attempts.waits) == 2
    assert leftovers(tmp_path) == []


def test_http_404_is_not_retried(server: Loopback, tmp_path: Path) -> None:
    remote = D.RemoteFile("gone.bin", f"{server.base}/gone.bin", None, "0" * 32)
    with pytest.raises(D.DownloadError, match=r"HTTP 404 Not Found; not retried"):
        fetch(remote, tmp_path)
    assert len(server.seen("gone.bin")) == 1 and leftovers(tmp_path) == []


# --- refusals ---------------------------------------------------------------------------------------


def test_wrong_checksum_is_retried_then_keeps_nothing(
    server: Loopback, payload: bytes, tmp_path: Path
) -> None:
    remote = server.serve("a.bin", payload, md5=hashlib.md5(b"other").hexdigest())
    with pytest.raises(D.ChecksumError, match=f"got {hashlib.md5(payload).hexdigest()}") as info:
        fetch(remote, tmp_path, retries=1)
    assert "\n" not in str(info.value) and remote.url in str(info.value)
    assert len(server.seen("a.bin")) == 2 and leftovers(tmp_path) == []
    assert issubclass(D.ChecksumError, RuntimeError)


@pytest.mark.parametrize(
    ("remote", "message"),
    [
        (D.RemoteFile("../a.bin", "http://127.0.0.1:1/a", None, "0" * 32), "plain file name"),
        (D.RemoteFile("a.bin", "ftp://127.0.0.1/a", None, "0" * 32), "http"),
        (D.RemoteFile("a.bin", "file:///etc/passwd", None, "0" * 32), "http"),
        (D.RemoteFile("a.bin", "http://127.0.0.1:1/a", None, "ABC"), "md5"),
        (D.RemoteFile("a.bin", "http://127.0.0.1:1/a", None, "0" * 32, "0" * 63), "sha256"),
    ],
)
def test_malformed_remote_is_a_value_error(remote: D.RemoteFile, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        fetch(remote, tmp_path)
    assert leftovers(tmp_path) == []


def test_bad_settings_are_value_errors(tmp_path: Path) -> None:
    remote = D.RemoteFile("a.bin", "http://127.0.0.1:1/a", None, "0" * 32)
    with pytest.raises(ValueError, match="retries"):
        fetch(remote, tmp_path, retries=-1)
    with pytest.raises(ValueError, match="timeout"):
        fetch(remote, tmp_path, timeout=0)


# --- the official files -------------------------------------------------------------------------------


def test_manifest_agrees_with_the_code() -> None:
    manifest = json.loads((REPO / "weights" / "manifest.json").read_text())
    assert manifest["files"] == [dataclasses.asdict(f) for f in D.OFFICIAL_FILES]
    assert manifest["license"] == "Apache-2.0"


def test_official_files_match_the_reference_table() -> None:
    table = OFFICIAL_TABLE.read_text()
    for remote in D.OFFICIAL_FILES:
        row = next(line for line in table.splitlines() if line.startswith(f"| `{remote.name}`"))
        assert remote.url in row and remote.md5 in row
        assert remote.size is None or f"{remote.size:,}" in row
    readme = (REPO / "weights" / "README.md").read_text()
    assert all(f.url in readme and f.md5 in readme for f in D.OFFICIAL_FILES)


@dataclass
class Chain:
    """What the patched conversion, model loading and smoke test in :func:`official` saw."""

    calls: list[str]
    smoke_ok: list[bool]


@pytest.fixture
def official(server: Loopback, monkeypatch: pytest.MonkeyPatch) -> Chain:
    """Official files served on loopback; conversion, loading and the smoke test are recorded fakes."""
    monkeypatch.setattr(D, "OFFICIAL_CHECKPOINT", server.serve("vggish_model.ckpt", b"checkpoint" * 5000))
    monkeypatch.setattr(D, "OFFICIAL_PCA", server.serve("vggish_pca_params.npz", b"pca" * 1000))
    chain = Chain([], [True])

    def convert(checkpoint: Path, out: Path, *, pca: Path | None = None) -> Path:
        chain.calls.append(f"convert {checkpoint.name} {pca.name if pca else None} -> {out.parent}")
        out.write_text(f"converted {checkpoint.read_bytes()[:10]!r}")
        return out

    def load_model(path: Path, **kwargs: Any) -> str:
        chain.calls.append(f"load {Path(path).name}: {Path(path).read_text()}")
        return "model"

    def smoke(model: Any) -> V.SmokeResult:
        chain.calls.append(f"smoke {model}")
        measured = V.EXPECTED if chain.smoke_ok[0] else dataclasses.replace(V.EXPECTED, embedding_std=9.0)
        return V.SmokeResult(measured, V.EXPECTED, V.evaluate(measured))

    monkeypatch.setattr(I, "convert_checkpoint", convert)
    monkeypatch.setattr(I, "load_model", load_model)
    monkeypatch.setattr(I, "smoke_test", smoke)
    return chain


def test_download_official_fetches_converts_then_smoke_tests(official: Chain, tmp_path: Path) -> None:
    out = I.download_official(tmp_path, progress=False)
    assert out == tmp_path / "vggish.safetensors" and out.read_text() == "converted b'checkpoint'"
    assert official.calls == [
        f"convert vggish_model.ckpt vggish_pca_params.npz -> {tmp_path}",
        "load .unverified-vggish.safetensors: converted b'checkpoint'",
        "smoke model",
    ]
    assert leftovers(tmp_path) == ["vggish.safetensors", "vggish_model.ckpt", "vggish_pca_params.npz"]


def test_failed_smoke_test_leaves_no_weights(official: Chain, tmp_path: Path) -> None:
    official.smoke_ok[0] = False
    previous = tmp_path / "vggish.safetensors"
    previous.write_bytes(b"the user's earlier file")
    with pytest.raises(RuntimeError, match="smoke test: embedding std 9"):
        I.download_official(tmp_path, progress=False)
    assert official.calls[-1] == "smoke model" and previous.read_bytes() == b"the user's earlier file"
    assert leftovers(tmp_path) == ["vggish.safetensors", "vggish_model.ckpt", "vggish_pca_params.npz"]


def test_failed_conversion_leaves_no_weights(
    official: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(checkpoint: Path, out: Path, *, pca: Path | None = None) -> Path:
        out.write_bytes(b"half a file")
        raise ValueError("not a checkpoint")

    monkeypatch.setattr(I, "convert_checkpoint", broken)
    with pytest.raises(ValueError, match="not a checkpoint"):
        I.download_official(tmp_path, progress=False)
    assert leftovers(tmp_path) == ["vggish_model.ckpt", "vggish_pca_params.npz"]
    assert not any("smoke" in call for call in official.calls)


@pytest.mark.slow
def test_real_load_and_smoke_test_reject_random_weights(
    official: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def convert_to_random(checkpoint: Path, out: Path, *, pca: Path | None = None) -> Path:
        loaded = W.random_weights()
        return W.save_weights(out, loaded.state_dict, loaded.pca, {"source": "test"})

    monkeypatch.setattr(I, "convert_checkpoint", convert_to_random)
    monkeypatch.setattr(I, "load_model", loader.load_model)
    monkeypatch.setattr(I, "smoke_test", V.smoke_test)
    with pytest.raises(RuntimeError, match=r"fail Google's smoke test: .*embedding std"):
        I.download_official(tmp_path, progress=False)
    assert leftovers(tmp_path) == ["vggish_model.ckpt", "vggish_pca_params.npz"]


def test_bad_download_stops_before_conversion(official: Chain, tmp_path: Path) -> None:
    (tmp_path / "vggish_model.ckpt").mkdir()  # the destination cannot be replaced by a file
    with pytest.raises(IsADirectoryError):
        I.download_official(tmp_path, progress=False)
    assert official.calls == []


def test_cli_download_reports_digests_and_smoke_table(
    official: Chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["download", "--dir", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    ckpt = (tmp_path / "vggish_model.ckpt").read_bytes()
    assert f"sha256 {hashlib.sha256(ckpt).hexdigest()}" in out
    assert "result: PASS" in out and f"wrote {tmp_path / 'vggish.safetensors'}" in out


def test_cli_download_failure_is_one_line(
    official: Chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    official.smoke_ok[0] = False
    assert main(["download", "--dir", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vggish: error: the converted weights fail")


def test_cli_download_offline_fails_at_once_in_one_line_naming_the_ways_out(
    attempts: Attempts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "https://vggish-download-test.invalid/audioset/vggish_model.ckpt"
    monkeypatch.setattr(D, "OFFICIAL_CHECKPOINT", dataclasses.replace(D.OFFICIAL_CHECKPOINT, url=url))
    assert main(["download", "--dir", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    cause = "the host name vggish-download-test.invalid does not resolve ("
    assert err[0].startswith(f"vggish: error: could not download {url}: {cause}")
    assert "): no network or no DNS; not retried; instead, put Google's vggish_model.ckpt and " in err[0]
    ways_out = f"vggish_pca_params.npz in {tmp_path} (converted on first use), or use --weights random"
    assert err[0].endswith(f"{ways_out} for demo weights")
    assert attempts.opened == [url] and attempts.waits == []
    assert leftovers(tmp_path) == []


def test_service_offline_start_fails_at_once_in_one_line_naming_the_ways_out(
    attempts: Attempts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vggish_app.config import Settings
    from vggish_app.model_loader import resolve_weights

    url = "https://vggish-download-test.invalid/audioset/vggish_model.ckpt"
    monkeypatch.setattr(D, "OFFICIAL_CHECKPOINT", dataclasses.replace(D.OFFICIAL_CHECKPOINT, url=url))
    weights = tmp_path / "vggish.safetensors"
    with pytest.raises(RuntimeError) as info:
        resolve_weights(Settings(weights=str(weights), download=True))
    message = str(info.value)
    assert "\n" not in message and f"could not download {url}: the host name" in message
    assert "no network or no DNS; not retried): put Google's vggish_model.ckpt and" in message
    assert message.endswith("or set VGGISH_WEIGHTS=random for a demo")
    assert attempts.opened == [url] and leftovers(tmp_path) == []
