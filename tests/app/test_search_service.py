"""``/v1/collections`` in process (random weights), on SQLite and on PostgreSQL + pgvector: every
body form, scores checked against cosines computed here in NumPy from ``/v1/embeddings``' own
answers, the features check, and bad input and limits answered before any work."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import assert_problem, clip, running_app, signal_of

LIMITS = {
    "search_max_k": 20,
    "search_max_items_per_request": 5,
    "search_max_segments": 12,
    "search_max_query_segments": 4,
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings: dict[str, Any] = {"data_dir": tmp_path_factory.mktemp("search-data"), **LIMITS}
    if request.param == "postgres":
        pgvector_server = request.getfixturevalue("pgvector_server")
        from pgvector_server import fresh_vector_database

        with fresh_vector_database(pgvector_server) as url, running_app(database_url=url, **settings) as c:
            yield c
        return
    with running_app(**settings) as c:
        yield c


def unit(x: Any) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def embeddings_of(client: TestClient, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The clip's segment embeddings and timestamps as ``/v1/embeddings`` gives them (pad=true)."""
    r = client.post("/v1/embeddings?pad=true", files=[("file", ("x.wav", data))])
    assert r.status_code == 200, r.text
    d = r.json()["data"][0]
    return np.asarray(d["embeddings"], np.float64), np.asarray(d["timestamps"])


CLIPS = {"a.wav": clip(3.0, seed=1), "b.wav": clip(2.0, seed=2), "dogs/c.wav": clip(4.5, seed=3)}


