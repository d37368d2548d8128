"""``/v1/stream`` against a real uvicorn server on loopback, with a real WebSocket client.

The streamed numbers equal ``POST /v1/embeddings`` (and a head's ``classify``) for the same audio,
whatever the rate, format, channels and message sizes; errors come as problem messages with
4000 + status close codes; limits, keys and origins are those of HTTP; and a client that sends
faster than the model runs is held back instead of buffered (in-process, with a gated model).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import httpx
import numpy as np
import pytest
from service_helpers import Server, encode, metric, running_app, signal_of, uvicorn_server
from starlette.websockets import WebSocketDisconnect

websockets = pytest.importorskip("websockets", reason="needs websockets (the serve extra)")
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import ClientConnection, connect  # noqa: E402

pytestmark = pytest.mark.slow  # a real server and WebSocket clients: 40 s in all

KEY = "stream-test-key"
HEAD = "tones"
# The batch path's own tolerance: float32 sums change with how examples share a batch, measured up
# to 2-3e-5 absolute (1.3-2.0e-6 of the embeddings' scale) for every plan, direct convolutions
# included
TOLERANCE = 3e-5
POLLS = 600  # x 0.05 s: bounded waits for a state, not timings


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Random weights and one head (trained on random clip embeddings: only its numbers matter)."""
    data = tmp_path_factory.mktemp("stream-data")
    with uvicorn_server(VGGISH_DATA_DIR=str(data)) as running:
        rng = np.random.default_rng(7)
        body = {
            "name": HEAD,
            "embeddings": rng.normal(0, 3, (6, 128)).tolist(),
            "labels": ["low", "low", "mid", "mid", "high", "high"],
        }
        httpx.post(running.base + "/v1/heads", json=body, timeout=60).raise_for_status()
        yield running


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with uvicorn_server(VGGISH_DATA_DIR=str(tmp_path_factory.mktemp("keyed")), VGGISH_API_KEYS=KEY) as s:
        yield s


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Small limits: 3 s per stream, 4 kB messages, 2 s of silence, a queue of 10 examples
    (a stream holds 2 batches of 4: a second one does not fit)."""
    with uvicorn_server(
        VGGISH_DATA_DIR=str(tmp_path_factory.mktemp("small")),
        VGGISH_MAX_INPUT_SECONDS="3",
        VGGISH_STREAM_MAX_MESSAGE_BYTES="4096",
        VGGISH_REQUEST_TIMEOUT_S="2",
        VGGISH_MAX_BATCH_EXAMPLES="4",
        VGGISH_MAX_QUEUE_EXAMPLES="10",
    ) as s:
        yield s


# --- helpers --------------------------------------------------------------------------------


def pcm(x: np.ndarray, fmt: str) -> bytes:
    """(samples, channels) float -> interleaved little-endian PCM."""
    if fmt == "s16le":
        return quantised(x).astype("<i2").tobytes()
    return x.astype("<f4").tobytes()


def quantised(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


def message_sizes(total: int, frame: int, rate: int, seed: int) -> Iterator[int]:
    """Random message sizes from 1 ms to 3 s of audio, in whole frames."""
    rng = np.random.default_rng(seed)
    sent = 0
    while sent < total:
        size = frame * int(rng.integers(max(1, rate // 1000), 3 * rate + 1))
        yield min(size, total - sent)
        sent += size


def open_stream(base: str, **kwargs: Any) -> ClientConnection:
    return connect(base.replace("http://", "ws://") + "/v1/stream", max_queue=None, **kwargs)


def run_stream(
    base: str, start: dict[str, Any], data: bytes, sizes: Iterator[int], **kwargs: Any
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any], int]:
    """Streams ``data`` in messages of ``sizes`` bytes; the ready message, the embeddings, the end
    message and the close code."""
    with open_stream(base, **kwargs) as ws:
        ws.send(json.dumps(start))
        ready = json.loads(ws.recv())
        assert ready["type"] == "ready", ready
        offset = 0
        for size in sizes:
            ws.send(data[offset : offset + size])
            offset += size
        assert offset == len(data)
        ws.send(json.dumps({"type": "end"}))
        messages = [json.loads(m) for m in ws]  # until the server closes
        assert ws.close_code is not None
        code = ws.close_code
    assert messages and messages[-1]["type"] == "end", messages[-1:]
    return ready, messages[:-1], messages[-1], code


def drain(ws: ClientConnection) -> Iterator[dict[str, Any]]:
    """The server's messages until it closes, whatever the close code."""
    with suppress(ConnectionClosed):
        while True:
            yield json.loads(ws.recv())


