"""What each attack of issue 12 (and of reading bodies: held back, trickled) costs the server: its
own peak memory, status and time.

Each attack runs against a fresh ``uvicorn app.main:app`` (random weights, torch backend, default
limits) on loopback; the server's peak resident memory (``VmHWM``) is reset before the request
(``/proc/PID/clear_refs``) and its growth above the resident memory before it is reported. Pass
``--tree`` to measure another checkout of the repository (e.g. an older commit exported with
``git archive``), so that the figures compare side by side::

    python benchmarks/attack_memory.py                      # this checkout
    mkdir /tmp/old && git archive e37628e | tar -x -C /tmp/old
    python benchmarks/attack_memory.py --tree /tmp/old      # before

Linux only (``/proc``). Mind the machine: on the code before issue 12 each 90 MB JSON body takes
some 16 GB (the attack the issue reports), so name the attacks to run there. The attacks put a
WAV and an MPEG-TS file in a scratch folder, which is also the server's ``TMPDIR``: a playlist
upload that reaches them shows in the table as a 200.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20
JSON = {"content-type": "application/json"}
Attack = Callable[[httpx.Client, Path], httpx.Response]


def wav(seconds: float, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(int(seconds * rate), np.int16), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def zeros_json(count: int, rate: int, rate_first: bool = True) -> bytes:
    rate_field = b'"sample_rate": %d' % rate
    samples = b'"samples": [' + b"0," * (count - 1) + b"0]"
    fields = (rate_field, samples) if rate_first else (samples, rate_field)
    return b'{"inputs": [{' + b", ".join(fields) + b"}]}"


def floats_json(count: int) -> bytes:
    x = np.random.default_rng(0).standard_normal(count) * 0.1
    return json.dumps({"inputs": [{"samples": x.tolist(), "sample_rate": 16000}]}).encode()


def hls(target: str) -> bytes:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{target}\n#EXT-X-ENDLIST\n".encode()


ATTACKS: dict[str, Attack] = {
    "JSON, 90 MB of zeros at 16 kHz, rate first": lambda c, _: c.post(
        "/v1/embeddings", content=zeros_json(45_000_000, 16000), headers=JSON
    ),
    "JSON, 90 MB of zeros at 16 kHz, rate last": lambda c, _: c.post(
        "/v1/embeddings", content=zeros_json(45_000_000, 16000, rate_first=False), headers=JSON
    ),
    "JSON, 97 MB of floats (hop 0.01: parsed, then 413)": lambda c, _: c.post(
        "/v1/embeddings?hop=0.01", content=floats_json(4_500_000), headers=JSON
    ),
    "JSON, 22 MB of floats (hop 0.01: parsed, then 413)": lambda c, _: c.post(
        "/v1/embeddings?hop=0.01", content=floats_json(1_048_576), headers=JSON
    ),
    "3 x 600 s WAV at 16 kHz, hop 0.01": lambda c, _: c.post(
        "/v1/embeddings?hop=0.01", files=[("file", (f"{i}.wav", wav(600))) for i in range(3)]
    ),
    "ffconcat naming secret/secret.wav": lambda c, _: c.post(
        "/v1/embeddings",
        content=b"ffconcat version 1.0\nfile secret/secret.wav\n",
        headers={"content-type": "application/octet-stream"},
    ),
    "HLS playlist naming the absolute secret.ts": lambda c, scratch: c.post(
        "/v1/embeddings", files={"file": ("a.m3u8", hls(str(scratch / "secret" / "secret.ts")))}
    ),
    "ffconcat naming a missing file": lambda c, _: c.post(
        "/v1/embeddings",
        content=b"ffconcat version 1.0\nfile secret/nothere.wav\n",
        headers={"content-type": "application/octet-stream"},
    ),
}


def _raw_request(client: httpx.Client, length: int, content_type: str = "audio/wav") -> socket.socket:
    """A socket on which the head of ``POST /v1/embeddings`` with ``Content-Length: length`` is sent."""
    sock = socket.create_connection((client.base_url.host, client.base_url.port), timeout=600)
    head = f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
    sock.sendall(f"{head}Content-Length: {length}\r\n\r\n".encode())
    return sock


def _answer(sock: socket.socket, waited: float) -> httpx.Response:
    """The server's status line (the problem's detail is not read), or 0 if it has not answered."""
    if not select.select([sock], [], [], 0)[0]:
        return httpx.Response(0, text=f"no answer after {waited:.0f} s")
    status = int(sock.recv(65536).split(b" ", 2)[1])
    return httpx.Response(status, text=f"answered after {waited:.0f} s")


def _server_read_all(port: int) -> None:
    """Waits until the server's sockets on ``port`` hold nothing unread (from /proc/net/tcp)."""
    for _ in range(3000):
        rx = sum(
            int(fields[4].split(":")[1], 16)
            for fields in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
            if fields[1].endswith(f":{port:04X}")
        )
        if rx == 0:
            return
        time.sleep(0.1)


