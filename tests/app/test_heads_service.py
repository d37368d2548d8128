"""/v1/heads through the real app (TestClient): train on real recordings from audio and from
embeddings, classify held-out clips, export -> import, list (in pages) / get / delete, auth,
metrics; what each head records of its features (weights, hop, pad, resampler), the 409 on other
weights only, a warning for another resampler, a live stream with a head trained from audio;
short clips; the bounds on an answer's labels and on the number of heads. Every test runs with
the heads in SQLite and in PostgreSQL.

Scores are checked against an independent NumPy softmax of the exported tensors applied to the
library's own embeddings of the same clips."""

from __future__ import annotations

import io
import itertools
import json
import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import heads_corpus
import numpy as np
import pytest
import soundfile as sf
import torch
from fastapi.testclient import TestClient
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors
from service_helpers import assert_problem, metric, running_app

import vggish
from vggish.heads.store import SCHEMA_VERSION
from vggish.network.runtime import Runtime

pytestmark = pytest.mark.skipif(not heads_corpus.available(), reason="alsa / freedesktop sounds missing")
ATOL = 1e-4  # batching changes the summation order of the embeddings only
# What a head trained from audio with the default options on the random weights records.
AUDIO_FEATURES = {"weights_sha256": "random", "hop_seconds": 0.96, "pad": True, "resampler": "reference"}
OTHER_SHA = "ab" * 32
WAV_TYPE = {"content-type": "audio/wav"}


@pytest.fixture(scope="module")
def client(heads_store: dict[str, Any]) -> Iterator[TestClient]:
    with running_app(**heads_store) as c:
        yield c


@pytest.fixture(scope="module")
def corpus() -> tuple[list[heads_corpus.Clip], list[heads_corpus.Clip]]:
    return heads_corpus.corpus()


@pytest.fixture(scope="module")
def trained(client: TestClient, corpus: Any) -> dict[str, Any]:
    """The ``kinds`` head, trained from audio files (multipart)."""
    train, _ = corpus
    files = [("file", (c.name, c.wav(), "audio/wav")) for c in train]
    data = {"name": "kinds", "label": [c.label for c in train]}
    r = client.post("/v1/heads", files=files, data=data)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def library_clip_embeddings(model: Runtime, clips: list[heads_corpus.Clip]) -> np.ndarray:
    """(N, 128): each clip's mean example embedding, computed with the library (one batch) from
    the WAV bytes the service is sent."""
    examples = [vggish.waveform_to_examples(*sf.read(io.BytesIO(c.wav()))) for c in clips]
    with torch.inference_mode():
        out = model(torch.from_numpy(np.concatenate(examples))).numpy()
    bounds = np.cumsum([0] + [e.shape[0] for e in examples])
    return np.stack([out[a:b].mean(axis=0, dtype=np.float64) for a, b in itertools.pairwise(bounds)])