def refused(base: str, *sends: str | bytes, **kwargs: Any) -> tuple[dict[str, Any], int]:
    """Sends messages (ignoring a refusal while sending); the server's error message and close code."""
    with open_stream(base, **kwargs) as ws:
        with suppress(ConnectionClosed):
            for message in sends:
                ws.send(message)
        received = list(drain(ws))
        code = ws.close_code
    errors = [m for m in received if m["type"] == "error"]
    assert len(errors) == 1 and received[-1] is errors[0], received
    error = errors[0]
    assert error["problem_type"].startswith("urn:vggish:problem:") and error["title"] and error["detail"]
    assert code is not None
    return error, code


def start_message(rate: int = 16000, fmt: str = "f32le", channels: int = 1, **extra: Any) -> str:
    return json.dumps({"sample_rate": rate, "format": fmt, "channels": channels, **extra})


def api_embeddings(base: str, x: np.ndarray, rate: int, fmt: str, **params: Any) -> dict[str, Any]:
    """The batch path's answer for the same samples: a 16-bit WAV for s16le (decoded as int16 /
    32768, as the stream reads s16le), the float32 samples as JSON numbers for f32le."""
    if fmt == "s16le":
        answer = httpx.post(
            base + "/v1/embeddings",
            params=params,
            content=encode(quantised(x), rate),
            headers={"content-type": "audio/wav"},
            timeout=120,
        )
    else:
        samples = x.astype(np.float32).astype(np.float64)
        rows = samples[:, 0].tolist() if samples.shape[1] == 1 else samples.tolist()
        body = {"inputs": [{"samples": rows, "sample_rate": rate}]}
        answer = httpx.post(base + "/v1/embeddings", params=params, json=body, timeout=120)
    answer.raise_for_status()
    data: dict[str, Any] = answer.json()["data"][0]
    return data


# --- the numbers equal the batch path's --------------------------------------------------------


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
@pytest.mark.parametrize("fmt", ["s16le", "f32le"])
@pytest.mark.parametrize("channels", [1, 2])
def test_streamed_embeddings_equal_the_batch_path(server: Server, rate: int, fmt: str, channels: int) -> None:
    x = signal_of(4.3, rate, channels, seed=rate + channels)
    data = pcm(x, fmt)
    frame = channels * (2 if fmt == "s16le" else 4)
    sizes = message_sizes(len(data), frame, rate, seed=rate * channels)
    start = {"sample_rate": rate, "format": fmt, "channels": channels}
    ready, got, end, code = run_stream(server.base, start, data, sizes)

    api = api_embeddings(server.base, x, rate, fmt)
    assert (ready["weights"], ready["example_seconds"]) == ("random", 0.975)
    assert len(got) == len(api["embeddings"]) == end["examples"] == 4
    assert [m["index"] for m in got] == list(range(4))
    assert [[m["start"], m["end"]] for m in got] == api["timestamps"]
    np.testing.assert_allclose([m["embedding"] for m in got], api["embeddings"], rtol=0, atol=TOLERANCE)
    assert end["seconds"] == pytest.approx(api["duration"]) and code == 1000


def test_hop_pad_and_the_fast_resampler_as_in_the_batch_path(server: Server) -> None:
    x = signal_of(3.0, 44100, 1, seed=3)
    options = {"hop": 0.5, "resampler": "fast"}
    start = {"sample_rate": 44100, "format": "f32le", **options}
    data = pcm(x, "f32le")
    _, got, end, _ = run_stream(server.base, start, data, message_sizes(len(data), 4, 44100, 1))
    api = api_embeddings(server.base, x, 44100, "f32le", **options)
    assert len(got) == len(api["embeddings"]) == end["examples"] == 5
    assert [[m["start"], m["end"]] for m in got] == api["timestamps"]
    np.testing.assert_allclose([m["embedding"] for m in got], api["embeddings"], rtol=0, atol=TOLERANCE)

    short = signal_of(0.4, 22050, 2, seed=4)  # shorter than one window: pad makes one example
    start = {"sample_rate": 22050, "format": "s16le", "channels": 2, "pad": True}
    _, got, end, _ = run_stream(server.base, start, pcm(short, "s16le"), iter([len(pcm(short, "s16le"))]))
    api = api_embeddings(server.base, short, 22050, "s16le", pad="true")
    assert len(got) == end["examples"] == len(api["embeddings"]) == 1
    np.testing.assert_allclose(got[0]["embedding"], api["embeddings"][0], rtol=0, atol=TOLERANCE)


