"""Collections over real uvicorn servers on loopback: two server processes sharing one embedded
store (each with its own index in memory) see each other's adds and deletes at once, and the
Python client's calls (sync and async) return the library's types with NumPy's cosines."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from service_helpers import Server, clip, uvicorn_server

from vggish.client import AsyncClient, Client, ConflictError, NotFoundError
from vggish.heads import FeatureSpec
from vggish.search import Item, Query

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    data = tmp_path_factory.mktemp("shared-data")
    with uvicorn_server(VGGISH_DATA_DIR=str(data)) as one, uvicorn_server(VGGISH_DATA_DIR=str(data)) as two:
        yield one, two


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_two_processes_share_the_embedded_store(servers: tuple[Server, Server], tmp_path: Path) -> None:
    one, two = servers
    paths = []
    for n in range(3):
        path = tmp_path / f"clip{n}.wav"
        path.write_bytes(clip(2.0 + n, seed=10 + n))
        paths.append(path)
    with Client(one.base) as a, Client(two.base) as b:
        added = a.add_items("shared", paths[:2])
        assert added.created and added.collection.items == 2
        assert b.search("shared", paths[0], k=1)[0].id == "clip0.wav"  # the other process, at once
        b.add_items("shared", [paths[2]])
        found = a.search("shared", paths[2], k=3, level="segment")
        assert found[0].id == "clip2.wav" and found[0].score == pytest.approx(1.0, abs=1e-5)
        assert found[0].segment is not None and found[0].query_segment is not None
        b.delete_item("shared", "clip2.wav")
        assert [m.id for m in a.search("shared", paths[2], k=3)] == sorted(
            ["clip0.wav", "clip1.wav"], key=lambda i: -float(_clip_cosine(a, paths, i, paths[2]))
        )
        with pytest.raises(NotFoundError):
            a.delete_item("shared", "clip2.wav")
        b.delete_collection("shared")
        with pytest.raises(NotFoundError):
            a.search("shared", paths[0])


def _clip_cosine(client: Client, paths: list[Path], item: str, query: Path) -> float:
    e = client.embed(next(p for p in paths if p.name == item), pad=True).embeddings
    q = client.embed(query, pad=True).embeddings
    return float(unit(e.mean(0)) @ unit(q.mean(0)))


def test_client_calls_return_the_library_types(servers: tuple[Server, Server]) -> None:
    one, _ = servers
    rng = np.random.default_rng(0)
    items = [Item.of(f"v{n}", rng.standard_normal((3, 128)), metadata={"n": n}) for n in range(20)]
    spec = FeatureSpec(weights_sha256="0" * 64)
    with Client(one.base) as client:
        result = client.add_embeddings("vectors", items, features=spec)
        assert result.created and result.collection.features == spec and result.collection.segments == 60
        q = rng.standard_normal(128)
        got = client.search("vectors", Query.embedding(q), k=5)
        want = sorted(items, key=lambda i: -float(unit(i.embeddings.mean(0)) @ unit(q)))[:5]
        assert [m.id for m in got] == [i.id for i in want] and got[0].metadata == {"n": int(want[0].id[1:])}
        np.testing.assert_allclose(
            [m.score for m in got], [float(unit(i.embeddings.mean(0)) @ unit(q)) for i in want], atol=1e-5
        )
        like = client.search_item("vectors", "v3", k=2, level="segment")
        assert len(like) == 2 and "v3" not in {m.id for m in like}
        with pytest.raises(ConflictError):
            client.add_items("vectors", [clip(1.0)], ids=["audio"])  # the server's weights are "random"
        assert [c.name for c in client.list_collections()] == ["vectors"]

    async def run() -> None:
        async with AsyncClient(one.base) as client:
            info = await client.get_collection("vectors")
            assert info.items == 20
            segs = Query.segments(items[7].embeddings, items[7].timestamps)
            found = await client.search("vectors", segs, k=1, level="segment")
            assert found[0].id == "v7" and found[0].query_segment is not None
            added = await client.add_items("sounds", [clip(1.5, seed=3)], ids=["tone"])
            assert added.created and added.collection.features.weights_sha256 == "random"
            await client.delete_item("vectors", "v7")
            await client.delete_collection("sounds")
            assert [c.name for c in await client.list_collections()] == ["vectors"]

    asyncio.run(run())