def held_back(client: httpx.Client, _: Path, clients: int = 8, size: int = 95_000_000) -> httpx.Response:
    """``clients`` uploads of ``size`` bytes, each but its last byte sent; the server's memory is
    measured once it has read them, then the clients leave."""
    socks = [_raw_request(client, size) for _ in range(clients)]
    body = memoryview(b"RIFF" + bytes(size - 5))
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda s: s.sendall(body), socks))
    _server_read_all(client.base_url.port or 80)
    answer = _answer(socks[0], time.perf_counter() - started)
    for sock in socks:
        sock.close()
    return answer


def trickle(client: httpx.Client, _: Path, most_s: float = 60.0) -> httpx.Response:
    """A 10 kB body sent one byte every half second, for at most ``most_s``."""
    sock = _raw_request(client, 10_000)
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < most_s and not select.select([sock], [], [], 0.5)[0]:
            sock.sendall(b"\0")
        return _answer(sock, time.perf_counter() - started)
    finally:
        sock.close()


ATTACKS["8 uploads of 95 MB, the last byte held back"] = held_back
ATTACKS["a body at 1 byte every 0.5 s (60 s at most)"] = trickle


def proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0]) * 1024
    raise KeyError(field)


def secret_files(scratch: Path) -> None:
    """A WAV and an MPEG-TS copy (HLS plays TS segments) that no upload may reach."""
    folder = scratch / "secret"
    folder.mkdir(exist_ok=True)
    sf.write(folder / "secret.wav", np.full(48000, 1000, np.int16), 16000, subtype="PCM_16")
    command = ["ffmpeg", "-v", "error", "-y", "-i", str(folder / "secret.wav"), "-c:a", "mp2"]
    subprocess.run([*command, str(folder / "secret.ts")], check=True)


def serve(tree: Path, scratch: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "VGGISH_WEIGHTS": "random",
        "VGGISH_BACKEND": "torch",
        "VGGISH_DATA_DIR": str(scratch / "data"),
        "PYTHONPATH": str(tree),
        "TMPDIR": str(scratch),
    }
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)]
    proc = subprocess.Popen(command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(1200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the server in {tree} did not start")


def summary(response: httpx.Response) -> str:
    if response.status_code == 0 or not response.content.startswith(b"{"):
        return response.text
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        return str(response.json()["detail"])[:100].replace("|", "/")
    return f"{len(response.json()['data'][0]['embeddings'])} embeddings"


def measure(name: str, tree: Path, scratch: Path, port: int) -> str:
    proc = serve(tree, scratch, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=900) as client:
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
            before = proc_status(proc.pid, "VmRSS")
            started = time.perf_counter()
            response = ATTACKS[name](client, scratch)
            seconds = time.perf_counter() - started
            growth = proc_status(proc.pid, "VmHWM") - before
        figures = f"{response.status_code} | +{growth / MIB:,.0f} MiB | {seconds:.1f} s"
        return f"| {name} | {figures} | {summary(response)} |"
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout to serve (default: this one)")
    parser.add_argument("--port", type=int, default=8713)
    parser.add_argument("attacks", nargs="*", help="names of ATTACKS (default: all)")
    args = parser.parse_args()
    print("| attack | status | server's peak | time | answer |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="vggish-attacks-") as folder:
        scratch = Path(folder)
        secret_files(scratch)
        for name in args.attacks or list(ATTACKS):
            print(measure(name, args.tree.resolve(), scratch, args.port), flush=True)


if __name__ == "__main__":
    main()
