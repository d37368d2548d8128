"""Reliability suite: what an attacker can send, against a real server process on loopback.

``HTTP_TABLE`` holds bad requests on every surface (multipart, raw and JSON audio, heads
training, classification and import, the docs and path parameters), each with the status and
problem type it must get. After each one the server must still answer ``/healthz``, and its own
peak resident memory (``VmHWM`` in ``/proc/PID/status``, reset before each request) may have
grown by at most the row's budget above what it held before the request. ``CLI_TABLE`` does the
same for ``vggish embed`` and ``vggish extract`` (exit status, one-line message, the child's own
peak). ``test_overload...`` sends long clips from many clients at once: 429 with ``Retry-After``
for what the queue cannot hold, then recovery.

To extend: add a row (a name, a sender, the expected status and problem slug, a budget when it
needs one); run ``pytest tests/app/test_reliability.py -s`` to see each row's figures. The other
reliability tests: ``tests/app/test_service_schema.py`` (schemathesis ``--checks all``) and the
``kill -9`` tests of ``tests/test_extract.py`` and ``tests/test_heads_store.py``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors
from service_helpers import (
    REPO,
    Server,
    assert_problem,
    clip,
    encode,
    metric,
    proc_status,
    reset_peak,
    uvicorn_server,
)

pytestmark = pytest.mark.slow  # real servers, long clips, CLI processes

MIB = 1 << 20
UPLOAD_LIMIT = 40 * MIB  # the server's max_upload_bytes here: room for every row's body
BUDGET = 48 * MIB  # a refused request: a chunk of its body or of decoding, what the row names more
BATCH = 16  # examples per model call: a model batch's activations (~8 MB an example) stay small
WARM_SECONDS = 20.0  # a request of full model batches, to measure what one batch costs
RNG = np.random.default_rng(12)
GOOD_EMBEDDINGS = RNG.standard_normal((4, 128)).tolist()


# --- inputs -----------------------------------------------------------------------------------


def zeros_wav(seconds: float, rate: int = 8000, channels: int = 1) -> bytes:
    """A silent 16-bit WAV (cheap to make at any length)."""
    return encode(np.zeros((int(seconds * rate), channels), np.int16), rate)


def float_wav(values: list[float], rate: int = 16000) -> bytes:
    """A 32-bit float WAV: ``values`` repeated to one second (NaN and infinity survive)."""
    x = np.resize(np.asarray(values, np.float32), rate)
    return encode(x, rate, subtype="FLOAT")


def zero_bit_wav() -> bytes:
    """A WAV whose header says 0 bits per sample."""
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 0, 0, 0)
    data = b"\0" * 1000
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def concat_list(target: str) -> bytes:
    return f"ffconcat version 1.0\nfile {target}\n".encode()


def hls_playlist(target: str) -> bytes:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{target}\n#EXT-X-ENDLIST\n".encode()


def samples_body(samples: str, rate: int = 8000, first: bool = True, **fields: Any) -> bytes:
    """A JSON body whose ``samples`` text is given as is (NaN, 1e400...); the rate before or
    after the samples."""
    rate_field = f'"sample_rate": {rate}'
    extra = "".join(f", {json.dumps(k)}: {json.dumps(v)}" for k, v in fields.items())
    parts = [rate_field, f'"samples": [{samples}]'] if first else [f'"samples": [{samples}]', rate_field]
    return ('{"inputs": [{' + ", ".join(parts) + extra + "}]}").encode()


def zeros_text(count: int) -> str:
    return ",".join(["0"] * count)


def with_metadata(data: bytes, **meta: str) -> bytes:
    """A copy of a head file with metadata changed."""
    (n,) = struct.unpack("<Q", data[:8])
    metadata = json.loads(data[8 : 8 + n])["__metadata__"] | meta
    return bytes(save_safetensors(load_safetensors(data), metadata=metadata))


# --- the server -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The running server, the files beside it that no upload may reach, a stored head."""

    server: Server
    http: httpx.Client
    secret_dir: Path
    spool_dir: Path
    head_file: bytes
    baseline: int  # the server's resident memory once warm, before the table
    one_batch: int  # what a request of one full model batch adds to its peak (activations)

    @property
    def pid(self) -> int:
        return self.server.proc.pid