@pytest.fixture(scope="module")
def sounds(client: TestClient) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Collection ``sounds``: three clips added as multipart (ids from fields); their embeddings."""
    files = [("file", (name.split("/")[-1], data)) for name, data in CLIPS.items()]
    r = client.post("/v1/collections/sounds/items", files=files, data={"id": list(CLIPS)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["created"] and [i["id"] for i in body["items"]] == list(CLIPS)
    model = client.get("/v1/models").json()["data"][0]
    assert body["collection"]["features"] == {
        "weights_sha256": model["weights"]["sha256"], "hop_seconds": 0.96, "pad": True,
        "resampler": "reference",
    }  # fmt: skip
    return {name: embeddings_of(client, data) for name, data in CLIPS.items()}


def test_audio_query_scores_are_numpy_cosines(client: TestClient, sounds: dict[str, Any]) -> None:
    query = clip(2.5, seed=7)
    q, qt = embeddings_of(client, query)
    r = client.post("/v1/collections/sounds/search?k=3", files=[("file", ("q.wav", query))])
    assert r.status_code == 200, r.text
    body = r.json()
    want = sorted(
        ((n, float(unit(e.mean(0)) @ unit(q.mean(0)))) for n, (e, _) in sounds.items()), key=lambda p: -p[1]
    )
    assert [x["id"] for x in body["results"]] == [n for n, _ in want] and body["level"] == "clip"
    np.testing.assert_allclose([x["score"] for x in body["results"]], [s for _, s in want], atol=1e-5)

    r = client.post("/v1/collections/sounds/search?k=2&level=segment", files=[("file", ("q.wav", query))])
    results = r.json()["results"]
    best = []
    for name, (e, t) in sounds.items():
        sims = unit(e) @ unit(q).T
        i, j = np.unravel_index(np.argmax(sims), sims.shape)
        best.append((float(sims[i, j]), name, list(t[i]), list(qt[j])))
    best.sort(key=lambda p: -p[0])
    assert [x["id"] for x in results] == [b[1] for b in best[:2]]
    for x, (score, _, seg, qseg) in zip(results, best, strict=False):
        assert x["score"] == pytest.approx(score, abs=1e-5)
        assert [x["segment"]["start"], x["segment"]["end"]] == pytest.approx(seg)
        assert [x["query_segment"]["start"], x["query_segment"]["end"]] == pytest.approx(qseg)


def test_a_clip_finds_itself_and_other_query_forms(client: TestClient, sounds: dict[str, Any]) -> None:
    e, t = sounds["b.wav"]
    r = client.post(
        "/v1/collections/sounds/search?k=1&level=segment",
        content=CLIPS["b.wav"],
        headers={"content-type": "audio/wav"},
    )
    assert r.json()["results"][0]["id"] == "b.wav" and r.json()["results"][0]["score"] == pytest.approx(
        1.0, abs=1e-5
    )
    r = client.post("/v1/collections/sounds/search?k=1", json={"embedding": e[0].tolist()})
    assert r.json()["results"][0]["id"] == "b.wav"
    r = client.post(
        "/v1/collections/sounds/search?k=3&level=segment",
        json={"embeddings": e.tolist(), "timestamps": t.tolist()},
    )
    top = r.json()["results"][0]
    assert top["id"] == "b.wav" and top["score"] == pytest.approx(1.0, abs=1e-5)
    assert top["segment"]["index"] == top["query_segment"]["index"]
    r = client.post("/v1/collections/sounds/search?k=5", json={"id": "b.wav"})
    assert [x["id"] for x in r.json()["results"]] == [
        n
        for n, _ in sorted(
            ((n, float(unit(x.mean(0)) @ unit(e.mean(0)))) for n, (x, _) in sounds.items() if n != "b.wav"),
            key=lambda p: -p[1],
        )
    ]
    samples = {
        "inputs": [{"samples": signal_of(2.0, 16000, seed=2)[:, 0].round(4).tolist(), "sample_rate": 16000}]
    }
    r = client.post("/v1/collections/sounds/search?k=1", json=samples)
    assert r.status_code == 200 and r.json()["results"][0]["id"] == "b.wav"


def test_other_body_forms_add_items(client: TestClient, sounds: dict[str, Any]) -> None:
    r = client.post(
        "/v1/collections/more/items?id=raw-one", content=CLIPS["a.wav"], headers={"content-type": "audio/wav"}
    )
    assert r.status_code == 200 and r.json()["items"] == [{"id": "raw-one", "segments": 3, "replaced": False}]
    audio = base64.b64encode(CLIPS["b.wav"]).decode()
    r = client.post(
        "/v1/collections/more/items", json={"inputs": [{"audio_base64": audio, "name": "from-json"}]}
    )
    assert r.status_code == 200 and r.json()["items"][0]["id"] == "from-json"
    e, t = sounds["dogs/c.wav"]
    sha = client.get("/v1/models").json()["data"][0]["weights"]["sha256"]
    features = {"weights_sha256": sha, "hop_seconds": 0.96, "pad": True, "resampler": "reference"}
    item = {
        "id": "made-elsewhere",
        "embeddings": e.tolist(),
        "timestamps": t.tolist(),
        "metadata": {"source": "extract"},
    }
    r = client.post("/v1/collections/more/items", json={"features": features, "items": [item]})
    assert r.status_code == 200, r.text
    assert r.json()["collection"]["items"] == 3 and r.json().get("warnings") is None
    r = client.post("/v1/collections/more/search?k=1", files=[("file", ("q.wav", CLIPS["dogs/c.wav"]))])
    top = r.json()["results"][0]
    assert top == {
        "id": "made-elsewhere",
        "score": pytest.approx(1.0, abs=1e-5),
        "metadata": {"source": "extract"},
    }
    r = client.post(
        "/v1/collections/more/items", json={"items": [{**item, "metadata": {"v": 2}}]}
    )  # no features
    assert r.json()["items"][0]["replaced"] and "not compared" in r.json()["warnings"][0]
    listed = {c["name"]: c for c in client.get("/v1/collections").json()["data"]}
    assert listed["more"]["items"] == 3 and listed["sounds"]["items"] == 3
    assert client.delete("/v1/collections/more/items/made-elsewhere").status_code == 204
    assert client.get("/v1/collections/more").json()["items"] == 2
    assert client.delete("/v1/collections/more").status_code == 204
    assert_problem(client.get("/v1/collections/more"), 404)


def test_ids_with_slashes_are_deleted_by_path(client: TestClient, sounds: dict[str, Any]) -> None:
    r = client.post(
        "/v1/collections/paths/items", files=[("file", ("c.wav", CLIPS["a.wav"]))], data={"id": "x/y z.wav"}
    )
    assert r.status_code == 200
    assert client.delete("/v1/collections/paths/items/x%2Fy%20z.wav").status_code == 204
    assert_problem(client.delete("/v1/collections/paths/items/x/y z.wav"), 404)["type"].endswith(
        "item-not-found"
    )


def test_other_weights_or_settings_are_409_unless_forced(client: TestClient, sounds: dict[str, Any]) -> None:
    for path in ("/v1/collections/sounds/items?hop=0.48", "/v1/collections/sounds/search?hop=0.48"):
        body = assert_problem(client.post(path, files=[("file", ("n.wav", CLIPS["a.wav"]))]), 409)
        assert body["type"].endswith("features-mismatch") and body["differences"] == ["hop"]
        assert (
            body["collection_features"]["hop_seconds"] == 0.96
            and body["used_features"]["hop_seconds"] == 0.48
        )
    r = client.post(
        "/v1/collections/sounds/search?hop=0.48&force=true", files=[("file", ("n.wav", CLIPS["a.wav"]))]
    )
    assert r.status_code == 200 and "(forced)" in r.json()["warnings"][0]
    other = {"weights_sha256": "0" * 64}
    body = {"items": [{"id": "z", "embeddings": [[1.0] * 128]}], "features": other}
    assert assert_problem(client.post("/v1/collections/sounds/items", json=body), 409)["differences"] == [
        "weights"
    ]
    body = {"embedding": [1.0] * 128, "features": other}
    assert_problem(client.post("/v1/collections/sounds/search", json=body), 409)
    assert client.get("/v1/collections/sounds").json()["items"] == 3


ROW = [0.5] * 128


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("items", {"items": [{"id": "x", "embeddings": [ROW[:-1]]}]}, 422, "128 numbers; one has 127"),
        ("items", {"items": [{"id": "x", "embeddings": [[*ROW, 1.0]]}]}, 422, "has 128 numbers"),
        ("items", {"items": [{"id": "x", "embeddings": [["a"] * 128]}]}, 422, "rows of numbers"),
        ("items", {"items": [{"id": "x", "embeddings": [[True] * 128]}]}, 422, "rows of numbers"),
        ("items", {"items": [{"id": "x", "embeddings": [[0.0] * 128]}]}, 422, "zero vector"),
        ("items", {"items": [{"id": "x", "embeddings": [[1e300] * 128]}]}, 422, "within"),
        ("items", {"items": [{"id": "x" * 257, "embeddings": [ROW]}]}, 422, "at most 256"),
        ("items", {"items": [{"id": 5, "embeddings": [ROW]}]}, 422, "id must be a string"),
        ("items", {"items": [{"id": "x", "embeddings": [ROW], "extra": 1}]}, 422, "unknown key 'extra'"),
        (
            "items",
            {"items": [{"id": "x", "embeddings": [ROW], "timestamps": [[0, 1], [1, 2]]}]},
            422,
            "timestamps",
        ),
        (
            "items",
            {"items": [{"id": "x", "embeddings": [ROW], "metadata": {"a": "b" * 5000}}]},
            422,
            "4096 bytes",
        ),
        (
            "items",
            {"items": [{"id": "x", "embeddings": [ROW]}, {"id": "x", "embeddings": [ROW]}]},
            422,
            "twice",
        ),
        ("items", {"items": []}, 422, "empty"),
        ("items", {"items": [{"id": "x"}]}, 422, "no embeddings"),
        ("items", {"things": []}, 422, "unknown key 'things'"),
        (
            "items",
            {"items": [{"id": str(n), "embeddings": [ROW]} for n in range(6)]},
            413,
            "search_max_items_per_request",
        ),
        ("items", {"items": [{"id": "x", "embeddings": [ROW] * 13}]}, 413, "search_max_segments"),
        ("items", {"items": [{"id": "x", "embeddings": [ROW]}], "features": {"hop": 1}}, 422, "unknown keys"),
        ("search", {"embedding": ROW[:5]}, 422, "128 numbers"),
        ("search", {"embedding": ROW, "id": "a.wav"}, 422, "exactly one"),
        ("search", {"embeddings": [ROW] * 5}, 413, "search_max_query_segments"),
        ("search", {"id": "nope"}, 404, "no item 'nope'"),
        ("search", {"nothing": 1}, 422, "unknown key"),
    ],
)
def test_bad_json_bodies(
    client: TestClient, sounds: dict[str, Any], path: str, body: Any, status: int, says: str
) -> None:
    r = client.post(f"/v1/collections/sounds/{path}", json=body)
    problem = assert_problem(r, status)
    assert says in problem["detail"], problem["detail"]
    assert client.get("/v1/collections/sounds").json()["items"] == 3  # nothing was written


def test_malformed_and_missing_bodies(client: TestClient, sounds: dict[str, Any]) -> None:
    for raw in (b'{"items": [{"id": "x", "embeddings": [[1, 2', b"[1, 2]", b"", b'{"items": [NaN]}', b"   "):
        r = client.post(
            "/v1/collections/sounds/items", content=raw, headers={"content-type": "application/json"}
        )
        assert r.status_code == 422, (raw, r.text)
    assert_problem(
        client.post("/v1/collections/sounds/items", content=b"x", headers={"content-type": "text/plain"}), 415
    )
    assert_problem(client.post("/v1/collections/sounds/items", files=[("file", ("e.wav", b""))]), 400)
    r = client.post(
        "/v1/collections/sounds/search",
        files=[("file", ("a.wav", CLIPS["a.wav"])), ("file", ("b.wav", CLIPS["b.wav"]))],
    )
    assert "one audio clip" in assert_problem(r, 422)["detail"]
    r = client.post(
        "/v1/collections/new/items", files=[("file", ("a.wav", CLIPS["a.wav"]))], data={"id": ["1", "2"]}
    )
    assert "one id per file" in assert_problem(r, 422)["detail"]
    r = client.post(
        "/v1/collections/new/items", content=CLIPS["a.wav"], headers={"content-type": "audio/wav"}
    )
    assert "?id=" in assert_problem(r, 422)["detail"]
    r = client.post("/v1/collections/new/items?pad=false", files=[("file", ("s.wav", clip(0.5)))])
    assert "pad=true" in assert_problem(r, 422)["detail"]
    assert_problem(client.get("/v1/collections/new"), 404)


def test_search_limits_and_unknown_names(client: TestClient, sounds: dict[str, Any]) -> None:
    assert (
        assert_problem(client.post("/v1/collections/sounds/search?k=21", json={"embedding": ROW}), 413)[
            "limit"
        ]
        == "search_max_k"
    )
    assert_problem(client.post("/v1/collections/sounds/search?k=0", json={"embedding": ROW}), 422)
    assert_problem(client.post("/v1/collections/sounds/search?level=frame", json={"embedding": ROW}), 422)
    r = client.post("/v1/collections/sounds/search?level=segment", files=[("file", ("long.wav", clip(6.0)))])
    assert assert_problem(r, 413)["limit"] == "search_max_query_segments"
    assert assert_problem(client.post("/v1/collections/absent/search", json={"embedding": ROW}), 404)[
        "type"
    ].endswith("collection-not-found")
    for method, path in (
        ("DELETE", "/v1/collections/absent"),
        ("DELETE", "/v1/collections/absent/items/x"),
        ("GET", "/v1/collections/absent"),
    ):
        assert_problem(client.request(method, path), 404)
    assert_problem(client.get("/v1/collections/bad%20name"), 422)
    assert_problem(client.post("/v1/collections/../search", json={"embedding": ROW}), 404)


def test_openapi_documents_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/v1/collections",
        "/v1/collections/{name}",
        "/v1/collections/{name}/items",
        "/v1/collections/{name}/search",
    } <= set(paths)
    body = paths["/v1/collections/{name}/items"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json", "audio/*"} <= set(body)
    assert json.dumps(body["application/json"]).count("EmbeddingsRequest") == 1