def test_labels_and_8_bit_features_equal_classify_and_postprocess(server: Server) -> None:
    x = signal_of(5.0, 48000, 2, seed=11)
    data = pcm(x, "s16le")
    start = {"sample_rate": 48000, "format": "s16le", "channels": 2, "head": HEAD, "postprocess": True}
    _, got, _, _ = run_stream(server.base, start, data, message_sizes(len(data), 4, 48000, 5))

    api = api_embeddings(server.base, x, 48000, "s16le", postprocess="true")
    assert [m["postprocessed"] for m in got] == api["postprocessed"]
    classified = httpx.post(
        f"{server.base}/v1/heads/{HEAD}/classify",
        content=encode(quantised(x), 48000),
        headers={"content-type": "audio/wav"},
        timeout=120,
    ).json()["data"][0]["frames"]
    assert len(got) == len(classified) == 5
    for message, frame in zip(got, classified, strict=True):
        assert [lab["label"] for lab in message["labels"]] == [lab["label"] for lab in frame["labels"]]
        np.testing.assert_allclose(
            [lab["score"] for lab in message["labels"]], [lab["score"] for lab in frame["labels"]], atol=1e-6
        )
        assert sum(lab["score"] for lab in message["labels"]) == pytest.approx(1, abs=1e-5)


def test_labels_are_the_best_top_k_and_a_head_of_another_resampler_only_warns(server: Server) -> None:
    """A head trained (from embeddings) with another hop, pad and resampler than the stream's:
    labels come, bounded to ``top_k``, and the ready message warns of the resampler only."""
    rng = np.random.default_rng(8)
    classes = [f"c{i}" for i in range(8)]
    body = {
        "name": "eight",
        "embeddings": rng.normal(0, 3, (16, 128)).tolist(),
        "labels": classes * 2,
        "features": {"weights_sha256": "random", "hop_seconds": 0.5, "pad": True, "resampler": "fast"},
    }
    httpx.post(server.base + "/v1/heads", json=body, timeout=60).raise_for_status()
    x = signal_of(3.0, 16000, 1, seed=12)
    data = pcm(x, "s16le")
    for top_k, want in ((None, 5), (2, 2), (100, 8)):  # 5 unless asked; never more than the classes
        start = {"sample_rate": 16000, "format": "s16le", "head": "eight"}
        if top_k is not None:
            start["top_k"] = top_k
        ready, got, _, code = run_stream(server.base, start, data, message_sizes(len(data), 2, 16000, 3))
        assert code == 1000 and len(got) == 3
        assert ["resampler" in w for w in ready["warnings"]] == [True], ready
        for message in got:
            scores = [lab["score"] for lab in message["labels"]]
            assert len(scores) == want and scores == sorted(scores, reverse=True)
            assert {lab["label"] for lab in message["labels"]} <= set(classes)


def test_each_embedding_comes_while_the_stream_goes_on(server: Server) -> None:
    """The first window's embedding arrives before any more audio is sent, the next after more."""
    x = pcm(signal_of(3.0, 16000, 1), "s16le")
    second = 2 * 16000
    with open_stream(server.base) as ws:
        ws.send(start_message(16000, "s16le"))
        assert json.loads(ws.recv())["type"] == "ready"
        ws.send(x[: second + 2000])  # 1.06 s: the first window is complete, the second is not
        first = json.loads(ws.recv())
        assert (first["type"], first["index"], first["end"]) == ("embedding", 0, 0.975)
        ws.send(x[second + 2000 :])  # 3 s in all: the second window completes
        assert json.loads(ws.recv())["index"] == 1
        ws.send(json.dumps({"type": "end"}))
        rest = [json.loads(m) for m in ws]
    assert [m["type"] for m in rest] == ["embedding", "end"] and rest[-1]["examples"] == 3
    assert ws.close_code == 1000