def full_batch_peak(server: Server) -> int:
    """What one request of a full model batch adds to the warm server's peak (activations);
    measured on the second such request, once the first has put the model's memory in place."""
    growth = 0
    for _ in range(2):
        reset_peak(server.proc.pid)
        before = proc_status(server.proc.pid, "VmRSS")
        data = clip(WARM_SECONDS)
        answer = httpx.post(server.base + "/v1/embeddings", files={"file": ("w.wav", data)}, timeout=600)
        assert answer.status_code == 200
        growth = proc_status(server.proc.pid, "VmHWM") - before
    return growth


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("reliability")  # the server's TMPDIR, where uploads are spooled
    secret, spool = root / "secret", root
    secret.mkdir()
    sf.write(secret / "secret.wav", np.zeros(48000, np.int16), 16000, subtype="PCM_16")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(secret / "secret.wav"), "-c:a", "mp2", str(secret / "secret.ts")],
        check=True,
    )
    env = {
        "VGGISH_DATA_DIR": str(root / "data"),
        "TMPDIR": str(spool),
        "VGGISH_MAX_BATCH_EXAMPLES": str(BATCH),
        "VGGISH_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
        "VGGISH_MAX_JSON_BYTES": str(UPLOAD_LIMIT),  # the JSON rows measure bodies past the default
    }
    with uvicorn_server(**env) as server, httpx.Client(base_url=server.base, timeout=600) as http:
        good = {"name": "door", "embeddings": GOOD_EMBEDDINGS, "labels": ["a", "b", "a", "b"]}
        assert http.post("/v1/heads", json=good).status_code == 201
        one_batch = full_batch_peak(server)
        head = http.get("/v1/heads/door/export").content
        yield Target(server, http, secret, spool, head, proc_status(server.proc.pid, "VmRSS"), one_batch)


# --- the HTTP table ---------------------------------------------------------------------------

Send = Callable[[Target], httpx.Response]


@dataclass(frozen=True)
class Attack:
    """One bad request: how to send it, what it must get, what it may cost.

    Attributes:
        send: sends it to the target.
        status: the expected status.
        slug: the expected problem type's slug (``urn:vggish:problem:<slug>``); None where the
            HTTP server (uvicorn) refuses the request before the app sees it, in plain text.
        budget: how far the server's peak resident memory may rise above what it held before.
        detail: a regular expression the problem's ``detail`` must match.
    """

    send: Send
    status: int
    slug: str | None
    budget: int = BUDGET
    detail: str = ""


def multipart(name: str, data: bytes, query: str = "") -> Send:
    return lambda t: t.http.post("/v1/embeddings" + query, files={"file": (name, data)})


def raw(data: bytes, content_type: str = "application/octet-stream", **headers: str) -> Send:
    return lambda t: t.http.post(
        "/v1/embeddings", content=data, headers={"content-type": content_type, **headers}
    )


def json_body(body: bytes, path: str = "/v1/embeddings") -> Send:
    return lambda t: t.http.post(path, content=body, headers={"content-type": "application/json"})


def relative_secret(t: Target, depth: int, name: str = "secret.wav") -> str:
    """``name`` in the secret folder (which is in the server's TMPDIR), as seen from a file
    spooled ``depth`` folders below TMPDIR (0: the spool is TMPDIR itself, as it once was: then
    the name is "safe" even for ffmpeg's concat demuxer)."""
    return "../" * depth + f"{t.secret_dir.name}/{name}"


def playlist(kind: str, where: str, name: str = "list.m4a") -> Send:
    """A playlist naming the server's secret file, relative (spool depth 1 or 2) or absolute."""

    def send(t: Target) -> httpx.Response:
        target = (
            str(t.secret_dir / "secret.ts")
            if where == "absolute"
            else relative_secret(t, int(where), "secret.ts")
        )
        text = hls_playlist(target) if kind == "hls" else concat_list(target.replace(".ts", ".wav"))
        return t.http.post("/v1/embeddings", files={"file": (name, text)})

    return send


def many_files(count: int, seconds: float, query: str = "", path: str = "/v1/embeddings") -> Send:
    data = zeros_wav(seconds)
    return lambda t: t.http.post(path + query, files=[("file", (f"{i}.wav", data)) for i in range(count)])


def classify(body: bytes, head: str = "door") -> Send:
    return json_body(body, f"/v1/heads/{head}/classify")


