"""Every bad request to /v1/heads gets its problem+json 4xx, and the service stays healthy (with
the heads in SQLite and in PostgreSQL); JSON training bodies are refused while they are parsed,
naming the first bad row, label or field."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors
from service_helpers import assert_problem, clip, running_app

from vggish import heads

RNG = np.random.default_rng(7)
GOOD = {"name": "good", "embeddings": RNG.standard_normal((4, 128)).tolist(), "labels": ["a", "b", "a", "b"]}
WAV = clip(1.2, seed=5)


@pytest.fixture(scope="module")
def client(heads_store: dict[str, Any]) -> Iterator[TestClient]:
    with running_app(**heads_store, max_train_examples=50, max_train_classes=4) as c:
        assert c.post("/v1/heads", json=GOOD).status_code == 201
        yield c


def exported(client: TestClient) -> bytes:
    return client.get("/v1/heads/good/export").content


def with_changes(data: bytes, drop: str = "", meta: dict[str, str] | None = None, **tensors: Any) -> bytes:
    """A copy of an exported head with a tensor dropped or replaced, or metadata changed."""
    arrays = {k: v for k, v in load_safetensors(data).items() if k != drop}
    arrays |= tensors
    (n,) = np.frombuffer(data[:8], dtype="<u8")
    metadata = json.loads(data[8 : 8 + int(n)])["__metadata__"] | (meta or {})
    return bytes(save_safetensors(arrays, metadata=metadata))


def pickled() -> bytes:
    buffer = io.BytesIO()
    torch.save({"out.weight": torch.zeros(2, 128)}, buffer)
    return buffer.getvalue()


JSON_CASES = {
    "bad name": {**GOOD, "name": "no spaces"},
    "name too long": {**GOOD, "name": "x" * 65},
    "empty name": {**GOOD, "name": ""},
    "single class": {**GOOD, "name": "one", "labels": ["a"] * 4},
    "mismatched counts": {**GOOD, "name": "counts", "labels": ["a", "b", "a"]},
    "wrong dimension": {**GOOD, "name": "dim", "embeddings": np.ones((4, 127)).tolist()},
    "ragged rows": {**GOOD, "name": "ragged", "embeddings": [[0.0] * 128, [0.0] * 127] * 2},
    "unknown kind": {**GOOD, "name": "kind", "kind": "svm"},
    "empty label": {**GOOD, "name": "blank", "labels": ["a", "", "a", "b"]},
    "unknown field": {**GOOD, "name": "extra", "colour": "red"},
    "missing labels": {"name": "nolabels", "embeddings": GOOD["embeddings"]},
}


@pytest.mark.parametrize("case", list(JSON_CASES))
def test_bad_json_training_is_422(client: TestClient, case: str) -> None:
    assert_problem(client.post("/v1/heads", json=JSON_CASES[case]), 422)


def test_a_taken_name_is_a_409_conflict(client: TestClient) -> None:
    body = assert_problem(client.post("/v1/heads", json=GOOD), 409)
    assert body["type"].endswith(":head-exists") and "replace=true" in body["detail"]
    assert client.post("/v1/heads", json={**GOOD, "replace": True}).status_code == 200


def test_nan_embedding_is_422(client: TestClient) -> None:
    rows = [[float("nan"), *row[1:]] for row in GOOD["embeddings"]]
    text = json.dumps({**GOOD, "name": "nan", "embeddings": rows})
    assert "NaN" in text
    body = assert_problem(
        client.post("/v1/heads", content=text, headers={"content-type": "application/json"}), 422
    )
    assert "NaN" in body["detail"]


@pytest.mark.parametrize(
    ("body", "status"), [(b"", 422), (b"{not json", 422), (b"[]", 422)], ids=["empty", "malformed", "array"]
)
def test_malformed_json_body(client: TestClient, body: bytes, status: int) -> None:
    assert_problem(
        client.post("/v1/heads", content=body, headers={"content-type": "application/json"}), status
    )


def test_other_media_type_is_415(client: TestClient) -> None:
    assert_problem(client.post("/v1/heads", content=WAV, headers={"content-type": "audio/wav"}), 415)


def form(n_files: int, labels: list[str], **fields: Any) -> dict[str, Any]:
    files = [("file", (f"c{i}.wav", clip(1.2, seed=i), "audio/wav")) for i in range(n_files)]
    return {"files": files, "data": {"name": "fromaudio", "label": labels, **fields}}


MULTIPART_CASES = {
    "missing label fields": (form(2, []), 422),
    "fewer labels than files": (form(3, ["a", "b"]), 422),
    "single class": (form(2, ["a", "a"]), 422),
    "bad name": (form(2, ["a", "b"], name="bad/name"), 422),
    "unknown kind": (form(2, ["a", "b"], kind="tree"), 422),
    "duplicate name": (form(2, ["a", "b"], name="good"), 409),
    "no file part": ({"files": [("other", ("x.txt", b"abc", "text/plain"))], "data": {"name": "x"}}, 400),
    "undecodable file": (
        {
            "files": [("file", ("x.wav", b"not audio", "audio/wav"))] * 2,
            "data": {"name": "x", "label": ["a", "b"]},
        },
        415,
    ),
}


@pytest.mark.parametrize("case", list(MULTIPART_CASES))
def test_bad_multipart_training(client: TestClient, case: str) -> None:
    request, status = MULTIPART_CASES[case]
    assert_problem(client.post("/v1/heads", **request), status)


def test_clip_without_an_example_is_422_when_not_padded(client: TestClient) -> None:
    short = [("file", (f"s{i}.wav", clip(0.5, seed=i), "audio/wav")) for i in range(2)]
    data = {"name": "short", "label": ["a", "b"]}
    body = assert_problem(client.post("/v1/heads", files=short, data=data, params={"pad": "false"}), 422)
    assert "pad=true" in body["detail"] and "s0.wav (0.500 s), s1.wav (0.500 s)" in body["detail"]
    assert client.post("/v1/heads", files=short, data=data).status_code == 201  # heads pad by default


def rows(n: int) -> list[list[float]]:
    return np.round(RNG.standard_normal((n, 128)), 3).tolist()


LIMIT_CASES = {  # the app allows 50 clips and 4 classes per training
    "json rows": ({**GOOD, "name": "big", "embeddings": rows(51)}, "max_train_examples"),  # 4 labels
    "json labels": ({**GOOD, "name": "big", "labels": ["a", "b"] * 26}, "max_train_examples"),
    "json classes": (
        {**GOOD, "name": "big", "embeddings": rows(5), "labels": ["a", "b", "c", "d", "e"]},
        "max_train_classes",
    ),
}


@pytest.mark.parametrize("case", list(LIMIT_CASES))
def test_training_over_the_limits_is_413_naming_the_setting(client: TestClient, case: str) -> None:
    body, limit = LIMIT_CASES[case]
    problem = assert_problem(client.post("/v1/heads", json=body), 413)
    assert problem["limit"] == limit and problem["detail"].startswith(limit)
    at_limit = {**GOOD, "name": "at-limit", "embeddings": rows(50), "labels": list("abcd") * 12 + ["a", "b"]}
    assert client.post("/v1/heads", json={**at_limit, "replace": True}).status_code in (200, 201)


def test_training_form_over_the_limits_is_413_before_any_audio_is_embedded(client: TestClient) -> None:
    wav = clip(1.0, seed=1)
    files = [("file", (f"c{i}.wav", wav, "audio/wav")) for i in range(5)]
    classes = assert_problem(
        client.post("/v1/heads", files=files, data={"name": "x", "label": list("abcde")}), 413
    )
    assert classes["limit"] == "max_train_classes"
    many = [("file", (f"c{i}.wav", wav, "audio/wav")) for i in range(51)]
    examples = assert_problem(
        client.post("/v1/heads", files=many, data={"name": "x", "label": ["a", "b"] * 25 + ["a"]}), 413
    )
    assert examples["limit"] == "max_train_examples"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/heads/absent"),
        ("delete", "/v1/heads/absent"),
        ("get", "/v1/heads/absent/export"),
    ],
)
def test_unknown_head_is_404(client: TestClient, method: str, path: str) -> None:
    body = assert_problem(client.request(method, path), 404)
    assert body["type"].endswith(":head-not-found")


def test_classify_unknown_head_is_404(client: TestClient) -> None:
    assert_problem(client.post("/v1/heads/absent/classify", files={"file": ("a.wav", WAV, "audio/wav")}), 404)


@pytest.mark.parametrize("path", ["/v1/heads/bad%20name", "/v1/heads/" + "x" * 65, "/v1/heads/a$b/export"])
def test_bad_name_in_path_is_422(client: TestClient, path: str) -> None:
    assert_problem(client.get(path), 422)


def test_classify_errors(client: TestClient) -> None:
    assert_problem(client.post("/v1/heads/good/classify"), 400)
    assert_problem(client.post("/v1/heads/good/classify", params={"top_k": 0}, content=WAV), 422)
    assert_problem(client.post("/v1/heads/good/classify", params={"hop": 0.005}, content=WAV), 422)
    assert_problem(client.post("/v1/heads/good/classify", params={"hop": 5.8e14}, content=WAV), 422)
    bad = {"file": ("a.wav", b"RIFF....garbage", "audio/wav")}
    assert_problem(client.post("/v1/heads/good/classify", files=bad), 415)


IMPORT_CASES = {
    "garbage": lambda data: b"definitely not safetensors",
    "truncated": lambda data: data[: len(data) // 2],
    "pickle": lambda data: pickled(),
    "wrong format": lambda data: with_changes(data, meta={"format": "other"}),
    "future version": lambda data: with_changes(data, meta={"format_version": "99"}),
    "unknown kind": lambda data: with_changes(data, meta={"kind": "svm"}),
    "classes not json": lambda data: with_changes(data, meta={"classes": "a,b"}),
    "one class": lambda data: with_changes(data, meta={"classes": '["a"]'}),
    "missing tensor": lambda data: with_changes(data, drop="out.bias"),
    "extra tensor": lambda data: with_changes(data, **{"extra": np.zeros(3, np.float32)}),
    "float64": lambda data: with_changes(data, **{"out.bias": np.zeros(2, np.float64)}),
    "wrong shape": lambda data: with_changes(data, **{"out.weight": np.zeros((2, 127), np.float32)}),
    "nan": lambda data: with_changes(data, **{"norm.mean": np.full(128, np.nan, np.float32)}),
    "zero std": lambda data: with_changes(data, **{"norm.std": np.zeros(128, np.float32)}),
}


@pytest.mark.parametrize("case", list(IMPORT_CASES))
def test_malformed_import_is_422(client: TestClient, case: str) -> None:
    body = IMPORT_CASES[case](exported(client))
    assert_problem(client.put("/v1/heads/imported", content=body), 422)
    assert_problem(client.get("/v1/heads/imported"), 404)


def test_import_errors_other_than_the_file(client: TestClient) -> None:
    assert_problem(client.put("/v1/heads/imported", content=b""), 400)
    assert_problem(client.put("/v1/heads/bad name", content=exported(client)), 422)


def test_the_service_is_healthy_afterwards(client: TestClient, tmp_path: Path) -> None:
    assert client.get("/readyz").status_code == 200
    assert client.get("/healthz").status_code == 200
    names = [h["name"] for h in client.get("/v1/heads").json()["data"]]
    assert names == ["at-limit", "good", "short"]
    head = heads.from_safetensors(exported(client))
    assert head.classes == ("a", "b")
    r = client.post("/v1/heads/good/classify", content=WAV, headers={"content-type": "audio/wav"})
    assert r.status_code == 200 and len(r.json()["data"][0]["labels"]) == 2


def body_text(**fields: str) -> bytes:
    """A training body whose fields are given as JSON text (what json.dumps would not write)."""
    parts = {
        "name": '"parsed"',
        "labels": '["a", "b", "a", "b"]',
        "embeddings": json.dumps(GOOD["embeddings"]),
    }
    parts |= fields
    return ("{" + ", ".join(f'"{k}": {v}' for k, v in parts.items()) + "}").encode()


ROW = ", ".join(["0.5"] * 128)
PARSE_CASES = {  # each refused while the body is parsed, naming the row, label or field
    "a short first row": (
        body_text(embeddings=f"[[0], [{ROW}]]"),
        "embeddings[0] holds 1 number; every row holds 128",
    ),
    "a long row": (
        body_text(embeddings=f"[[{ROW}], [{ROW}, 1]]"),
        "embeddings[1] holds more than 128 numbers",
    ),
    "a string in a row": (body_text(embeddings=f'[["x", {ROW}]]'), "embeddings[0] holds a string"),
    "a nested row": (body_text(embeddings=f"[[{ROW}], [[{ROW}]]]"), "embeddings[1] holds a list"),
    "not rows": (body_text(embeddings=f"[{ROW}]"), r"embeddings\[0\] must be a list of 128 numbers"),
    "embeddings an object": (body_text(embeddings='{"a": 1}'), "`embeddings` must be a list of rows"),
    "a huge value": (body_text(embeddings=f"[[1e300, {ROW[5:]}]]"), r"embeddings\[0\] holds values beyond"),
    "1e400": (body_text(embeddings=f"[[1e400, {ROW[5:]}]]"), "not valid JSON.*overflow"),
    "Infinity": (body_text(embeddings=f"[[Infinity, {ROW[5:]}]]"), "not valid JSON.*Infinity"),
    "a label not a string": (body_text(labels='["a", 2]'), r"labels\[1\] must be a string"),
    "a control character": (body_text(labels='["a", "b\\u0007"]'), r"labels\[1\]: .*control"),
    "a label of 257 characters": (
        body_text(labels=json.dumps(["a", "x" * 257])),
        r"labels\[1\]: .*at most 256",
    ),
    "a field twice": (body_text()[:-1] + b', "labels": ["a", "b"]}', "gives `labels` twice"),
    "an unknown field": (body_text(colour='"red"'), "unknown field `colour`"),
    "deep features": (body_text(features="[" * 100 + "]" * 100), "`features` is larger than any valid"),
    "wide features": (
        body_text(features=json.dumps({f"k{i}": i for i in range(100)})),
        "`features` is larger",
    ),
    "one row": (body_text(embeddings=f"[[{ROW}]]", labels='["a"]'), "at least 2 embeddings and 2 labels"),
    "no labels": (b'{"name": "x", "embeddings": []}', r"\['labels'\] missing"),
    "truncated": (body_text()[:-20], "not valid JSON.*premature EOF"),
    "trailing garbage": (body_text() + b" {}", "not valid JSON"),
}


@pytest.mark.parametrize("case", list(PARSE_CASES))
def test_json_bodies_are_refused_while_parsed_naming_what(client: TestClient, case: str) -> None:
    body, detail = PARSE_CASES[case]
    problem = assert_problem(
        client.post("/v1/heads", content=body, headers={"content-type": "application/json"}), 422
    )
    assert problem["type"].endswith(":invalid-parameter")
    assert detail in problem["detail"] or re.search(detail, problem["detail"]), problem["detail"]
    assert_problem(client.get("/v1/heads/parsed"), 404)


def test_the_json_fields_text_is_what_the_schema_accepts(client: TestClient) -> None:
    body = body_text(name='"ints-ok"', embeddings=json.dumps(np.ones((4, 128), int).tolist()), kind='"mlp"')
    r = client.post("/v1/heads", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 201 and r.json()["kind"] == "mlp" and r.json()["num_examples"] == 4


def test_a_json_body_over_max_json_bytes_is_413(heads_store: dict[str, Any]) -> None:
    body = json.dumps({**GOOD, "name": "big-body", "embeddings": RNG.standard_normal((200, 128)).tolist()})
    with running_app(**heads_store, max_json_bytes=100_000) as c:
        declared = assert_problem(c.post("/v1/heads", content=body, headers=JSON_TYPE), 413)
        assert declared["limit"] == "max_json_bytes" and "send fewer rows" in declared["detail"]

        def chunks() -> Iterator[bytes]:
            data = body.encode()
            for i in range(0, len(data), 30_000):
                yield data[i : i + 30_000]

        streamed = assert_problem(c.post("/v1/heads", content=chunks(), headers=JSON_TYPE), 413)
        assert streamed["limit"] == "max_json_bytes"
        assert_problem(c.get("/v1/heads/big-body"), 404)


JSON_TYPE = {"content-type": "application/json"}


def test_a_body_of_many_feeds_in_one_piece_trains(client: TestClient) -> None:
    """A body several times ijson's feed size, arriving in one piece (the test client sends it
    so): parsed whole, the end of the body told once."""
    x = RNG.standard_normal((48, 128)) + np.repeat(np.eye(2, 128) * 3, 24, axis=0)
    body = json.dumps({"name": "one-piece", "embeddings": x.tolist(), "labels": ["a", "b"] * 24})
    body = body.replace(", ", "," + " " * 200)  # spaces: 4 feeds' worth, rows within the limit
    assert len(body) > 4 * (256 << 10)
    r = client.post("/v1/heads", content=body, headers=JSON_TYPE)
    assert r.status_code == 201, r.text
    assert r.json()["num_examples"] == 48
