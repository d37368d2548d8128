"""POST /v1/features through the real app: every body form and encoding, the library's numbers,
and ``max_feature_examples`` refused before decoding (or, for files of unknown length, while)."""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import assert_problem, clip, running_app, signal_of

import vggish

LIMIT = 6  # examples per request on the small app


@pytest.fixture(scope="module")
def small() -> Iterator[TestClient]:
    with running_app(max_feature_examples=LIMIT) as c:
        yield c


def examples_of(item: dict[str, Any]) -> np.ndarray:
    """A response item's examples as (N, 96, 64) float32, from either encoding."""
    if item["examples"] and isinstance(item["examples"][0], str):
        rows = [np.frombuffer(base64.b64decode(e), dtype="<f4") for e in item["examples"]]
        return np.stack(rows).reshape(-1, 96, 64) if rows else np.empty((0, 96, 64), np.float32)
    return np.asarray(item["examples"], dtype=np.float32).reshape(-1, 96, 64)


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_files_give_the_librarys_examples(client: TestClient, encoding: str) -> None:
    files = [
        ("file", ("stereo.wav", clip(2.5, 44100, channels=2, seed=1), "audio/wav")),
        ("file", ("mono.flac", clip(3.1, 16000, fmt="FLAC", seed=2), "audio/flac")),
    ]
    r = client.post("/v1/features", params={"encoding": encoding}, files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["object"], body["model"], body["weights"]) == ("list", "vggish", "random")
    assert body["usage"] == {"audio_seconds": pytest.approx(5.6), "examples": 5}
    for item, (_, (name, data, _)) in zip(body["data"], files, strict=True):
        expected = vggish.wavfile_to_examples(data)
        got = examples_of(item)
        assert item["name"] == name and item["shape"] == list(expected.shape) == list(got.shape)
        np.testing.assert_array_equal(got, expected)  # float32 both ways: exact
        assert item["timestamps"] == [[0.96 * k, 0.96 * k + 0.975] for k in range(len(expected))]
    assert [d["channels"] for d in body["data"]] == [2, 1]
    assert [d["sample_rate"] for d in body["data"]] == [44100, 16000]


def test_samples_hop_and_pad(client: TestClient) -> None:
    x = signal_of(2.0, 22050, 1, seed=3)[:, 0]
    body = {"inputs": [{"samples": x.tolist(), "sample_rate": 22050}]}
    r = client.post("/v1/features", params={"hop": 0.5, "resampler": "fast"}, json=body)
    assert r.status_code == 200, r.text
    item = r.json()["data"][0]
    assert "name" not in item  # omitted when the input has none
    # JSON samples are read as float32, as the README says
    expected = vggish.waveform_to_examples(x.astype(np.float32), 22050, hop_seconds=0.5, resampler="fast")
    np.testing.assert_array_equal(examples_of(item), expected)
    assert item["shape"] == [3, 96, 64] and item["timestamps"][1] == [0.5, 1.475]

    short = clip(0.5, 16000, seed=4)
    headers = {"content-type": "audio/wav", "x-filename": "short.wav"}
    unpadded = client.post("/v1/features", content=short, headers=headers).json()["data"][0]
    assert unpadded["shape"] == [0, 96, 64] and unpadded["examples"] == []
    as_base64 = client.post("/v1/features", params={"encoding": "base64"}, content=short, headers=headers)
    assert as_base64.status_code == 200 and as_base64.json()["data"][0]["examples"] == []
    padded = client.post("/v1/features", params={"pad": True}, content=short, headers=headers).json()
    assert padded["data"][0]["shape"] == [1, 96, 64] and padded["data"][0]["name"] == "short.wav"


def test_the_request_limit_is_refused_from_the_headers(small: TestClient) -> None:
    eight_seconds = clip(8.0, 16000, seed=5)  # 8 examples: over the limit on its own
    r = small.post("/v1/features", content=eight_seconds, headers={"content-type": "audio/wav"})
    assert assert_problem(r, 413)["limit"] == "max_feature_examples"
    four = [("file", (f"{k}.wav", clip(4.0, 16000, seed=k), "audio/wav")) for k in range(2)]
    r = small.post("/v1/features", files=four)  # 4 + 4 examples: over the limit together
    body = assert_problem(r, 413)
    assert body["limit"] == "max_feature_examples" and "8 examples" in body["detail"]
    r = small.post("/v1/features", params={"hop": 2.0}, files=four)  # 2 + 2 at a longer hop: fine
    assert r.status_code == 200 and r.json()["usage"]["examples"] == 4
    assert small.get("/v1/models").json()["data"][0]["limits"]["max_feature_examples"] == LIMIT


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to make an MP3")
def test_files_of_unknown_length_are_bounded_while_decoding(small: TestClient) -> None:
    """MP3 headers do not tell a trustworthy length: its examples are counted as they are made,
    within what the request's other inputs leave."""
    wav = clip(5.0, 16000, seed=6)
    command = ["ffmpeg", "-v", "error", "-f", "wav", "-i", "-", "-f", "mp3", "-"]
    mp3 = subprocess.run(command, input=wav, capture_output=True, check=True).stdout
    alone = small.post("/v1/features", content=mp3, headers={"content-type": "audio/mpeg"})
    assert alone.status_code == 200 and alone.json()["data"][0]["shape"][0] == 5
    files = [
        ("file", ("a.wav", clip(2.0, 16000, seed=7), "audio/wav")),
        ("file", ("b.mp3", mp3, "audio/mpeg")),
    ]
    r = small.post("/v1/features", files=files)  # 2 known + 5 decoded > 6
    body = assert_problem(r, 413)
    assert body["limit"] == "max_feature_examples"
    assert "'b.mp3' makes 5 examples" in body["detail"] and "at most 4" in body["detail"]


@pytest.mark.slow
def test_keys_and_openapi() -> None:
    with running_app(api_keys="k") as keyed:
        r = keyed.post("/v1/features", content=clip(1.0), headers={"content-type": "audio/wav"})
        assert_problem(r, 401)
        headers = {"content-type": "audio/wav", "authorization": "Bearer k"}
        r = keyed.post("/v1/features", content=clip(1.0), headers=headers)
        assert r.status_code == 200
        operation = keyed.get("/openapi.json").json()["paths"]["/v1/features"]["post"]
    content = operation["requestBody"]["content"]
    assert {"multipart/form-data", "application/json", "audio/*", "application/octet-stream"} <= set(content)
    assert {p["name"] for p in operation["parameters"]} == {"hop", "pad", "resampler", "encoding"}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "FeaturesResponse"
    )
    assert "413" in operation["responses"]