def train_json(**changes: Any) -> Send:
    body = {"name": "t1", "embeddings": GOOD_EMBEDDINGS, "labels": ["a", "b", "a", "b"], **changes}
    return lambda t: t.http.post("/v1/heads", json=body)


def train_form(labels: list[str], files: int, name: str = "t2") -> Send:
    data = zeros_wav(1.5, 16000)
    return lambda t: t.http.post(
        "/v1/heads",
        data={"name": name, "label": labels},
        files=[("file", (f"{i}.wav", data)) for i in range(files)],
    )


def import_head(change: Callable[[bytes], bytes], name: str = "imported") -> Send:
    return lambda t: t.http.put(
        f"/v1/heads/{name}", content=change(t.head_file), headers={"content-type": "application/octet-stream"}
    )


def over_socket(head: str, body: bytes = b"") -> Send:
    """Sends a request as bytes (what an HTTP client refuses to send: lying lengths) and reads
    the answer up to the end of its problem+json body."""

    def send(t: Target) -> httpx.Response:
        host, port = t.server.base.removeprefix("http://").split(":")
        request = head.replace("\n", "\r\n").encode() + b"\r\n" + body
        with socket.create_connection((host, int(port)), timeout=120) as s:
            s.sendall(request)
            answer = b""
            while not answer.rstrip().endswith(b"}") and (chunk := s.recv(65536)):
                answer += chunk
        status_line, _, rest = answer.partition(b"\r\n")
        head_text, _, content = rest.partition(b"\r\n\r\n")
        lines = head_text.decode("latin-1").splitlines()
        headers = [(name, value) for name, _, value in (line.partition(": ") for line in lines)]
        return httpx.Response(int(status_line.split()[1]), headers=headers, content=content)

    return send