def test_messages_may_split_frames(server: Server) -> None:
    """Messages of odd byte counts (a frame across two messages) give the same numbers."""
    x = signal_of(2.0, 16000, 2, seed=21)
    data = pcm(x, "f32le")
    rng = np.random.default_rng(0)
    sizes = [int(s) for s in rng.integers(1, 20000, size=len(data) // 20000)]
    sizes.append(len(data) - sum(sizes))
    assert sizes[-1] > 0 and any(s % 8 for s in sizes)
    start = {"sample_rate": 16000, "format": "f32le", "channels": 2}
    _, got, _, code = run_stream(server.base, start, data, iter(sizes))
    api = api_embeddings(server.base, x, 16000, "f32le")
    np.testing.assert_allclose([m["embedding"] for m in got], api["embeddings"], rtol=0, atol=TOLERANCE)
    assert code == 1000


def test_an_empty_stream_ends_cleanly(server: Server) -> None:
    _, got, end, code = run_stream(server.base, {"sample_rate": 8000, "format": "s16le"}, b"", iter([]))
    assert got == [] and end == {"type": "end", "examples": 0, "seconds": 0.0} and code == 1000


# --- errors: problem messages and close codes --------------------------------------------------


@pytest.mark.parametrize(
    ("sends", "status", "words"),
    [
        ([b"\x00\x01"], 422, "first message must be a JSON object"),
        (["not json"], 422, "first message must be a JSON object"),
        ([start_message(fmt="u8")], 422, "format"),
        ([start_message(rate=44100.5)], 422, "sample_rate"),
        ([start_message(rate=100)], 422, "sample_rate"),
        ([start_message(channels=0)], 422, "channels"),
        ([start_message(hop=0.005)], 422, "hop"),
        ([start_message(sample_rte=16000)], 422, "sample_rte"),
        ([start_message(head="no-such-head")], 404, "no-such-head"),
        ([start_message(), '{"type": "pause"}'], 422, "binary PCM"),
        ([start_message(fmt="f32le"), np.array([0.1, np.nan], "<f4").tobytes()], 422, "NaN"),
        ([start_message(channels=2), b"\x00" * 6, '{"type": "end"}'], 422, "inside a frame"),
    ],
)
def test_errors_are_problems_closed_with_4000_plus_status(
    server: Server, sends: list[str | bytes], status: int, words: str
) -> None:
    error, code = refused(server.base, *sends)
    assert error["status"] == status and code == 4000 + status
    assert words in error["detail"]


def test_pages_of_other_origins_may_not_stream(server: Server) -> None:
    error, code = refused(server.base, start_message(), origin="http://elsewhere.example")
    assert (error["status"], code) == (403, 4403) and "VGGISH_CORS_ORIGINS" in error["detail"]
    host = server.base.removeprefix("http://")
    with open_stream(server.base, origin=f"http://{host}") as ws:  # the page's own origin
        ws.send(start_message())
        assert json.loads(ws.recv())["type"] == "ready"


def test_keys_in_the_first_message_or_on_the_handshake(keyed: Server) -> None:
    error, code = refused(keyed.base, start_message())
    assert (error["status"], code) == (401, 4401) and "api_key" in error["detail"]
    error, code = refused(keyed.base, start_message(api_key="wrong"))
    assert (error["status"], code, error["detail"]) == (401, 4401, "the API key is not valid")
    wrong_header = {"additional_headers": {"Authorization": "Bearer wrong"}}
    assert refused(keyed.base, start_message(), **wrong_header)[1] == 4401
    assert refused(keyed.base, b"\x00\x00")[1] == 4401  # no key: refused before the message is read

    x = signal_of(1.0, 16000, 1)
    for start, kwargs in [
        ({"api_key": KEY}, {}),
        ({}, {"additional_headers": {"Authorization": f"Bearer {KEY}"}}),
    ]:
        first = {"sample_rate": 16000, "format": "f32le", **start}
        _, got, _, code = run_stream(keyed.base, first, pcm(x, "f32le"), iter([64000]), **kwargs)
        assert len(got) == 1 and code == 1000


def test_limits_of_a_stream(small: Server) -> None:
    error, code = refused(small.base, start_message(), b"\x00" * 4097)
    assert (error["status"], code, error["limit"]) == (413, 4413, "stream_max_message_bytes")

    four_seconds = pcm(signal_of(4.0, 1000, 1), "f32le")  # 16 kB at 1 kHz, in 4 kB messages
    sends = [four_seconds[i : i + 4096] for i in range(0, len(four_seconds), 4096)]
    error, code = refused(small.base, start_message(1000), *sends)
    assert (error["status"], code, error["limit"]) == (413, 4413, "max_input_seconds")

    error, code = refused(small.base, start_message())  # then silence past request_timeout_s
    assert (error["status"], code) == (408, 4408) and "request_timeout_s" in error["detail"]


def test_a_stream_that_trickles_is_closed_after_its_longest_time(small: Server) -> None:
    """3 s of audio at most, 2 s of silence at most: a stream open for 5 s is closed, even if a
    message came every second."""
    tick = pcm(signal_of(0.05, 16000, 1), "f32le")  # 3.2 kB
    with open_stream(small.base) as ws:
        ws.send(start_message())
        assert json.loads(ws.recv())["type"] == "ready"
        with suppress(ConnectionClosed):
            for _ in range(30):
                ws.send(tick)
                time.sleep(1)
        error = list(drain(ws))[-1]
    assert (error["status"], ws.close_code) == (408, 4408)
    assert "max_input_seconds + request_timeout_s" in error["detail"]


def test_a_full_queue_refuses_a_stream_with_4429_until_one_ends(small: Server) -> None:
    with open_stream(small.base) as first:
        first.send(start_message())
        assert json.loads(first.recv())["type"] == "ready"
        error, code = refused(small.base, start_message())
        assert (error["status"], code) == (429, 4429) and "queue is full" in error["detail"]
    for _ in range(POLLS):  # the first stream's share comes back once the server sees it gone
        with open_stream(small.base) as again:
            again.send(start_message())
            if json.loads(again.recv())["type"] == "ready":
                return
        time.sleep(0.05)
    raise AssertionError("the queue never had room again")


# --- backpressure (in-process: the model is held by a gate) ------------------------------------


def test_a_client_faster_than_the_model_is_held_back_not_buffered() -> None:
    seconds = 40  # 40 messages of 1 s; the stream may have 2 batches of 2 examples on their way
    x = signal_of(seconds, 16000, 1, seed=2)
    data = pcm(x, "f32le")
    # held back by the model only: it may run ahead of real time by all of its audio
    with running_app(max_batch_examples=2, stream_burst_seconds=seconds) as client:
        service = client.app.state.service  # type: ignore[attr-defined]
        gate = threading.Event()
        model, backlog = service.batcher.infer, 4

        def gated(examples: Any) -> np.ndarray:
            gate.wait(60)
            out: np.ndarray = model(examples)
            return out

        service.batcher.infer = gated
        try:
            with client.websocket_connect("/v1/stream") as ws:
                ws.send_text(start_message(16000, "f32le"))
                assert ws.receive_json()["type"] == "ready"
                for k in range(seconds):
                    ws.send_bytes(data[k * 64000 : (k + 1) * 64000])
                waits = 0.0
                for _ in range(POLLS):
                    waits = metric(client.get("/metrics").text, "vggish_stream_backpressure_total")
                    if waits:
                        break
                    time.sleep(0.05)
                assert waits >= 1  # the stream stopped reading its socket
                depth = metric(client.get("/metrics").text, "vggish_queue_examples")
                assert depth <= backlog and service.batcher.pending_examples <= backlog
                gate.set()
                ws.send_text(json.dumps({"type": "end"}))
                messages = []
                while not messages or messages[-1]["type"] != "end":
                    messages.append(ws.receive_json())
        finally:
            gate.set()
        samples = x[:, 0].astype(np.float32).tolist()
        api = client.post("/v1/embeddings", json={"inputs": [{"samples": samples, "sample_rate": 16000}]})
    expected = api.json()["data"][0]["embeddings"]
    assert messages[-1]["examples"] == len(messages) - 1 == len(expected) == 41
    got = [m["embedding"] for m in messages[:-1]]
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def test_the_stream_is_not_in_the_http_schema_but_the_features_are(server: Server) -> None:
    schema = httpx.get(server.base + "/openapi.json").json()
    assert "/v1/stream" not in schema["paths"] and "/v1/features" in schema["paths"]


def test_a_model_failure_is_a_server_fault_closed_with_1011() -> None:
    with running_app() as client:
        service = client.app.state.service  # type: ignore[attr-defined]

        def broken(examples: Any) -> np.ndarray:
            raise RuntimeError("the model fell over")

        service.batcher.infer = broken
        with client.websocket_connect("/v1/stream") as ws:
            ws.send_text(start_message(16000, "f32le"))
            assert ws.receive_json()["type"] == "ready"
            ws.send_bytes(pcm(signal_of(3.0, 16000, 1), "f32le"))
            error = ws.receive_json()
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
    assert (error["type"], error["status"], closed.value.code) == ("error", 500, 1011)
    assert "fell over" not in error["detail"] and "log" in error["detail"]  # the log has the details