def numpy_scores(exported: bytes, x: np.ndarray) -> tuple[list[str], np.ndarray]:
    """An independent reference: softmax(out(relu(hidden(z)))) of the exported tensors."""
    t = load_safetensors(exported)
    meta = read_metadata(exported)
    z = (x - t["norm.mean"]) / t["norm.std"]
    if "hidden.weight" in t:
        z = np.maximum(z @ t["hidden.weight"].T + t["hidden.bias"], 0)
    logits = z @ t["out.weight"].T + t["out.bias"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return json.loads(meta["classes"]), e / e.sum(axis=1, keepdims=True)


def read_metadata(data: bytes) -> dict[str, str]:
    (n,) = struct.unpack("<Q", data[:8])
    meta: dict[str, str] = json.loads(data[8 : 8 + n])["__metadata__"]
    return meta


def classify(client: TestClient, name: str, clips: list[heads_corpus.Clip], **params: Any) -> Any:
    files = [("file", (c.name, c.wav(), "audio/wav")) for c in clips]
    r = client.post(f"/v1/heads/{name}/classify", files=files, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_train_from_audio_answers_the_head(trained: dict[str, Any], corpus: Any) -> None:
    train, _ = corpus
    assert trained["name"] == "kinds" and trained["kind"] == "linear" and trained["version"] == 1
    assert trained["classes"] == list(heads_corpus.CLASSES)
    assert trained["num_examples"] == len(train)
    smallest = min(sum(c.label == k for c in train) for k in heads_corpus.CLASSES)
    assert trained["metrics"]["folds"] == min(5, smallest)
    assert trained["metrics"]["cv_accuracy"] > 0.6 and trained["metrics"]["train_accuracy"] > 0.9
    assert trained["created_at"].endswith("+00:00")
    assert trained["features"] == AUDIO_FEATURES  # the server's weights and the (default) options
    assert "warnings" not in trained


def test_held_out_clips_are_classified_far_above_chance(
    client: TestClient, trained: dict[str, Any], corpus: Any
) -> None:
    _, test = corpus
    body = classify(client, "kinds", test)
    assert body["head"] == "kinds" and body["weights"] == "random"
    predicted = [item["labels"][0]["label"] for item in body["data"]]
    accuracy = np.mean([p == c.label for p, c in zip(predicted, test, strict=True)])
    assert accuracy >= 0.6, (accuracy, predicted)  # chance: 0.25


def test_scores_match_numpy_on_library_embeddings(
    client: TestClient, trained: dict[str, Any], corpus: Any, random_model: Runtime
) -> None:
    _, test = corpus
    clips = test[:6]
    exported = client.get("/v1/heads/kinds/export")
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "application/octet-stream"
    classes, expected = numpy_scores(exported.content, library_clip_embeddings(random_model, clips))
    body = classify(client, "kinds", clips)
    for item, row in zip(body["data"], expected, strict=True):
        got = {s["label"]: s["score"] for s in item["labels"]}
        np.testing.assert_allclose([got[c] for c in classes], row, atol=ATOL)
        scores = [s["score"] for s in item["labels"]]
        assert scores == sorted(scores, reverse=True)
        assert len(item["frames"]) == 1 and item["frames"][0]["start"] == 0.0
        assert item["duration"] == pytest.approx(1.0)


def test_frames_and_top_k(client: TestClient, trained: dict[str, Any]) -> None:
    long = heads_corpus.Clip("three.wav", "tone", np.tile(heads_corpus._tone(440).samples, 3), 16000)
    body = classify(client, "kinds", [long], top_k=2)
    item = body["data"][0]
    assert len(item["labels"]) == 2
    assert [(f["start"], f["end"]) for f in item["frames"]] == [
        (pytest.approx(0.0), pytest.approx(0.975)),
        (pytest.approx(0.96), pytest.approx(1.935)),
        (pytest.approx(1.92), pytest.approx(2.895)),
    ]
    assert all(len(f["labels"]) == 2 for f in item["frames"])


def test_export_import_gives_identical_scores(
    client: TestClient, trained: dict[str, Any], corpus: Any
) -> None:
    _, test = corpus
    data = client.get("/v1/heads/kinds/export").content
    r = client.put("/v1/heads/kinds-copy", content=data, headers={"content-type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    assert r.json()["classes"] == trained["classes"] and r.json()["metrics"] == trained["metrics"]
    again = client.put("/v1/heads/kinds-copy", content=data)
    assert again.status_code == 200 and again.json()["version"] == 2
    reexported = load_safetensors(client.get("/v1/heads/kinds-copy/export").content)
    original = load_safetensors(data)
    assert reexported.keys() == original.keys()
    for key, value in original.items():
        np.testing.assert_array_equal(reexported[key], value)  # bit for bit
    a = classify(client, "kinds", test[:5])
    b = classify(client, "kinds-copy", test[:5])
    for x, y in zip(a["data"], b["data"], strict=True):
        assert [s["label"] for s in x["labels"]] == [s["label"] for s in y["labels"]]
        # the embeddings differ by batching's summation order only; scores from the same
        # embeddings are identical (tests/test_heads.py)
        np.testing.assert_allclose(
            [s["score"] for s in x["labels"]], [s["score"] for s in y["labels"]], atol=1e-5
        )


@pytest.mark.slow
def test_train_from_embeddings_json_mlp(client: TestClient, random_model: Runtime, corpus: Any) -> None:
    train, test = corpus
    x = library_clip_embeddings(random_model, train)
    body = {"name": "kinds.mlp", "embeddings": x.tolist(), "labels": [c.label for c in train], "kind": "mlp"}
    r = client.post("/v1/heads", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "mlp" and r.json()["num_examples"] == len(train)
    exported = client.get("/v1/heads/kinds.mlp/export").content
    assert "hidden.weight" in load_safetensors(exported)
    classes, expected = numpy_scores(exported, library_clip_embeddings(random_model, test[:4]))
    for item, row in zip(classify(client, "kinds.mlp", test[:4])["data"], expected, strict=True):
        got = {s["label"]: s["score"] for s in item["labels"]}
        np.testing.assert_allclose([got[c] for c in classes], row, atol=ATOL)


def test_replace_bumps_the_version(client: TestClient) -> None:
    rng = np.random.default_rng(3)
    body = {"name": "twice", "embeddings": rng.standard_normal((4, 128)).tolist(), "labels": list("abab")}
    assert client.post("/v1/heads", json=body).status_code == 201
    assert_problem(client.post("/v1/heads", json=body), 409)
    r = client.post("/v1/heads", json={**body, "replace": True})
    assert r.status_code == 200 and r.json()["version"] == 2  # replaced: 200, as PUT
    assert r.headers["location"] == "/v1/heads/twice"
    new = client.post("/v1/heads", json={**body, "name": "twice-new", "replace": True})
    assert new.status_code == 201 and new.json()["version"] == 1  # replace=true on a new name
    assert r.json()["metrics"] == {
        "cv_accuracy": pytest.approx(r.json()["metrics"]["cv_accuracy"]),
        "train_accuracy": 1.0,
        "folds": 2,
    }


def test_list_get_delete(client: TestClient) -> None:
    rng = np.random.default_rng(4)
    body = {"name": "gone", "embeddings": rng.standard_normal((3, 128)).tolist(), "labels": ["x", "y", "y"]}
    created = client.post("/v1/heads", json=body).json()
    assert created["metrics"]["cv_accuracy"] is None and created["metrics"]["folds"] == 0
    names = [h["name"] for h in all_heads(client)]
    assert "gone" in names and names == sorted(names)
    assert client.get("/v1/heads/gone").json() == created
    assert client.delete("/v1/heads/gone").status_code == 204
    assert_problem(client.get("/v1/heads/gone"), 404)
    assert_problem(client.delete("/v1/heads/gone"), 404)
    assert "gone" not in [h["name"] for h in all_heads(client)]


def all_heads(client: TestClient) -> list[dict[str, Any]]:
    """Every head, following the `next` links."""
    found: list[dict[str, Any]] = []
    page: str | None = "/v1/heads?limit=7"
    while page is not None:
        body = client.get(page).json()
        found += body["data"]
        page = body["next"]
    return found


def test_the_list_comes_in_pages(client: TestClient) -> None:
    for k in range(3):
        assert client.post("/v1/heads", json=json_head(f"page-{k}", 20 + k)).status_code == 201
    everything = all_heads(client)
    names = [h["name"] for h in everything]
    assert names == sorted(names) and {"page-0", "page-1", "page-2"} <= set(names)
    first = client.get("/v1/heads", params={"limit": 2}).json()
    assert [h["name"] for h in first["data"]] == names[:2]
    assert first["next"] == f"/v1/heads?limit=2&cursor={names[1]}"
    second = client.get(first["next"]).json()
    assert [h["name"] for h in second["data"]] == names[2:4]
    assert first["data"][0] == everything[0]  # the items' fields, as before
    last = client.get("/v1/heads", params={"limit": 100, "cursor": names[-2]}).json()
    assert [h["name"] for h in last["data"]] == names[-1:] and last["next"] is None
    default = client.get("/v1/heads").json()
    assert len(default["data"]) == min(20, len(names))
    for params in ({"limit": 0}, {"limit": 101}, {"cursor": "no spaces"}, {"page": 2}):
        assert_problem(client.get("/v1/heads", params=params), 422)


def test_metrics_count_trainings_and_classifications(client: TestClient, trained: dict[str, Any]) -> None:
    text = client.get("/metrics").text
    assert metric(text, "vggish_heads_trained_total", source="audio") >= 1
    assert metric(text, "vggish_classifications_total") >= 1


def test_the_database_holds_the_heads(
    client: TestClient, trained: dict[str, Any], heads_store: dict[str, Any]
) -> None:
    if "database_url" in heads_store:
        import psycopg

        with psycopg.connect(heads_store["database_url"]) as conn:
            assert conn.execute("SELECT version FROM heads_schema").fetchone() == (SCHEMA_VERSION,)
            row = conn.execute(
                "SELECT tensors, weights_sha256, hop_seconds, pad, resampler FROM heads WHERE name = 'kinds'"
            ).fetchone()
        assert not (heads_store["data_dir"] / "heads.sqlite3").exists()  # nothing in SQLite
    else:
        with sqlite3.connect(heads_store["data_dir"] / "heads.sqlite3") as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
            row = conn.execute(
                "SELECT tensors, weights_sha256, hop_seconds, pad, resampler FROM heads WHERE name = 'kinds'"
            ).fetchone()
    assert set(load_safetensors(bytes(row[0]))) == {"norm.mean", "norm.std", "out.weight", "out.bias"}
    assert tuple(row[1:]) == ("random", 0.96, True, "reference")


def test_openapi_documents_the_heads_endpoints(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert {"post", "get"} <= set(paths["/v1/heads"])
    assert {"get", "put", "delete"} <= set(paths["/v1/heads/{name}"])
    assert "examples" in paths["/v1/heads"]["post"]["requestBody"]["content"]["application/json"]
    assert "TrainRequest" in schema["components"]["schemas"]
    assert "post" in paths["/v1/heads/{name}/classify"] and "get" in paths["/v1/heads/{name}/export"]


def test_api_keys_guard_the_heads(tmp_path: Path) -> None:
    with running_app(api_keys="s3cret", data_dir=tmp_path, warmup=False) as c:
        for method, path in [("get", "/v1/heads"), ("get", "/v1/heads/x"), ("delete", "/v1/heads/x")]:
            assert_problem(c.request(method, path), 401)
        assert_problem(c.put("/v1/heads/x", content=b"abc"), 401)
        assert_problem(c.post("/v1/heads/x/classify", content=b"abc"), 401)
        ok = c.get("/v1/heads", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json() == {"object": "list", "data": [], "next": None}
    assert not (tmp_path / "heads.sqlite3").exists()  # reading creates nothing


# --- what a head records of its features, and the 409 on other ones ----------------------------


def test_listing_shows_each_heads_features(client: TestClient, trained: dict[str, Any]) -> None:
    listed = {h["name"]: h for h in all_heads(client)}
    assert listed["kinds"]["features"] == AUDIO_FEATURES and "warnings" not in listed["kinds"]
    assert client.get("/v1/heads/kinds").json() == listed["kinds"]


@pytest.mark.parametrize("params", [{"hop": 0.48}, {"pad": "false"}, {"hop": 0.5, "pad": "false"}])
def test_hop_and_pad_are_never_a_mismatch(
    client: TestClient, trained: dict[str, Any], corpus: Any, params: dict[str, Any]
) -> None:
    """They choose which examples a clip makes, not what an example's embedding is."""
    _, test = corpus
    body = classify(client, "kinds", test[:2], **params)
    assert "warnings" not in body and all(item["labels"] for item in body["data"])


def test_another_resampler_is_a_warning(client: TestClient, trained: dict[str, Any], corpus: Any) -> None:
    _, test = corpus
    body = classify(client, "kinds", test[:2], resampler="fast")
    assert body["warnings"] == [
        "head 'kinds' was trained on audio resampled by the 'reference' resampler, these by 'fast': "
        "embeddings of resampled audio differ slightly, and so may its scores"
    ]
    assert all(item["labels"] for item in body["data"])


def test_other_weights_are_a_409_unless_forced(client: TestClient, corpus: Any) -> None:
    _, test = corpus
    other = {"weights_sha256": OTHER_SHA, "hop_seconds": 0.96, "pad": True, "resampler": "reference"}
    assert client.post("/v1/heads", json=json_head("foreign", 8, features=other)).status_code == 201
    files = [("file", (c.name, c.wav(), "audio/wav")) for c in test[:2]]
    body = assert_problem(client.post("/v1/heads/foreign/classify", files=files, params={"hop": 0.5}), 409)
    assert body["type"].endswith(":weights-mismatch") and body["differences"] == ["weights"]
    assert body["head_features"] == other and body["used_features"]["weights_sha256"] == "random"
    assert "head 'foreign' was trained on embeddings of weights abababababab" in body["detail"]
    assert "force=true" in body["detail"]
    forced = classify(client, "foreign", test[:2], force="true")
    assert len(forced["warnings"]) == 1 and "(forced)" in forced["warnings"][0]
    assert all(item["labels"] for item in forced["data"])


def test_a_stream_with_a_head_trained_from_audio_needs_no_extra_fields(
    client: TestClient, trained: dict[str, Any], corpus: Any
) -> None:
    """The live stream (pad off by default) with a head trained from audio files (pad on): the
    page's Record with a head sends exactly these fields."""
    _, test = corpus
    pcm = (test[0].samples * 32767).astype("<i2").tobytes()
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_json({"sample_rate": 16000, "format": "s16le", "channels": 1, "hop": 0.96, "head": "kinds"})
        assert ws.receive_json()["type"] == "ready"
        ws.send_bytes(pcm)
        ws.send_json({"type": "end"})
        message = ws.receive_json()
    assert message["type"] == "embedding" and message["labels"][0]["label"] in heads_corpus.CLASSES


def json_head(name: str, rng_seed: int, **extra: Any) -> dict[str, Any]:
    rng = np.random.default_rng(rng_seed)
    x = rng.standard_normal((6, 128)) + np.repeat(np.eye(2, 128) * 3, 3, axis=0)
    return {"name": name, "embeddings": x.tolist(), "labels": ["a"] * 3 + ["b"] * 3, **extra}


def test_a_json_trained_head_records_the_features_it_declares(client: TestClient, corpus: Any) -> None:
    _, test = corpus
    declared = {"weights_sha256": OTHER_SHA, "hop_seconds": 0.96, "pad": True, "resampler": "reference"}
    r = client.post("/v1/heads", json=json_head("declared", 1, features=declared))
    assert r.status_code == 201 and r.json()["features"] == declared and "warnings" not in r.json()
    wav = test[0].wav()
    body = assert_problem(client.post("/v1/heads/declared/classify", content=wav, headers=WAV_TYPE), 409)
    assert body["differences"] == ["weights"] and "weights abababababab" in body["detail"]
    partial = client.post("/v1/heads", json=json_head("partial", 2, features={"weights_sha256": "random"}))
    assert partial.json()["features"] == {
        "weights_sha256": "random",
        "hop_seconds": None,
        "pad": None,
        "resampler": None,
    }
    assert "warnings" not in partial.json()  # the weights are what binds a head
    r = client.post("/v1/heads/partial/classify", content=wav, params={"hop": 0.5}, headers=WAV_TYPE)
    assert r.status_code == 200


def test_a_json_trained_head_without_features_is_unknown_and_never_refused(
    client: TestClient, corpus: Any
) -> None:
    _, test = corpus
    r = client.post("/v1/heads", json=json_head("unknown", 3))
    assert r.status_code == 201
    assert r.json()["features"] == dict.fromkeys(AUDIO_FEATURES)
    assert "does not record the weights it was trained on" in r.json()["warnings"][0]
    body = classify(client, "unknown", test[:1], hop=0.5, resampler="fast")
    assert body["warnings"] == [
        "head 'unknown' does not record its weights: its scores mean nothing on embeddings of other weights"
    ]


@pytest.mark.parametrize(
    "fields", [{"weights_sha256": "xyz"}, {"hop_seconds": 0.005}, {"pad": "maybe"}, {"colour": "red"}]
)
def test_malformed_declared_features_are_422(client: TestClient, fields: dict[str, Any]) -> None:
    assert_problem(client.post("/v1/heads", json=json_head("badfeatures", 4, features=fields)), 422)
    assert_problem(client.get("/v1/heads/badfeatures"), 404)


def test_import_checks_the_weights_only(client: TestClient, trained: dict[str, Any]) -> None:
    other = {"weights_sha256": OTHER_SHA, "hop_seconds": 0.48, "pad": False, "resampler": "fast"}
    assert client.post("/v1/heads", json=json_head("elsewhere", 5, features=other)).status_code == 201
    data = client.get("/v1/heads/elsewhere/export").content
    assert json.loads(read_metadata(data)["features"]) == other  # the file carries it
    body = assert_problem(client.put("/v1/heads/moved", content=data), 409)
    assert body["differences"] == ["weights"] and "weights abababababab" in body["detail"]
    assert_problem(client.get("/v1/heads/moved"), 404)
    forced = client.put("/v1/heads/moved", content=data, params={"force": "true"})
    assert forced.status_code == 201 and forced.json()["features"] == other
    assert "(forced)" in forced.json()["warnings"][0]
    # hop, pad and resampler are per-request choices: an import of another hop is accepted
    same_weights = {**other, "weights_sha256": "random"}
    assert client.post("/v1/heads", json=json_head("hop48", 6, features=same_weights)).status_code == 201
    copy = client.put("/v1/heads/hop48-copy", content=client.get("/v1/heads/hop48/export").content)
    assert copy.status_code == 201 and copy.json()["features"] == same_weights


def strip_features(data: bytes) -> bytes:
    """A head file as written before heads recorded their features (no `features` metadata)."""
    arrays = load_safetensors(data)
    meta = {k: v for k, v in read_metadata(data).items() if k != "features"}
    return bytes(save_safetensors(arrays, metadata=meta))


def test_heads_from_before_identities_keep_working_and_say_so(
    client: TestClient, trained: dict[str, Any], corpus: Any
) -> None:
    _, test = corpus
    old = strip_features(client.get("/v1/heads/kinds/export").content)
    r = client.put("/v1/heads/old-kinds", content=old)
    assert r.status_code == 201 and r.json()["features"] == dict.fromkeys(AUDIO_FEATURES)
    assert "does not record the weights" in r.json()["warnings"][0]
    listed = {h["name"]: h for h in all_heads(client)}
    assert "does not record the weights" in listed["old-kinds"]["warnings"][0]
    a = classify(client, "kinds", test[:3])
    b = classify(client, "old-kinds", test[:3], hop=0.96)
    assert "does not record" in b["warnings"][0] and "warnings" not in a
    for x, y in zip(a["data"], b["data"], strict=True):
        assert [s["label"] for s in x["labels"]] == [s["label"] for s in y["labels"]]


# --- short clips: heads pad by default ---------------------------------------------------------


def short_clip(seconds: float, label: str, seed: int) -> heads_corpus.Clip:
    """A chime-like clip: a decaying tone, shorter than one example."""
    t = np.arange(round(seconds * 16000)) / 16000
    x = 0.4 * np.exp(-4 * t) * np.sin(2 * np.pi * (600 + 100 * seed) * t)
    return heads_corpus.Clip(f"short-{seed}.wav", label, x.astype(np.float32), 16000)


def test_short_clips_train_and_classify_padded_by_default(
    client: TestClient, trained: dict[str, Any], corpus: Any, random_model: Runtime
) -> None:
    train, _ = corpus
    clips = [*train[:12], short_clip(0.5, "alert", 1), short_clip(0.3, "alert", 2)]
    files = [("file", (c.name, c.wav(), "audio/wav")) for c in clips]
    r = client.post("/v1/heads", files=files, data={"name": "with-short", "label": [c.label for c in clips]})
    assert r.status_code == 201, r.text
    assert r.json()["num_examples"] == 14 and r.json()["features"]["pad"] is True
    chime = short_clip(0.5, "alert", 3)
    body = classify(client, "kinds", [chime])
    item = body["data"][0]
    assert item["duration"] == pytest.approx(0.5) and item["labels"] and "warnings" not in item
    assert [(f["start"], f["end"]) for f in item["frames"]] == [(0.0, pytest.approx(0.975))]
    samples, rate = sf.read(io.BytesIO(chime.wav()))  # what the server decodes
    padded = random_model.embed(samples, rate, pad=True).embeddings  # (1, 128)
    classes, expected = numpy_scores(client.get("/v1/heads/kinds/export").content, padded)
    got = {s["label"]: s["score"] for s in item["labels"]}
    np.testing.assert_allclose([got[c] for c in classes], expected[0], atol=ATOL)


def test_short_clips_without_padding(client: TestClient, trained: dict[str, Any], corpus: Any) -> None:
    train, _ = corpus
    clips = [*train[:4], short_clip(0.5, "alert", 1), short_clip(0.3, "alert", 2)]
    files = [("file", (c.name, c.wav(), "audio/wav")) for c in clips]
    data = {"name": "no-pad", "label": [c.label for c in clips]}
    body = assert_problem(client.post("/v1/heads", files=files, data=data, params={"pad": "false"}), 422)
    assert "2 clip(s)" in body["detail"] and "short-1.wav (0.500 s)" in body["detail"]
    assert "pad=true" in body["detail"]
    chime = short_clip(0.5, "alert", 3)
    out = classify(client, "kinds", [chime, train[0]], pad="false", force="true")
    short, long = out["data"]
    assert short["labels"] == [] and short["frames"] == []
    assert (
        "0.500 s is shorter than one example" in short["warnings"][0] and "pad=true" in short["warnings"][0]
    )
    assert long["labels"] and "warnings" not in long


def test_classify_omits_a_missing_name(client: TestClient, trained: dict[str, Any], corpus: Any) -> None:
    _, test = corpus
    r = client.post("/v1/heads/kinds/classify", content=test[0].wav(), headers={"content-type": "audio/wav"})
    assert r.status_code == 200 and "name" not in r.json()["data"][0]
    named = classify(client, "kinds", test[:1])
    assert named["data"][0]["name"] == test[0].name


# --- what an answer may hold: frames' labels and the bound on them; the bound on heads ---------


def many_classes_head(client: TestClient, name: str, classes: int) -> None:
    rng = np.random.default_rng(classes)
    x = rng.standard_normal((2 * classes, 128)) + np.tile(np.eye(classes, 128) * 4, (2, 1))
    body = {
        "name": name,
        "embeddings": np.round(x, 4).tolist(),
        "labels": [f"c{k:02d}" for k in range(classes)] * 2,
    }
    assert client.post("/v1/heads", json=body).status_code == 201


def test_frames_hold_the_best_5_labels_unless_top_k_says(client: TestClient, corpus: Any) -> None:
    many_classes_head(client, "twelve", 12)
    long = heads_corpus.Clip("three.wav", "tone", np.tile(heads_corpus._tone(440).samples, 3), 16000)
    item = classify(client, "twelve", [long])["data"][0]
    assert len(item["labels"]) == 12  # the clip's: all of them
    assert [len(f["labels"]) for f in item["frames"]] == [5, 5, 5]
    for frame in item["frames"]:
        scores = [s["score"] for s in frame["labels"]]
        assert scores == sorted(scores, reverse=True) and sum(scores) < 1.0
    item = classify(client, "twelve", [long], top_k=8)["data"][0]
    assert len(item["labels"]) == 8 and [len(f["labels"]) for f in item["frames"]] == [8, 8, 8]


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_store(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Settings of an empty store of each kind, for an app of its own."""
    if request.param == "sqlite":
        return {"data_dir": tmp_path}
    return {"data_dir": tmp_path, "database_url": request.getfixturevalue("postgres_url")}


def test_an_answer_of_too_many_labels_is_413_naming_the_fix(fresh_store: dict[str, Any]) -> None:
    long = heads_corpus.Clip("ten.wav", "tone", np.tile(heads_corpus._tone(440).samples, 10), 16000)
    with running_app(**fresh_store, max_answer_labels=100) as c:
        many_classes_head(c, "twelve", 12)
        wav = {"file": ("ten.wav", long.wav(), "audio/wav")}
        assert c.post("/v1/heads/twelve/classify", files=wav).status_code == 200  # 12 + 10 x 5 labels
        problem = assert_problem(c.post("/v1/heads/twelve/classify", files=wav, params={"top_k": 12}), 413)
        assert problem["limit"] == "max_answer_labels"
        assert "132 labels (1 clip x 12 and 10 frames x 12); at most 100" in problem["detail"]
        assert "top_k" in problem["detail"] and "VGGISH_MAX_ANSWER_LABELS" in problem["detail"]
        nine = [("file", (f"{k}.wav", long.wav(), "audio/wav")) for k in range(9)]
        problem = assert_problem(c.post("/v1/heads/twelve/classify", files=nine), 413)
        assert "108 labels (9 clips x 12 and 0 frames" in problem["detail"]  # before any embedding
        assert c.get("/readyz").status_code == 200


def test_a_store_of_max_heads_refuses_a_new_one_with_507(fresh_store: dict[str, Any]) -> None:
    with running_app(**fresh_store, max_heads=2) as c:
        for name in ("one", "two"):
            assert c.post("/v1/heads", json=json_head(name, 30)).status_code in (200, 201)
        problem = assert_problem(c.post("/v1/heads", json=json_head("three", 31)), 507)
        assert problem["type"].endswith(":too-many-heads") and problem["limit"] == "max_heads"
        assert "holds 2 heads" in problem["detail"] and "delete heads" in problem["detail"]
        data = c.get("/v1/heads/one/export").content
        assert_problem(c.put("/v1/heads/three", content=data), 507)
        assert c.put("/v1/heads/two", content=data).status_code == 200  # replacing is no new head
        assert c.post("/v1/heads", json=json_head("one", 32, replace=True)).status_code == 200
        assert c.delete("/v1/heads/one").status_code == 204
        assert c.post("/v1/heads", json=json_head("three", 31)).status_code == 201