def chunked(total: int) -> Send:
    def body() -> Iterator[bytes]:
        for _ in range(total // (1 << 20)):
            yield b"\0" * (1 << 20)

    return lambda t: t.http.post("/v1/embeddings", content=body(), headers={"content-type": "audio/wav"})


NAN_DETAIL = r"the audio contains NaN or infinity \(first at sample \d+\): samples must be finite numbers"
NOT_AUDIO = "not an audio container"
SECONDS_700 = zeros_text(700 * 8000)  # 5.6 million numbers: 11 MB of JSON, 22 MB as float32

HTTP_TABLE: dict[str, Attack] = {
    # multipart audio
    "multipart: no file part": Attack(
        lambda t: t.http.post("/v1/embeddings", files={"audio": ("a", b"x")}), 400, "missing-audio"
    ),
    "multipart: empty file": Attack(multipart("a.wav", b""), 400, "missing-audio"),
    "multipart: text file": Attack(multipart("a.wav", b"hello " * 100), 415, "undecodable-audio"),
    "multipart: truncated wav": Attack(multipart("t.wav", clip(2.0)[:20000]), 415, "undecodable-audio"),
    "multipart: 0-bit wav": Attack(multipart("zero.wav", zero_bit_wav()), 415, "undecodable-audio"),
    "multipart: float wav with NaN": Attack(
        multipart("n.wav", float_wav([0.1, np.nan])), 422, "invalid-audio", detail=NAN_DETAIL
    ),
    "multipart: float wav with inf": Attack(
        multipart("i.wav", float_wav([np.inf, 0.1])), 422, "invalid-audio", detail=NAN_DETAIL
    ),
    "multipart: 65-channel wav": Attack(
        multipart("c.wav", zeros_wav(0.1, channels=65)), 415, "undecodable-audio"
    ),
    "multipart: ffconcat of a server file": Attack(
        playlist("concat", "0"), 415, "undecodable-audio", detail=NOT_AUDIO
    ),
    "multipart: ffconcat of a server file (../)": Attack(
        playlist("concat", "1"), 415, "undecodable-audio", detail=NOT_AUDIO
    ),
    "multipart: ffconcat of a server file (../../)": Attack(
        playlist("concat", "2"), 415, "undecodable-audio", detail=NOT_AUDIO
    ),
    "multipart: HLS playlist of a server file": Attack(
        playlist("hls", "0", "list.m3u8"), 415, "undecodable-audio", detail=NOT_AUDIO
    ),
    "multipart: HLS playlist of a server file (../../)": Attack(
        playlist("hls", "2", "list.m3u8"), 415, "undecodable-audio", detail=NOT_AUDIO
    ),
    "multipart: HLS playlist, absolute path": Attack(
        playlist("hls", "absolute", "a.ts"), 415, "undecodable-audio", detail=NOT_AUDIO
    ),
    "multipart: 3 x 600 s at hop 0.01": Attack(
        many_files(3, 600.0, "?hop=0.01"), 413, "limit-exceeded", detail="^max_queue_examples"
    ),
    "multipart: 601 s input": Attack(
        many_files(1, 601.0), 413, "limit-exceeded", detail="^max_input_seconds"
    ),
    "multipart: 4 x 500 s": Attack(
        many_files(4, 500.0), 413, "limit-exceeded", detail="^max_request_seconds"
    ),
    "multipart: 33 files": Attack(many_files(33, 0.1), 413, "limit-exceeded", detail="^max_inputs"),
    "multipart: hop 0.123": Attack(multipart("a.wav", clip(1.0), "?hop=0.123"), 422, "invalid-parameter"),
    "multipart: hop 1e308": Attack(multipart("a.wav", clip(1.0), "?hop=1e308"), 422, "invalid-parameter"),
    "multipart: unknown query parameter": Attack(
        multipart("a.wav", clip(1.0), "?colour=red"), 422, "invalid-parameter"
    ),
    # raw audio
    "raw: empty body": Attack(raw(b"", "audio/wav"), 400, "missing-audio"),
    "raw: text/plain": Attack(raw(clip(1.0), "text/plain"), 415, "unsupported-media-type"),
    "raw: ffconcat of a server file": Attack(
        lambda t: raw(concat_list(relative_secret(t, 0)))(t), 415, "undecodable-audio", detail=NOT_AUDIO
    ),
    "raw: Content-Length of 1 TB": Attack(
        over_socket(
            "POST /v1/embeddings HTTP/1.1\nHost: x\nContent-Type: audio/wav\nContent-Length: 1000000000000\n"
        ),
        413,
        "limit-exceeded",
        detail="^max_upload_bytes",
    ),
    "raw: body past max_upload_bytes, chunked": Attack(
        chunked(UPLOAD_LIMIT + MIB),
        413,
        "limit-exceeded",
        budget=BUDGET + UPLOAD_LIMIT,
        detail="^max_upload_bytes",
    ),
    "raw: Content-Length not a number": Attack(
        over_socket("POST /v1/embeddings HTTP/1.1\nHost: x\nContent-Type: audio/wav\nContent-Length: lots\n"),
        400,
        None,
    ),
    # JSON audio
    "json: malformed": Attack(json_body(b'{"inputs": [{"samples": [0.1,'), 422, "invalid-parameter"),
    "json: NaN samples": Attack(json_body(samples_body("0.1, NaN")), 422, "invalid-audio", detail=NAN_DETAIL),
    "json: 1e400 samples": Attack(json_body(samples_body("1e400")), 422, "invalid-audio", detail=NAN_DETAIL),
    "json: int16 values as floats": Attack(
        json_body(samples_body("1200, -3000")), 422, "invalid-audio", detail='"dtype": "int16"'
    ),
    "json: int16 out of range": Attack(json_body(samples_body("40000", dtype="int16")), 422, "invalid-audio"),
    "json: 700 s of numbers, rate first": Attack(
        json_body(samples_body(SECONDS_700)), 413, "limit-exceeded", detail="^max_input_seconds"
    ),
    "json: 700 s of numbers, rate last": Attack(
        json_body(samples_body(SECONDS_700, first=False)), 413, "limit-exceeded", budget=BUDGET + 3 * 22 * MIB
    ),
    "json: 33 inputs": Attack(
        json_body(json.dumps({"inputs": [{"audio_base64": "AAAA"}] * 33}).encode()),
        413,
        "limit-exceeded",
        detail="^max_inputs",
    ),
    "json: ragged frames": Attack(json_body(samples_body("[0.1, 0.2], [0.3]")), 422, "invalid-audio"),
    "json: 100000 nested arrays": Attack(
        json_body(b'{"inputs": [{"samples": ' + b"[" * 100_000 + b"]}"), 422, "invalid-parameter"
    ),
    "json: base64 of a concat list": Attack(
        lambda t: json_body(
            json.dumps(
                {"inputs": [{"audio_base64": base64.b64encode(concat_list(relative_secret(t, 0))).decode()}]}
            ).encode()
        )(t),
        415,
        "undecodable-audio",
        detail=NOT_AUDIO,
    ),
    "json: bad base64": Attack(
        json_body(b'{"inputs": [{"audio_base64": "%%%%"}]}'), 422, "invalid-parameter"
    ),
    "json: name of 5000 characters": Attack(
        json_body(samples_body("0", name="n" * 5000)), 422, "invalid-parameter"
    ),
    "json: unknown field": Attack(json_body(samples_body("0", colour="red")), 422, "invalid-parameter"),
    # heads: training
    "train json: 127-d embeddings": Attack(
        train_json(embeddings=np.ones((4, 127)).tolist()), 422, "invalid-parameter"
    ),
    "train json: one class": Attack(train_json(labels=["a"] * 4), 422, "invalid-parameter"),
    "train json: name ..": Attack(train_json(name=".."), 422, "invalid-parameter"),
    "train form: labels do not match files": Attack(train_form(["a", "b", "a"], 2), 422, "invalid-parameter"),
    "train form: taken name": Attack(train_form(["a", "b"], 2, name="door"), 409, "head-exists"),
    # heads: classification
    "classify: unknown head": Attack(classify(samples_body("0"), head="nobody"), 404, "head-not-found"),
    "classify: NaN samples": Attack(classify(samples_body("NaN")), 422, "invalid-audio", detail=NAN_DETAIL),
    "classify: 3 x 600 s at hop 0.01": Attack(
        lambda t: t.http.post(
            "/v1/heads/door/classify?hop=0.01",
            files=[("file", (f"{i}.wav", zeros_wav(600))) for i in range(3)],
        ),
        413,
        "limit-exceeded",
    ),
    # heads: import and names
    "import: not safetensors": Attack(import_head(lambda d: b"PK\x03\x04" + d[4:]), 422, "invalid-parameter"),
    "import: metrics 1e400": Attack(
        import_head(
            lambda d: with_metadata(d, metrics='{"cv_accuracy": null, "train_accuracy": 1e400, "folds": 0}')
        ),
        422,
        "invalid-parameter",
    ),
    "import: metrics NaN": Attack(
        import_head(
            lambda d: with_metadata(d, metrics='{"cv_accuracy": null, "train_accuracy": NaN, "folds": 0}')
        ),
        422,
        "invalid-parameter",
    ),
    "import: 31-digit num_examples": Attack(
        import_head(lambda d: with_metadata(d, num_examples="1" * 31)), 422, "invalid-parameter"
    ),
    "import: empty body": Attack(import_head(lambda d: b""), 400, "missing-audio"),
    "import: name .": Attack(import_head(lambda d: d, name="%2E"), 422, "invalid-parameter"),
    "get: name ..": Attack(lambda t: t.http.get("/v1/heads/%2E%2E"), 422, "invalid-parameter"),
}


@pytest.mark.parametrize("name", list(HTTP_TABLE))
def test_bad_request(target: Target, name: str, figures: list[str]) -> None:
    attack = HTTP_TABLE[name]
    reset_peak(target.pid)
    before = proc_status(target.pid, "VmRSS")
    response = attack.send(target)
    growth = proc_status(target.pid, "VmHWM") - before
    figures.append(f"{name:48} {response.status_code}  peak +{growth / MIB:6.1f} MiB")
    assert response.status_code == attack.status, response.text[:1000]
    if attack.slug is not None:
        body = assert_problem(response, attack.status)
        assert body["type"].endswith(":" + attack.slug), body
        assert re.search(attack.detail, body["detail"]), body["detail"]
    for leaked in (str(target.spool_dir), "secret"):
        assert leaked not in response.text, f"the answer shows {leaked!r}"
    assert target.server.proc.poll() is None and target.http.get("/healthz").status_code == 200
    assert growth <= attack.budget, f"the server's peak rose by {growth / MIB:.0f} MiB"


@pytest.fixture(scope="module")
def figures() -> Iterator[list[str]]:
    """Each row's status and peak growth, printed at the end (``pytest -s`` shows them)."""
    rows: list[str] = []
    yield rows
    print("\n" + "\n".join(rows))


def test_an_accepted_json_body_costs_its_float32_audio_and_one_batch(
    target: Target, figures: list[str]
) -> None:
    """90 s of random float samples as JSON (30 MB of text, 5.8 MB as float32): the peak is one
    model batch plus a few times the float32 audio, not the text parsed into Python objects."""
    x = np.random.default_rng(3).uniform(-0.9, 0.9, 90 * 16000)
    body = json.dumps({"inputs": [{"samples": x.tolist(), "sample_rate": 16000}]}).encode()
    reset_peak(target.pid)
    before = proc_status(target.pid, "VmRSS")
    r = json_body(body)(target)
    growth = proc_status(target.pid, "VmHWM") - before
    audio = x.size * 4
    figures.append(
        f"{'json: 90 s accepted (%.0f MiB of JSON)' % (len(body) / MIB):48} {r.status_code}  "
        f"peak +{growth / MIB:6.1f} MiB"
    )
    assert r.status_code == 200 and len(r.json()["data"][0]["embeddings"]) == 93
    assert growth <= target.one_batch + 3 * audio + BUDGET, f"peak +{growth / MIB:.0f} MiB"


RETAINED = 160 * MIB  # what the allocators may keep of the table's requests, freed


def test_nothing_reached_the_secret_files_and_nothing_was_left_behind(target: Target) -> None:
    """After the whole table: no spooled upload left, an empty queue, no 500, and the process
    holds about what it held before (no request's memory kept)."""
    spooled = [p.name for p in target.spool_dir.iterdir() if p.name.startswith("vggish-audio-")]
    assert spooled == []  # every spooled upload removed
    held = proc_status(target.pid, "VmRSS") - target.baseline
    assert held <= RETAINED, f"the server holds {held / MIB:.0f} MiB more than before the table"
    # the queue is empty and nothing failed unexpectedly
    text = target.http.get("/metrics").text
    assert metric(text, "vggish_queue_examples") == 0
    assert metric(text, "vggish_failures_total", reason="internal") == 0


# --- overload ---------------------------------------------------------------------------------

CLIENTS = 12
CLIP_SECONDS = 30.0  # 31 examples each at the default hop
OVERLOAD_BUDGET = 160 * MIB  # 12 uploads (1 MB each), 100 queued examples (2.5 MB), decode threads, noise


def test_overload_answers_429_with_retry_after_then_recovers(tmp_path: Path, figures: list[str]) -> None:
    """12 clients send a 30 s clip each at once to a queue of 100 examples: about 3 are admitted
    at a time, the rest get 429 with Retry-After; memory stays that of one model batch plus the
    queue, and all is well afterwards."""
    env = {
        "VGGISH_DATA_DIR": str(tmp_path),
        "VGGISH_MAX_QUEUE_EXAMPLES": "100",
        "VGGISH_RETRY_AFTER_S": "2",
        "VGGISH_MAX_BATCH_EXAMPLES": str(BATCH),
    }
    data = zeros_wav(CLIP_SECONDS, 16000)
    with uvicorn_server(**env) as server:
        one_batch = full_batch_peak(server)
        start = threading.Barrier(CLIENTS)

        def call(_: int) -> httpx.Response:
            with httpx.Client(base_url=server.base, timeout=600) as http:
                start.wait(timeout=120)
                return http.post("/v1/embeddings", files={"file": ("long.wav", data)})

        reset_peak(server.proc.pid)
        before = proc_status(server.proc.pid, "VmRSS")
        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(pool.map(call, range(CLIENTS)))
        growth = proc_status(server.proc.pid, "VmHWM") - before
        counts = {status: [r.status_code for r in answers].count(status) for status in (200, 429)}
        figures.append(f"overload: {counts}; peak +{growth / MIB:.0f} MiB (one batch +{one_batch / MIB:.0f})")
        assert {r.status_code for r in answers} == {200, 429}, [r.status_code for r in answers]
        for r in answers:
            if r.status_code == 429:
                assert_problem(r, 429)
                assert r.headers["retry-after"] == "2"
        limit = one_batch + OVERLOAD_BUDGET
        assert growth <= limit, f"peak +{growth / MIB:.0f} MiB; one batch +{one_batch / MIB:.0f} MiB"
        assert metric(httpx.get(server.base + "/metrics").text, "vggish_queue_examples") == 0
        again = httpx.post(server.base + "/v1/embeddings", files={"file": ("a.wav", data)}, timeout=600)
        assert again.status_code == 200 and len(again.json()["data"][0]["embeddings"]) == 31


# --- the CLI ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CliCase:
    """A bad input for a command: the files it makes, the command's arguments, what it must do."""

    files: dict[str, Callable[[Path], bytes]]
    args: Callable[[Path], list[str]]
    status: int
    stderr: str


def _secret_ts(tmp: Path) -> bytes:
    wav = tmp / "private" / "secret.wav"
    wav.parent.mkdir(exist_ok=True)
    sf.write(wav, np.zeros(48000, np.int16), 16000, subtype="PCM_16")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-c:a", "mp2", str(wav.with_suffix(".ts"))],
        check=True,
    )
    return wav.with_suffix(".ts").read_bytes()


