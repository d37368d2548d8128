"""vggish.client against a real uvicorn server on loopback (random weights), numbers compared with
the library's; retry mechanics against a scripted stand-in HTTP server."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import vggish
from tests.app.service_helpers import clip, signal_of, uvicorn_server
from vggish import heads
from vggish.client import (
    AsyncClient,
    BadRequestError,
    Client,
    ClientTimeoutError,
    ConflictError,
    InvalidRequestError,
    LimitExceededError,
    NotFoundError,
    OverloadedError,
    ProblemError,
    RemoteEmbeddingResult,
    TransportError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from vggish.client import core as client_core
from vggish.client.core import Request, RetryPolicy
from vggish.client.errors import retry_after_seconds
from vggish.client.inputs import FilePart, SamplesPart, prepare

pytestmark = pytest.mark.slow  # starts a uvicorn process

# float32 sums change with how examples share a batch: measured up to 2-3e-5 absolute (1.3-2.0e-6
# of the embeddings' scale) for every plan, direct convolutions included
ATOL = 3e-5
KEY = "client-test-key"
MAX_INPUTS = 4
MAX_UPLOAD_BYTES = 3_000_000
PROBLEM = "urn:vggish:problem:"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "VGGISH_API_KEYS": KEY,
        "VGGISH_MAX_INPUTS": str(MAX_INPUTS),
        "VGGISH_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "VGGISH_DATA_DIR": str(tmp_path_factory.mktemp("heads")),
    }
    with uvicorn_server(**env) as running:
        yield running.base


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[Client]:
    with Client(server, api_key=KEY) as c:
        yield c


@pytest.fixture(scope="module")
def model() -> vggish.VGGish:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return vggish.load_model("random", backend="torch")


def assert_same(result: vggish.EmbeddingResult, expected: vggish.EmbeddingResult) -> None:
    """The client's result equals the library's: embeddings to 1e-5 of their scale (batching changes
    the summation order), uint8 to one step, the rest exactly."""
    assert isinstance(result, vggish.EmbeddingResult)
    assert result.embeddings.dtype == np.float32
    scale = max(1.0, float(np.abs(expected.embeddings).max(initial=0)))
    np.testing.assert_allclose(result.embeddings, expected.embeddings, atol=ATOL * scale, rtol=0)
    np.testing.assert_array_equal(result.timestamps, expected.timestamps)
    assert expected.postprocessed is not None and result.postprocessed is not None
    assert result.postprocessed.dtype == np.uint8
    steps = np.abs(result.postprocessed.astype(int) - expected.postprocessed.astype(int))
    assert steps.max(initial=0) <= 1
    assert (result.sample_rate, result.channels, result.num_samples) == (
        expected.sample_rate,
        expected.channels,
        expected.num_samples,
    )


# --- embeddings against the library ---------------------------------------------------------------


def test_files_bytes_and_file_objects_give_the_librarys_numbers(
    client: Client, model: vggish.VGGish, tmp_path: Path
) -> None:
    wav, flac = clip(2.5, 44100, channels=2), clip(3.1, 22050, fmt="FLAC", seed=1)
    path = tmp_path / "dog.wav"
    path.write_bytes(wav)
    one = client.embed(path)
    assert isinstance(one, RemoteEmbeddingResult) and one.pooled is None
    assert_same(one, model.embed_file(path))
    several = client.embed([str(path), flac, io.BytesIO(wav)])
    assert len(several) == 3
    assert_same(several[0], model.embed_file(path))
    assert_same(several[1], model.embed_file(flac))
    assert_same(several[2], model.embed_file(wav))
    assert several[1].embeddings.shape == (3, 128)


def test_arrays_give_the_librarys_numbers(client: Client, model: vggish.VGGish) -> None:
    x = signal_of(1.3, 22050, channels=2)  # float64, off the 16-bit grid: sent as JSON samples
    pcm = np.round(x * 20000).astype(np.int16)  # sent as a 16-bit WAV file
    grid = (pcm[:, 0] / 32768).astype(np.float32)  # floats k / 32768: a 16-bit WAV file too
    arrays = [(x, 22050), (x[:, 0].astype(np.float32), 22050), (pcm, 22050), (grid, 22050)]
    results = client.embed(arrays)
    for result, (array, rate) in zip(results, arrays, strict=True):
        assert_same(result, model.embed(array, rate))


def test_arrays_travel_exactly(client: Client) -> None:
    """int16 and on-grid floats go as 16-bit WAV, other floats as JSON samples (see inputs.py)."""
    x = signal_of(1.0, 16000)[:, 0]
    pcm = (x * 32768).astype(np.int16)
    as_wav, on_grid, as_json = prepare([(pcm, 16000), (pcm / 32768, 16000), (x, 16000)])
    assert isinstance(as_wav, FilePart) and isinstance(on_grid, FilePart)
    assert as_wav.data == on_grid.data and len(as_wav.data) < 2 * pcm.size + 100
    assert isinstance(as_json, SamplesPart)
    np.testing.assert_array_equal(as_json.samples, x)


def test_options_reach_the_server(client: Client, model: vggish.VGGish) -> None:
    wav, short = clip(2.0, 16000), clip(0.5, 48000, seed=2)
    result = client.embed(wav, hop=0.5, resampler="fast")
    assert_same(result, model.embed_file(wav, hop_seconds=0.5, resampler="fast"))
    padded = client.embed(short, pad=True)
    assert padded.embeddings.shape == (1, 128)
    assert_same(padded, model.embed_file(short, pad=True))
    assert client.embed(short).embeddings.shape == (0, 128)
    plain = client.embed(wav, postprocess=False)
    assert plain.postprocessed is None
    np.testing.assert_allclose(plain.embeddings, model.embed_file(wav).embeddings, atol=ATOL, rtol=0)


def test_pooling_mean(client: Client, model: vggish.VGGish) -> None:
    wav, short = clip(3.0, 16000, seed=3), clip(0.5, 16000)
    pooled, empty = client.embed([wav, short], pooling="mean")
    expected = model.embed_file(wav).embeddings.mean(axis=0, dtype=np.float64)
    assert pooled.pooled is not None and pooled.pooled.dtype == np.float32
    np.testing.assert_allclose(pooled.pooled, expected, atol=ATOL, rtol=0)
    assert empty.pooled is None  # no example, so no mean


def test_postprocess_follows_the_servers_weights(client: Client) -> None:
    (card,) = client.models()
    assert card.postprocessing and card.weights["sha256"] == "random"
    assert card.limits["max_inputs"] == MAX_INPUTS and card.embedding_size == 128
    assert client.embed(clip(1.0)).postprocessed is not None  # postprocess=None: the weights have PCA
    assert client.ready()


# --- classifier heads ---------------------------------------------------------------------------


def test_heads_round_trip(client: Client, model: vggish.VGGish) -> None:
    clips = {
        "low": [clip(1.5, seed=i) for i in range(3)],
        "high": [clip(1.5, 44100, seed=9 + i) for i in range(3)],
    }
    record = client.train_head("kinds", clips, kind="linear")
    assert (record.name, record.kind, record.version, record.num_examples) == ("kinds", "linear", 1, 6)
    assert set(record.classes) == {"low", "high"} and record.metrics is not None
    assert client.get_head("kinds") == record
    assert [r.name for r in client.list_heads()] == ["kinds"]

    probe = clip(2.5, seed=20)
    labelled = client.classify("kinds", probe)
    head = heads.from_safetensors(client.export_head("kinds"))
    embeddings = model.embed_file(probe).embeddings
    clip_scores = head.scores(embeddings.mean(axis=0, dtype=np.float64)[None].astype(np.float32))[0]
    by_label = {s.label: s.score for s in labelled.labels}
    np.testing.assert_allclose([by_label[c] for c in head.classes], clip_scores, atol=1e-4)
    assert len(labelled.frames) == embeddings.shape[0]
    best, _ = client.classify("kinds", [probe, (signal_of(1.0, 16000)[:, 0], 16000)], top_k=1)
    assert len(best.labels) == 1 and best.labels[0] == labelled.labels[0]

    imported = client.import_head("copy", client.export_head("kinds"))
    assert (imported.name, imported.classes, imported.version) == ("copy", record.classes, 1)
    assert client.import_head("copy", io.BytesIO(client.export_head("kinds"))).version == 2
    client.delete_head("copy")
    with pytest.raises(NotFoundError):
        client.get_head("copy")


def test_heads_know_their_features(client: Client, server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clips = {
        "low": [clip(1.5, seed=i) for i in range(2)],
        "high": [clip(0.5, 44100, seed=9 + i) for i in range(2)],
    }
    record = client.train_head("featured", clips)  # short clips are padded, as on the server
    assert record.features == heads.FeatureSpec("random", 0.96, True, "reference")
    assert client.get_head("featured").features == record.features
    other_hop = client.classify("featured", clip(1.5), hop=0.48, pad=False)  # a head is bound to weights
    assert len(other_hop.labels) == 2 and len(other_hop.frames) == 2  # 1.5 s: examples at 0 and 0.48 s
    data = client.export_head("featured")
    assert client.import_head("featured-copy", data).features == record.features
    other = dataclasses.replace(heads.from_safetensors(data), features=heads.FeatureSpec("ab" * 32))
    with pytest.raises(ConflictError) as refused:
        client.import_head("featured-other", heads.to_safetensors(other))
    assert refused.value.type == PROBLEM + "weights-mismatch" and "weights abababababab" in str(refused.value)
    assert client.import_head("featured-other", heads.to_safetensors(other), force=True).version == 1
    page = httpx.get(server + "/v1/heads", params={"limit": 100}, headers={"authorization": f"Bearer {KEY}"})
    names = [h["name"] for h in page.json()["data"]]
    monkeypatch.setattr(client_core, "HEADS_PAGE", 1)  # the client follows the server's pages
    assert [r.name for r in client.list_heads()] == names and len(names) >= 3
    for name in ("featured", "featured-copy", "featured-other"):
        client.delete_head(name)


def test_heads_from_embeddings(client: Client) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 128)) + np.repeat(np.eye(2, 128) * 4, 3, axis=0)
    labels = ["a"] * 3 + ["b"] * 3
    record = client.train_head_from_embeddings("from-json", x, labels, kind="mlp")
    assert (record.kind, record.classes, record.version) == ("mlp", ("a", "b"), 1)
    with pytest.raises(ConflictError) as taken:
        client.train_head_from_embeddings("from-json", x, labels)
    assert taken.value.status == 409 and taken.value.type == PROBLEM + "head-exists"
    assert client.train_head_from_embeddings("from-json", x, labels, replace=True).version == 2
    both = client.train_head("from-json", ([clip(1.2), clip(1.2, seed=5)], ["x", "y"]), replace=True)
    assert both.version == 3 and both.classes == ("x", "y")
    client.delete_head("from-json")


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "wrong"])
def test_missing_or_wrong_key_is_unauthorized(server: str, key: str | None) -> None:
    with Client(server, api_key=key) as anonymous:
        with pytest.raises(UnauthorizedError) as error:
            anonymous.embed(clip(1.0))
        assert anonymous.ready()  # health stays open
    e = error.value
    assert (e.status, e.type) == (401, PROBLEM + "unauthorized")
    assert e.detail and e.request_id and e.request_id in str(e)


def test_typed_errors(client: Client) -> None:
    cases: list[tuple[Any, type[ProblemError], int, str]] = [
        (lambda: client.get_head("absent"), NotFoundError, 404, "head-not-found"),
        (lambda: client.embed([clip(1.0)] * (MAX_INPUTS + 1)), LimitExceededError, 413, "limit-exceeded"),
        (lambda: client.embed(b"this is not audio"), UnsupportedMediaTypeError, 415, "undecodable-audio"),
        (lambda: client.embed(clip(1.0), hop=0.015), InvalidRequestError, 422, "invalid-parameter"),
        (lambda: client.embed(b""), BadRequestError, 400, "missing-audio"),
    ]
    for call, kind, status, slug in cases:
        with pytest.raises(kind) as error:
            call()
        e = error.value
        assert (e.status, e.type, e.slug) == (status, PROBLEM + slug, slug)
        assert e.title and e.detail and e.request_id
    with pytest.raises(LimitExceededError) as big:
        client.embed(clip(100.0))  # 3.2 MB of 16-bit WAV
    assert big.value.limit == "max_upload_bytes"
    with pytest.raises(InvalidRequestError) as bad_hop:
        client.embed(clip(1.0), hop=0.015)
    assert [e["field"] for e in bad_hop.value.errors] == ["query.hop"]


def test_bad_arrays_fail_as_in_the_library(client: Client, model: vggish.VGGish) -> None:
    bad = np.full(16000, np.nan)
    with pytest.raises(ValueError, match="NaN") as expected:
        model.embed(bad, 16000)
    with pytest.raises(ValueError, match="NaN") as error:
        client.embed((bad, 16000))
    assert str(error.value) == str(expected.value)
    with pytest.raises(TypeError, match="sample rate"):
        client.embed(np.zeros(16000))  # type: ignore[call-overload]


def test_timeouts_and_unreachable_servers(stand_in: StandIn) -> None:
    stand_in.script = [Hang()]
    with Client(stand_in.base, timeout=0.2) as slow, pytest.raises(ClientTimeoutError):
        slow.models()
    closed = f"http://127.0.0.1:{_closed_port()}"
    with Client(closed, retries=0) as nowhere, pytest.raises(TransportError, match="ConnectError"):
        nowhere.models()


# --- retries, against a scripted stand-in server ---------------------------------------------


@dataclass
class Hang:
    """An answer that never comes (until the stand-in stops)."""


@dataclass
class StandIn:
    """A loopback HTTP server answering from ``script``, recording (method, path, body) it receives."""

    base: str
    script: list[tuple[int, dict[str, str], bytes] | Hang] = field(default_factory=list)
    seen: list[tuple[str, str, bytes]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    with _stand_in() as s:
        yield s


@contextmanager
def _stand_in() -> Iterator[StandIn]:
    state = StandIn("")

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            state.seen.append((self.command, self.path, body))
            step = state.script.pop(0) if state.script else (500, {}, b"script exhausted")
            if isinstance(step, Hang):
                state.stop.wait()
                return
            status, headers, content = step
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    for verb in ("GET", "POST", "PUT", "DELETE"):
        setattr(Handler, f"do_{verb}", Handler.answer)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        state.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _closed_port() -> int:
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as s:
        return int(s.server_address[1])  # closed when the block ends


def problem(status: int, slug: str, retry_after: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"content-type": "application/problem+json", "x-request-id": f"rid-{status}"}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    body = {"type": PROBLEM + slug, "title": slug, "status": status, "detail": f"{slug} detail"}
    return status, headers, json.dumps(body).encode()


def ok(body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return 200, {"content-type": "application/json"}, json.dumps(body).encode()


MODELS: dict[str, Any] = {
    "object": "list",
    "data": [
        {
            "id": "vggish",
            "weights": {"sha256": "random"},
            "parameters": 1,
            "embedding_size": 128,
            "sample_rate": 16000,
            "postprocessing": False,
            "device": "cpu",
            "backend": "torch",
            "decoders": ["soundfile"],
            "limits": {"max_inputs": 32},
        }
    ],
}
NO_EXAMPLES: dict[str, Any] = {
    "data": [
        {
            "index": 0,
            "name": None,
            "sample_rate": 16000,
            "channels": 1,
            "duration": 0.5,
            "timestamps": [],
            "embeddings": [],
        }
    ]
}


def test_429_and_503_are_retried_as_retry_after_says(stand_in: StandIn) -> None:
    past = format_datetime(datetime.now(timezone.utc) - timedelta(seconds=30), usegmt=True)
    stand_in.script = [problem(429, "queue-full", "0"), problem(503, "not-ready", past), ok(MODELS)]
    with Client(stand_in.base, retries=2) as c:
        assert c.models()[0].id == "vggish"
    assert [(m, p) for m, p, _ in stand_in.seen] == [("GET", "/v1/models")] * 3


def test_a_retried_body_is_sent_again_whole(stand_in: StandIn) -> None:
    stand_in.script = [problem(429, "queue-full", "0"), ok(NO_EXAMPLES)]
    with Client(stand_in.base) as c:
        result = c.embed(clip(0.5), postprocess=False)
    assert result.embeddings.shape == (0, 128) and result.num_samples == 8000
    (_, _, first), (_, _, again) = stand_in.seen
    assert first == again and len(first) > 16000


def test_retries_are_bounded(stand_in: StandIn) -> None:
    stand_in.script = [problem(503, "not-ready", "0")] * 3
    with Client(stand_in.base, retries=2) as c, pytest.raises(OverloadedError) as error:
        c.models()
    assert len(stand_in.seen) == 3
    assert (error.value.status, error.value.retry_after, error.value.request_id) == (503, 0.0, "rid-503")


def test_a_wait_longer_than_max_retry_wait_is_not_attempted(stand_in: StandIn) -> None:
    stand_in.script = [problem(429, "queue-full", "120")]
    with Client(stand_in.base, max_retry_wait=5) as c, pytest.raises(OverloadedError) as error:
        c.models()
    assert len(stand_in.seen) == 1 and error.value.retry_after == 120.0


def test_other_errors_are_not_retried(stand_in: StandIn) -> None:
    html = (502, {"content-type": "text/html"}, b"<html>Bad gateway</html>")
    stand_in.script = [problem(500, "internal"), html, (503, {}, b"")]
    with Client(stand_in.base) as c:
        with pytest.raises(ProblemError) as internal:
            c.models()
        with pytest.raises(ProblemError) as gateway:
            c.models()
        assert not c.ready()  # 503 is /readyz's answer, not a reason to retry
    assert (internal.value.status, internal.value.slug) == (500, "internal")
    assert (gateway.value.status, gateway.value.type) == (502, "about:blank")
    assert "Bad gateway" in gateway.value.detail
    assert len(stand_in.seen) == 3


def test_async_client_retries_alike(stand_in: StandIn) -> None:
    stand_in.script = [problem(429, "queue-full", "0"), ok(MODELS), problem(404, "head-not-found")]

    async def run() -> None:
        async with AsyncClient(stand_in.base) as c:
            assert (await c.models())[0].postprocessing is False
            with pytest.raises(NotFoundError):
                await c.get_head("x")

    asyncio.run(run())
    assert len(stand_in.seen) == 3


def test_retry_policy() -> None:
    policy = RetryPolicy(retries=3, max_wait=1.5, backoff=0.5)
    get, post = Request("GET", "/v1/models"), Request("POST", "/v1/embeddings")
    assert [policy.delay(get, httpx.ConnectError("refused"), n) for n in range(4)] == [0.5, 1.0, 1.5, None]
    assert policy.delay(post, httpx.ConnectError("refused"), 0) == 0.5  # nothing was sent
    assert policy.delay(get, httpx.RemoteProtocolError("closed"), 0) == 0.5
    assert policy.delay(post, httpx.RemoteProtocolError("closed"), 0) is None  # it may have run
    assert policy.delay(get, httpx.ReadTimeout("slow"), 0) is None
    busy = httpx.Response(429, headers={"retry-after": "1"})
    assert policy.delay(post, busy, 0) == 1.0
    assert policy.delay(post, httpx.Response(503), 1) == 1.0  # no Retry-After: backoff
    assert policy.delay(post, httpx.Response(500), 0) is None
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert retry_after_seconds("2.5") == 2.5
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


# --- AsyncClient against the real server ---------------------------------------------------------


def test_async_client_matches_the_client(server: str, client: Client) -> None:
    wav, x = clip(2.0, 32000, seed=7), signal_of(1.5, 16000)[:, 0]
    rng = np.random.default_rng(1)
    embeddings = rng.standard_normal((4, 128)) + np.repeat(np.eye(2, 128) * 4, 2, axis=0)
    client.train_head_from_embeddings("parity", embeddings, ["a", "a", "b", "b"], replace=True)
    expected = client.embed([wav, (x, 16000)], pooling="mean")
    expected_labels = client.classify("parity", wav, top_k=1)

    async def run() -> tuple[list[RemoteEmbeddingResult], Any, Any, bytes]:
        async with AsyncClient(server, api_key=KEY) as c:
            results = await c.embed([wav, (x, 16000)], pooling="mean")
            labels = await c.classify("parity", wav, top_k=1)
            record = await c.get_head("parity")
            exported = await c.export_head("parity")
            with pytest.raises(NotFoundError):
                await c.delete_head("absent")
            return results, labels, record, exported

    results, labels, record, exported = asyncio.run(run())
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_allclose(got.embeddings, want.embeddings, atol=ATOL, rtol=0)
        np.testing.assert_allclose(got.pooled, want.pooled, atol=ATOL, rtol=0)  # type: ignore[arg-type]
        assert (got.num_samples, got.channels, got.sample_rate) == (
            want.num_samples,
            want.channels,
            want.sample_rate,
        )
    assert [s.label for s in labels.labels] == [s.label for s in expected_labels.labels]
    assert record == client.get_head("parity")
    assert exported == client.export_head("parity")
