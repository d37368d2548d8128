"""POST /v1/embeddings through the real app (TestClient): every input form and option, and
parity with the library's ``embed_file`` / ``embed`` on the same input and options."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import clip, encode, signal_of

from vggish.network.runtime import Runtime

# float32 sums change with how examples share a batch: measured up to 2-3e-5 absolute (1.3-2.0e-6
# of the embeddings' scale) for every plan, direct convolutions included
ATOL = 3e-5


def embeddings_of(item: dict[str, Any]) -> np.ndarray:
    return np.asarray(item["embeddings"], dtype=np.float32).reshape(-1, 128)


def check_parity(item: dict[str, Any], expected: Any) -> None:
    """Compares one response item with an EmbeddingResult."""
    np.testing.assert_allclose(embeddings_of(item), expected.embeddings, atol=ATOL, rtol=0)
    np.testing.assert_allclose(item["timestamps"], expected.timestamps.reshape(-1, 2), atol=1e-12)
    assert item["sample_rate"] == expected.sample_rate
    assert item["channels"] == expected.channels
    assert item["duration"] == pytest.approx(expected.duration)


def test_multipart_stereo_44k_matches_embed_file(client: TestClient, random_model: Runtime) -> None:
    data = clip(2.5, 44100, channels=2, seed=1)
    r = client.post("/v1/embeddings", files={"file": ("dog.wav", data, "audio/wav")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "vggish" and body["weights"] == "random"
    item = body["data"][0]
    assert item["index"] == 0 and item["name"] == "dog.wav"
    assert "embedding" not in item and "warnings" not in item
    check_parity(item, random_model.embed_file(data, postprocess=False))
    assert body["usage"] == {"audio_seconds": pytest.approx(2.5), "examples": 2}


def test_multipart_several_files_keep_their_order(client: TestClient, random_model: Runtime) -> None:
    files = [
        ("file", ("a.wav", clip(1.5, seed=2), "audio/wav")),
        ("file", ("b.flac", clip(3.1, fmt="FLAC", seed=3), "audio/flac")),
    ]
    r = client.post("/v1/embeddings", files=files)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [d["name"] for d in data] == ["a.wav", "b.flac"] and [d["index"] for d in data] == [0, 1]
    for item, (_, (_, raw, _)) in zip(data, files, strict=True):
        check_parity(item, random_model.embed_file(raw, postprocess=False))


@pytest.mark.parametrize("content_type", ["audio/wav", "audio/x-flac", "application/octet-stream"])
def test_raw_body(client: TestClient, random_model: Runtime, content_type: str) -> None:
    data = clip(2.0, 22050, fmt="FLAC" if "flac" in content_type else "WAV", seed=4)
    headers = {"content-type": content_type, "x-filename": "raw.bin"}
    r = client.post("/v1/embeddings", content=data, headers=headers)
    assert r.status_code == 200, r.text
    item = r.json()["data"][0]
    assert item["name"] == "raw.bin"
    check_parity(item, random_model.embed_file(data, postprocess=False))


def test_json_base64_file(client: TestClient, random_model: Runtime) -> None:
    data = clip(2.0, 16000, channels=2, seed=5)
    inputs = [{"audio_base64": base64.b64encode(data).decode(), "name": "b64.wav"}]
    r = client.post("/v1/embeddings", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    check_parity(r.json()["data"][0], random_model.embed_file(data, postprocess=False))


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (8000, 2)])
def test_json_samples_match_embed(
    client: TestClient, random_model: Runtime, rate: int, channels: int
) -> None:
    x = signal_of(2.2, rate, channels, seed=6).astype(np.float32)
    samples = x[:, 0].tolist() if channels == 1 else x.tolist()
    r = client.post("/v1/embeddings", json={"inputs": [{"samples": samples, "sample_rate": rate}]})
    assert r.status_code == 200, r.text
    item = r.json()["data"][0]
    assert "name" not in item
    waveform = x[:, 0] if channels == 1 else x
    check_parity(item, random_model.embed(waveform.astype(np.float64), rate, postprocess=False))


def test_json_int16_samples_are_scaled_as_files_are(client: TestClient, random_model: Runtime) -> None:
    """``"dtype": "int16"`` takes the integers a 16-bit WAV holds: the same embeddings as that file."""
    x = (signal_of(2.2, 8000, 2, seed=14) * 32767).round().astype(np.int16)
    wav = encode(x, 8000)
    body = {"inputs": [{"samples": x.tolist(), "sample_rate": 8000, "dtype": "int16"}]}
    r = client.post("/v1/embeddings", json=body)
    assert r.status_code == 200, r.text
    check_parity(r.json()["data"][0], random_model.embed_file(wav, postprocess=False))
    floats = {"inputs": [{"samples": x.tolist(), "sample_rate": 8000}]}  # the same numbers as floats
    refused = client.post("/v1/embeddings", json=floats)
    assert refused.status_code == 422 and 'send "dtype": "int16"' in refused.json()["detail"]


def test_mixed_json_inputs(client: TestClient) -> None:
    inputs = [
        {"audio_base64": base64.b64encode(clip(1.2, seed=7)).decode(), "name": "one"},
        {"samples": signal_of(2.0, 16000)[:, 0].tolist(), "sample_rate": 16000, "name": "two"},
    ]
    r = client.post("/v1/embeddings", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    assert [len(d["embeddings"]) for d in r.json()["data"]] == [1, 2]


def test_postprocess_and_mean_pooling(client: TestClient, random_model: Runtime) -> None:
    data = clip(3.0, seed=8)
    r = client.post("/v1/embeddings?postprocess=true&pooling=mean", files={"file": ("x.wav", data)})
    assert r.status_code == 200, r.text
    item = r.json()["data"][0]
    expected = random_model.embed_file(data, postprocess=True)
    assert expected.postprocessed is not None
    post = np.asarray(item["postprocessed"])
    assert post.shape == (3, 128) and np.abs(post.astype(int) - expected.postprocessed).max() <= 1
    np.testing.assert_allclose(item["embedding"], expected.embeddings.mean(axis=0), atol=ATOL)


@pytest.mark.parametrize(
    "query",
    [
        {"hop": "0.48"},
        {"hop": "0.25", "resampler": "fast"},
        {"pad": "true"},
    ],
)
def test_options_match_library(client: TestClient, random_model: Runtime, query: dict[str, str]) -> None:
    data = clip(0.6 if "pad" in query else 2.5, 32000, seed=9)
    r = client.post("/v1/embeddings", params=query, files={"file": ("o.wav", data)})
    assert r.status_code == 200, r.text
    options: dict[str, Any] = {"hop_seconds": float(query.get("hop", 0.96)), "pad": "pad" in query}
    resampler: Any = query.get("resampler", "reference")
    expected = random_model.embed_file(data, postprocess=False, resampler=resampler, **options)
    assert expected.embeddings.shape[0] >= 1
    check_parity(r.json()["data"][0], expected)


def test_short_clip_without_pad_has_no_examples_and_a_warning(client: TestClient) -> None:
    files = [("file", ("s.wav", clip(0.5))), ("file", ("long.wav", clip(1.5)))]
    r = client.post("/v1/embeddings?pooling=mean", files=files)
    assert r.status_code == 200, r.text
    item, long = r.json()["data"]
    assert item["embeddings"] == [] and item["timestamps"] == [] and "embedding" not in item
    assert item["warnings"] == [
        "0.500 s is shorter than one example (0.975 s), so it has no embeddings; "
        "send pad=true to zero-pad it to one example"
    ]
    assert "warnings" not in long
    padded = client.post("/v1/embeddings?pad=true", files=files[:1]).json()["data"][0]
    assert len(padded["embeddings"]) == 1 and "warnings" not in padded


def test_postprocess_defaults_to_when_the_weights_carry_pca(
    client: TestClient, random_model: Runtime
) -> None:
    data = clip(2.0, seed=12)
    assert random_model.has_pca  # so the default is on, as in the library and the CLI
    default = client.post("/v1/embeddings", files={"file": ("p.wav", data)}).json()["data"][0]
    expected = random_model.embed_file(data)  # the library's default: postprocess=None
    assert expected.postprocessed is not None
    post = np.asarray(default["postprocessed"])
    assert post.shape == (2, 128) and np.abs(post.astype(int) - expected.postprocessed).max() <= 1
    off = client.post("/v1/embeddings?postprocess=false", files={"file": ("p.wav", data)}).json()
    assert "postprocessed" not in off["data"][0]
    schema = client.get("/openapi.json").json()["paths"]["/v1/embeddings"]["post"]["parameters"]
    postprocess = next(p for p in schema if p["name"] == "postprocess")
    assert not postprocess["required"] and "when the weights carry PCA" in postprocess["description"]


def test_base64_encoding_is_little_endian_float32(client: TestClient) -> None:
    data = clip(2.0, seed=10)
    plain = client.post(
        "/v1/embeddings?pooling=mean&postprocess=true", files={"file": ("e.wav", data)}
    ).json()
    packed = client.post(
        "/v1/embeddings?pooling=mean&postprocess=true&encoding=base64", files={"file": ("e.wav", data)}
    ).json()
    p, q = plain["data"][0], packed["data"][0]
    rows = np.stack([np.frombuffer(base64.b64decode(v), dtype="<f4") for v in q["embeddings"]])
    np.testing.assert_allclose(rows, embeddings_of(p), atol=ATOL)
    np.testing.assert_allclose(
        np.frombuffer(base64.b64decode(q["embedding"]), "<f4"), p["embedding"], atol=ATOL
    )
    post = np.stack([np.frombuffer(base64.b64decode(v), dtype=np.uint8) for v in q["postprocessed"]])
    np.testing.assert_array_equal(post, p["postprocessed"])


def test_headers_carry_request_id_and_timings(client: TestClient) -> None:
    r = client.post(
        "/v1/embeddings", files={"file": ("h.wav", clip(1.0))}, headers={"x-request-id": "abc-123"}
    )
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "abc-123"
    for name in ("x-decode-time", "x-queue-time", "x-inference-time"):
        assert float(r.headers[name]) >= 0
    assert float(r.headers["x-inference-time"]) > 0
    other = client.get("/healthz")
    assert len(other.headers["x-request-id"]) == 32 and "x-queue-time" in other.headers


def test_models_endpoint(client: TestClient) -> None:
    r = client.get("/v1/models")
    assert r.status_code == 200
    card = r.json()["data"][0]
    assert card["id"] == "vggish" and card["parameters"] == 72_141_184
    assert card["weights"]["sha256"] == "random" and card["postprocessing"] is True
    assert card["device"] == "cpu" and card["limits"]["max_inputs"] == 32


def test_health_metrics_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    text = client.get("/metrics").text
    for name in (
        "vggish_request_duration_seconds",
        "vggish_queue_seconds",
        "vggish_decode_seconds",
        "vggish_inference_seconds",
        "vggish_batch_examples",
        "vggish_queue_examples",
        "vggish_audio_seconds_total",
        "vggish_failures",
    ):
        assert name in text
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/embeddings"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json", "audio/*", "application/octet-stream"} <= set(body)
    assert body["application/json"]["examples"] and "EmbeddingsRequest" in schema["components"]["schemas"]
    assert client.get("/docs").status_code == 200