CLI_TABLE: dict[str, CliCase] = {
    "embed: ffconcat of a neighbouring file": CliCase(
        {"in/list.ffconcat": lambda tmp: concat_list("../private/secret.wav"), "private/x": _secret_ts},
        lambda tmp: ["embed", str(tmp / "in/list.ffconcat"), "-o", str(tmp / "out.npz")],
        1,
        NOT_AUDIO,
    ),
    "embed: HLS playlist named .m4a": CliCase(
        {"in/a.m4a": lambda tmp: hls_playlist("../private/secret.ts"), "private/x": _secret_ts},
        lambda tmp: ["embed", str(tmp / "in/a.m4a"), "-o", str(tmp / "out.npz")],
        1,
        NOT_AUDIO,
    ),
    "embed: float wav with NaN": CliCase(
        {"in/n.wav": lambda tmp: float_wav([0.1, np.nan])},
        lambda tmp: ["embed", str(tmp / "in/n.wav"), "-o", str(tmp / "out.npz")],
        1,
        "NaN or infinity",
    ),
    "embed: 0-bit wav": CliCase(
        {"in/z.wav": lambda tmp: zero_bit_wav()},
        lambda tmp: ["embed", str(tmp / "in/z.wav"), "-o", str(tmp / "out.npz")],
        1,
        "cannot decode",
    ),
    "extract: a playlist among the files": CliCase(
        {
            "in/good.wav": lambda tmp: clip(2.0),
            "in/list.m4a": lambda tmp: concat_list("../private/secret.wav"),
            "private/x": _secret_ts,
        },
        lambda tmp: ["extract", str(tmp / "in"), "-o", str(tmp / "out"), "--format", "npz", "--workers", "0"],
        2,
        "",
    ),
}


CLI_PEAK = 3 << 29  # torch, the model, oneDNN's copy of its fc weights and a batch: 0.65-1.05 GiB measured


# ``python -m vggish ARGS`` that writes its own peak (VmHWM) to $PEAK_FILE as it exits. A child's
# rusage would not do: until exec it shares the test process's memory, whose peak it reports.
PEAK_PROBE = """
import atexit, os, runpy, sys
def peak():
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["PEAK_FILE"], "w") as out:
        out.write(kib)
atexit.register(peak)
runpy.run_module("vggish", run_name="__main__", alter_sys=True)
"""


def run_cli(args: list[str], cwd: Path) -> tuple[int, str, int]:
    """Runs ``python -m vggish ARGS``; its exit status, its stderr and its own peak RSS (bytes)."""
    peak_file = cwd / "peak.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO), "VGGISH_BACKEND": "torch", "PEAK_FILE": str(peak_file)}
    command = [sys.executable, "-c", PEAK_PROBE, *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    return done.returncode, done.stderr, int(peak_file.read_text()) * 1024


@pytest.mark.parametrize("name", list(CLI_TABLE))
def test_bad_cli_input(name: str, tmp_path: Path, figures: list[str]) -> None:
    case = CLI_TABLE[name]
    for relative, make in case.files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make(tmp_path))
    status, stderr, peak = run_cli([*case.args(tmp_path), "--weights", "random"], tmp_path)
    figures.append(f"{name:48} exit {status}  peak {peak / MIB:6.0f} MiB")
    message = stderr.strip().splitlines()
    assert status == case.status, stderr[-2000:]
    assert peak <= CLI_PEAK
    if case.stderr:
        assert case.stderr in message[-1] and "secret" not in message[-1], message
        assert not (tmp_path / "out.npz").exists()
    if name.startswith("extract"):
        failures = [json.loads(line) for line in (tmp_path / "out/_failures.jsonl").read_text().splitlines()]
        assert [Path(f["path"]).name for f in failures] == ["list.m4a"], failures
        assert NOT_AUDIO in failures[0]["error"]
        assert [p.name for p in (tmp_path / "out").rglob("*.npz")] == ["good.npz"]
