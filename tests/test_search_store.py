"""vggish.search: both collection stores (SQLite in a data directory, PostgreSQL + pgvector on a
real server) through one suite, every ranking and score checked against exact cosines computed
here in plain NumPy (float64); processes that share the embedded store; real ``kill -9`` of
writers in the middle of adds; the HNSW path's recall; ``vggish extract`` folders as items."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from vggish.errors import InvalidInputError, LimitExceededError
from vggish.heads import FeatureSpec
from vggish.search import (
    BaseCollectionStore,
    CollectionNotFoundError,
    FeaturesMismatchError,
    Item,
    ItemNotFoundError,
    Query,
    SqliteCollectionStore,
    StoreLimits,
    open_collections,
)

REPO = Path(__file__).resolve().parents[1]
SPEC = FeatureSpec("random", 0.96, True, "reference")


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store starts empty: a data directory, or a new PostgreSQL database with pgvector."""
    if request.param == "sqlite":
        return str(tmp_path / "data")
    url: str = request.getfixturevalue("pgvector_url")
    return url


def make_items(rng: np.random.Generator, count: int, prefix: str = "i", most: int = 6) -> list[Item]:
    return [
        Item.of(f"{prefix}{n}", rng.standard_normal((int(rng.integers(1, most)), 128)), metadata={"n": n})
        for n in range(count)
    ]


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def exact_clip(
    items: list[Item], q: np.ndarray, k: int, exclude: str | None = None
) -> list[tuple[str, float]]:
    """Items by the cosine of their mean segment embedding with the mean query vector (float64)."""
    scored = [
        (it.id, float(unit(it.embeddings.astype(np.float64).mean(0)) @ unit(q.astype(np.float64).mean(0))))
        for it in items
        if it.id != exclude
    ]
    return sorted(scored, key=lambda p: -p[1])[:k]


def exact_segment(items: list[Item], q: np.ndarray, k: int, exclude: str | None = None) -> list[tuple]:
    """Items by their best (segment, query segment) cosine, with that pair's indices (float64)."""
    scored = []
    for it in items:
        if it.id == exclude:
            continue
        sims = unit(it.embeddings) @ unit(q).T
        seg, qi = np.unravel_index(np.argmax(sims), sims.shape)
        scored.append((it.id, float(sims[seg, qi]), int(seg), int(qi)))
    return sorted(scored, key=lambda p: -p[1])[:k]


def test_add_search_get_delete_match_numpy(location: str) -> None:
    store = open_collections(location)
    assert store.list() == []
    rng = np.random.default_rng(0)
    items = make_items(rng, 60)
    result = store.add("sounds", items, SPEC)
    assert result.created and result.replaced == () and result.warning is None
    info = store.get("sounds")
    assert (info.name, info.items, info.segments, info.features) == (
        "sounds", 60, sum(len(i.embeddings) for i in items), SPEC
    )  # fmt: skip
    q = rng.standard_normal(128)
    got = store.search("sounds", Query.embedding(q), k=7)
    want = exact_clip(items, q[None], 7)
    assert [m.id for m in got] == [w[0] for w in want]
    np.testing.assert_allclose([m.score for m in got], [w[1] for w in want], atol=1e-5)
    assert got[0].metadata == {"n": int(got[0].id[1:])} and got[0].segment is None

    qs = rng.standard_normal((3, 128))
    times = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.5]])
    got = store.search("sounds", Query.segments(qs, times), k=5, level="segment")
    want = exact_segment(items, qs, 5)
    assert [m.id for m in got] == [w[0] for w in want]
    np.testing.assert_allclose([m.score for m in got], [w[1] for w in want], atol=1e-5)
    for m, (item_id, _, seg, qi) in zip(got, want, strict=True):
        item = items[int(item_id[1:])]
        assert m.segment is not None and m.query_segment is not None
        assert (m.segment.index, m.segment.start, m.segment.end) == (seg, *item.timestamps[seg])
        assert (m.query_segment.index, m.query_segment.start, m.query_segment.end) == (qi, *times[qi])

    single = store.search("sounds", Query.embedding(q), k=3, level="segment")
    assert [m.id for m in single] == [w[0] for w in exact_segment(items, q[None], 3)]
    assert all(m.query_segment is None for m in single)  # a bare vector has no segment to name

    by_id = store.search("sounds", "i4", k=4, level="segment")
    assert [m.id for m in by_id] == [w[0] for w in exact_segment(items, items[4].embeddings, 4, exclude="i4")]
    by_id = store.search("sounds", "i4", k=4)
    assert [m.id for m in by_id] == [w[0] for w in exact_clip(items, items[4].embeddings, 4, exclude="i4")]

    stored = store.get_item("sounds", "i9")
    np.testing.assert_array_equal(stored.embeddings, items[9].embeddings)  # float32, exactly
    np.testing.assert_array_equal(stored.timestamps, items[9].timestamps)

    store.delete_item("sounds", "i9")
    with pytest.raises(ItemNotFoundError):
        store.delete_item("sounds", "i9")
    with pytest.raises(ItemNotFoundError):
        store.get_item("sounds", "i9")
    rest = [i for i in items if i.id != "i9"]
    assert [m.id for m in store.search("sounds", Query.embedding(q), k=60)] == [
        w[0] for w in exact_clip(rest, q[None], 60)
    ]
    assert store.get("sounds").items == 59
    store.delete("sounds")
    for operation in (
        lambda: store.get("sounds"),
        lambda: store.search("sounds", Query.embedding(q)),
        lambda: store.delete("sounds"),
    ):
        with pytest.raises(CollectionNotFoundError):
            operation()
    assert store.list() == []


def test_an_existing_id_is_replaced(location: str) -> None:
    store = open_collections(location)
    rng = np.random.default_rng(1)
    items = make_items(rng, 10)
    store.add("c", items, SPEC)
    new = Item.of("i3", rng.standard_normal((2, 128)), metadata={"v": 2})
    result = store.add("c", [new, Item.of("fresh", rng.standard_normal((1, 128)))], SPEC)
    assert not result.created and result.replaced == ("i3",)
    info = store.get("c")
    now = [new if i.id == "i3" else i for i in items]
    assert info.items == 11
    np.testing.assert_array_equal(store.get_item("c", "i3").embeddings, new.embeddings)
    assert store.get_item("c", "i3").metadata == {"v": 2}
    q = new.embeddings.mean(0)
    assert store.search("c", Query.embedding(q), k=1)[0].id == "i3"
    everything = store.search("c", Query.embedding(rng.standard_normal(128)), k=100)
    assert sorted(m.id for m in everything) == sorted([i.id for i in now] + ["fresh"])


def test_features_are_recorded_and_other_ones_refused_unless_forced(location: str) -> None:
    store = open_collections(location)
    rng = np.random.default_rng(2)
    store.add("c", make_items(rng, 3), SPEC)
    other = FeatureSpec("random", 0.48, True, "reference")
    with pytest.raises(FeaturesMismatchError, match="hop differs") as caught:
        store.add("c", make_items(rng, 2, "j"), other)
    assert caught.value.differences == ["hop"] and store.get("c").items == 3  # nothing written
    unpadded = store.add("c", make_items(rng, 1, "p"), FeatureSpec("random", 0.96, False, "reference"))
    assert unpadded.warning is None  # padding only decides whether a short clip has an example
    forced = store.add("c", make_items(rng, 2, "j"), other, force=True)
    assert forced.warning is not None and "(forced)" in forced.warning and store.get("c").items == 6
    unknown = store.add("c", make_items(rng, 1, "u"), FeatureSpec())
    assert unknown.warning is not None and "not compared" in unknown.warning
    made = store.add("anon", make_items(rng, 1), FeatureSpec())
    assert made.created and made.warning is not None and "does not record" in made.warning
    assert store.get("anon").features == FeatureSpec()


def test_bad_input_is_refused_before_anything_is_written(location: str) -> None:
    store = open_collections(location)
    good = [1.0] * 128
    for bad, match in [
        ([[1.0] * 127], r"\(N >= 1, 128\)"),
        ([], r"\(N >= 1, 128\)"),
        ([[float("nan")] * 128], "NaN"),
        ([[float("inf")] + [0.0] * 127], "NaN or infinite"),
        ([[0.0] * 128], "zero vector"),
        ([[1e7] * 128], "within"),
    ]:
        with pytest.raises(InvalidInputError, match=match):
            Item.of("x", bad)
    for bad_id in ("", "   ", "x" * 257, "tab\there", "\ud800"):
        with pytest.raises(InvalidInputError, match="item id"):
            Item.of(bad_id, [good])
    with pytest.raises(InvalidInputError, match="timestamps"):
        Item.of("x", [good, good], [[0.0, 1.0]])
    with pytest.raises(InvalidInputError, match="timestamps"):
        Item.of("x", [good], [[2.0, 1.0]])
    with pytest.raises(InvalidInputError, match="metadata"):
        Item.of("x", [good], metadata={"big": "y" * 5000})
    for name in ("..", "bad name", "x" * 65, ""):
        with pytest.raises(InvalidInputError, match="collection name"):
            store.add(name, [Item.of("x", [good])])
    with pytest.raises(InvalidInputError, match="given twice"):
        store.add("c", [Item.of("x", [good]), Item.of("x", [good])])
    with pytest.raises(InvalidInputError, match="no item"):
        store.add("c", [])
    assert store.list() == []


def test_limits(location: str) -> None:
    limits = StoreLimits(collections=2, items=5, segments=3, k=4, query_segments=2)
    store = open_collections(location, limits)
    rng = np.random.default_rng(3)
    store.add("a", make_items(rng, 5, most=3), SPEC)
    with pytest.raises(LimitExceededError, match="search_max_items") as caught:
        store.add("a", make_items(rng, 1, "extra", most=3), SPEC)
    assert caught.value.limit == "search_max_items" and store.get("a").items == 5
    store.add("a", make_items(rng, 1, most=3), SPEC)  # a replacement adds no item
    with pytest.raises(LimitExceededError, match="search_max_segments"):
        store.add("a", [Item.of("long", rng.standard_normal((4, 128)))], SPEC)
    store.add("b", make_items(rng, 1, most=3), SPEC)
    with pytest.raises(LimitExceededError, match="search_max_collections"):
        store.add("c", make_items(rng, 1, most=3), SPEC)
    with pytest.raises(LimitExceededError, match="search_max_k"):
        store.search("a", Query.embedding(rng.standard_normal(128)), k=5)
    with pytest.raises(InvalidInputError, match="k must be"):
        store.search("a", Query.embedding(rng.standard_normal(128)), k=0)
    with pytest.raises(LimitExceededError, match="search_max_query_segments"):
        store.search("a", Query.segments(rng.standard_normal((3, 128))), k=2, level="segment")
    assert (
        len(store.search("a", Query.segments(rng.standard_normal((3, 128))), k=2)) == 2
    )  # clip level: the mean
    with pytest.raises(InvalidInputError, match="level"):
        store.search("a", Query.embedding(rng.standard_normal(128)), level="frame")  # type: ignore[arg-type]


def test_list_is_in_byte_order(location: str) -> None:
    store = open_collections(location)
    names = ["b", "B", "a-1", "a_1", "a.1", "0", "Z", "_"]
    for name in names:
        store.add(name, [Item.of("x", [[1.0] * 128])], SPEC)
    assert [i.name for i in store.list()] == sorted(names)


def test_threads_adding_and_searching_at_once(location: str) -> None:
    store = open_collections(location)
    rng = np.random.default_rng(4)
    batches = [make_items(rng, 20, f"t{t}-") for t in range(4)]
    errors: list[BaseException] = []

    def work(batch: list[Item]) -> None:
        try:
            for n in range(0, 20, 5):
                store.add("c", batch[n : n + 5], SPEC)
                store.search("c", Query.embedding(batch[n].embeddings[0]), k=3, level="segment")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    items = [i for b in batches for i in b]
    assert store.get("c").items == 80
    q = rng.standard_normal(128)
    assert [m.id for m in store.search("c", Query.embedding(q), k=10)] == [
        w[0] for w in exact_clip(items, q[None], 10)
    ]


# ---------------------------------------------------------------------------------------------
# The embedded store across processes (service workers, the CLI): each keeps an index in memory.

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from vggish.heads import FeatureSpec
    from vggish.search import Item, open_collections

    store = open_collections(sys.argv[1])
    action = sys.argv[2]
    if action == "add":
        rng = np.random.default_rng(int(sys.argv[3]))
        ids = sys.argv[4].split(",")
        spec = FeatureSpec("random", 0.96, True, "reference")
        store.add("c", [Item.of(i, rng.standard_normal((3, 128))) for i in ids], spec)
    elif action == "delete-item":
        store.delete_item("c", sys.argv[3])
    elif action == "drop":
        store.delete("c")
    """
)


def other_process(location: str, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", WRITER, location, *args], env=env, check=True, capture_output=True)


def test_an_embedded_index_follows_other_processes_writes(tmp_path: Path) -> None:
    location = str(tmp_path / "data")
    store = open_collections(location)
    rng = np.random.default_rng(5)
    mine = make_items(rng, 5)
    store.add("c", mine, SPEC)
    q = rng.standard_normal(128)
    assert len(store.search("c", Query.embedding(q), k=50)) == 5  # the index is built now
    other_process(location, "add", "7", "o1,o2,i2")  # adds two and replaces i2
    other_process(location, "delete-item", "i0")
    rng7 = np.random.default_rng(7)  # as the other process drew them
    theirs = {item_id: Item.of(item_id, rng7.standard_normal((3, 128))) for item_id in ("o1", "o2", "i2")}
    expected = [i for i in mine if i.id not in ("i0", "i2")] + list(theirs.values())
    got = store.search("c", Query.embedding(q), k=50)
    want = exact_clip(expected, q[None], 50)
    assert [m.id for m in got] == [w[0] for w in want]
    np.testing.assert_allclose([m.score for m in got], [w[1] for w in want], atol=1e-5)
    other_process(location, "drop")
    with pytest.raises(CollectionNotFoundError):
        store.search("c", Query.embedding(q))
    other_process(location, "add", "8", "n1")  # the name made again: a new collection
    assert [m.id for m in store.search("c", Query.embedding(q), k=50)] == ["n1"]


def test_an_index_behind_pruned_removals_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vggish.search import sqlite

    monkeypatch.setattr(sqlite, "KEEP_REMOVED", 2)
    location = str(tmp_path / "data")
    reader, writer = open_collections(location), open_collections(location)
    rng = np.random.default_rng(6)
    items = make_items(rng, 8)
    writer.add("c", items, SPEC)
    q = rng.standard_normal(128)
    reader.search("c", Query.embedding(q), k=1)
    for n in range(5):
        writer.delete_item("c", f"i{n}")
    left = items[5:]
    got = reader.search("c", Query.embedding(q), k=10)
    assert [m.id for m in got] == [w[0] for w in exact_clip(left, q[None], 10)]


def test_a_corrupt_database_is_a_runtime_error(tmp_path: Path) -> None:
    (tmp_path / "search.sqlite3").write_bytes(b"not a database" * 100)
    with pytest.raises(RuntimeError, match="search database"):
        SqliteCollectionStore(tmp_path).list()


def test_open_collections_chooses_the_backend(tmp_path: Path) -> None:
    store = open_collections(tmp_path)
    assert isinstance(store, SqliteCollectionStore) and store.path == tmp_path / "search.sqlite3"
    from vggish.search.postgres import PostgresCollectionStore

    pg = open_collections("postgresql://me:s3cret@db.internal:6543/x", ef_search=77)
    assert isinstance(pg, PostgresCollectionStore) and pg.ef_search == 77
    assert "s3cret" not in repr(pg) and pg.location == "postgresql://me@db.internal:6543/x"
    with pytest.raises(InvalidInputError, match="'mysql' is not supported"):
        open_collections("mysql://me@db/x")


# ---------------------------------------------------------------------------------------------
# PostgreSQL: the HNSW path (collections above exact_max) and its recall; replicas share it.


def clustered(rng: np.random.Generator, n: int, clusters: int = 40, sigma: float = 0.1) -> np.ndarray:
    centers = unit(rng.standard_normal((clusters, 128)))
    return centers[rng.integers(0, clusters, n)] + sigma * rng.standard_normal((n, 128))


def test_postgres_hnsw_recall_against_numpy(pgvector_url: str) -> None:
    from vggish.search.postgres import PostgresCollectionStore

    rng = np.random.default_rng(7)
    x = clustered(rng, 3000)
    items = [Item.of(f"v{n}", x[n : n + 1]) for n in range(len(x))]
    hnsw = PostgresCollectionStore(pgvector_url, exact_max=0)
    for n in range(0, len(items), 500):
        hnsw.add("big", items[n : n + 500], SPEC)
    hnsw.add("small", items[:50], SPEC)  # a small collection beside it in the same tables
    queries = clustered(rng, 30)
    hits = 0
    for q in queries:
        got = hnsw.search("big", Query.embedding(q), k=10)
        want = exact_clip(items, q[None], 10)
        hits += len({m.id for m in got} & {w[0] for w in want})
        assert len(got) == 10
    assert hits / (10 * len(queries)) >= 0.9
    exact = PostgresCollectionStore(pgvector_url)  # "small" is under exact_max: searched exactly
    for q in queries[:5]:
        got = exact.search("small", Query.embedding(q), k=10)
        assert [m.id for m in got] == [w[0] for w in exact_clip(items[:50], q[None], 10)]
        got = exact.search("small", Query.embedding(q), k=5, level="segment")
        assert [m.id for m in got] == [w[0] for w in exact_segment(items[:50], q[None], 5)]
    seg = hnsw.search("big", Query.segments(queries[:3]), k=10, level="segment")
    want = exact_segment(items, queries[:3], 10)
    assert len({m.id for m in seg} & {w[0] for w in want}) >= 8


def test_postgres_replicas_share_collections(pgvector_url: str) -> None:
    first, second = open_collections(pgvector_url), open_collections(pgvector_url)
    rng = np.random.default_rng(8)
    first.add("shared", make_items(rng, 4), SPEC)
    assert second.get("shared").items == 4
    second.delete_item("shared", "i1")
    assert sorted(m.id for m in first.search("shared", Query.embedding(rng.standard_normal(128)), k=9)) == [
        "i0", "i2", "i3"
    ]  # fmt: skip


def test_an_unreachable_server_is_a_runtime_error_without_the_password() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = open_collections(f"postgresql://me:s3cret-pw@127.0.0.1:{port}/x")
    with pytest.raises(RuntimeError, match="cannot reach the search database") as caught:
        store.list()
    assert "s3cret-pw" not in str(caught.value)


# ---------------------------------------------------------------------------------------------
# kill -9: writers log "begin N" before each add of item wN-k and "done N" after it returns.

HAMMER = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from vggish.heads import FeatureSpec
    from vggish.search import Item, open_collections

    store = open_collections(sys.argv[1])
    prefix = sys.argv[2]
    log = os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    spec = FeatureSpec("random", 0.96, True, "reference")
    n = 0
    while True:
        rng = np.random.default_rng(int(prefix[1]) * 100_000 + n)
        items = [Item.of(f"{prefix}{n}-{j}", rng.standard_normal((4, 128))) for j in range(3)]
        os.write(log, f"begin {n}\\n".encode())
        store.add("crash", items, spec)
        os.write(log, f"done {n}\\n".encode())
        n += 1
        if n == 3:
            print("writing", flush=True)
    """
)


@pytest.mark.slow
def test_kill_9_during_adds_loses_nothing_acknowledged(location: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writers = {}
    for w in range(2):
        log = tmp_path / f"w{w}.log"
        proc = subprocess.Popen(
            [sys.executable, "-c", HAMMER, location, f"w{w}-", str(log)], env=env, stdout=subprocess.PIPE
        )
        writers[f"w{w}-"] = (proc, log)
    for proc, _ in writers.values():
        assert proc.stdout is not None and proc.stdout.readline() == b"writing\n"
    time.sleep(0.5)  # a moment mid-write; nothing is asserted on time
    for proc, _ in writers.values():
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert proc.stdout is not None
        proc.stdout.close()
    store = open_collections(location)
    if isinstance(store, SqliteCollectionStore):
        assert store.integrity_check() == "ok"
    logs = {}
    for prefix, (_, log) in writers.items():
        lines = log.read_text().split("\n")[:-1]
        done = [int(line.split()[1]) for line in lines if line.startswith("done")]
        begun = [int(line.split()[1]) for line in lines if line.startswith("begin")]
        logs[prefix] = (done, begun)
    found = set()  # looked up one by one: a fast machine writes more items than one search returns
    for prefix, (_, begun) in logs.items():
        for n in begun:
            for j in range(3):
                with contextlib.suppress(ItemNotFoundError):
                    found.add(store.get_item("crash", f"{prefix}{n}-{j}").id)
    assert len(found) == store.get("crash").items  # and so nothing that was never begun is there
    for prefix, (done, begun) in logs.items():
        assert done, "the writer acknowledged nothing"
        for n in done:  # every acknowledged add is there, whole and exact
            for j in range(3):
                rng = np.random.default_rng(int(prefix[1]) * 100_000 + n)  # as the writer drew them
                want = [rng.standard_normal((4, 128)) for _ in range(3)][j]
                item = store.get_item("crash", f"{prefix}{n}-{j}")
                np.testing.assert_array_equal(item.embeddings, want.astype(np.float32))
        in_flight = set(begun) - set(done)
        for n in in_flight:  # the add in flight at the kill: all of it or none of it
            present = {f"{prefix}{n}-{j}" in found for j in range(3)}
            assert len(present) == 1


# ---------------------------------------------------------------------------------------------
# `vggish extract` output folders as items.


def extract_folder(root: Path, fmt: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A folder as `vggish extract` writes it (its own writers), for three inputs."""
    from vggish.extract.outputs import PartWriter
    from vggish.features.logmel import example_timestamps
    from vggish.pipeline.driver import EmbeddingResult, write_npz

    rng = np.random.default_rng(9)
    made = {}
    root.mkdir()
    (root / "_manifest.json").write_text(
        json.dumps({"format": fmt, "hop_seconds": 0.96, "pad": False, "postprocess": False,
                    "resampler": "reference", "weights_sha256": "random", "manifest_version": 1})
    )  # fmt: skip
    writer = PartWriter(root, "parquet", 4) if fmt == "parquet" else None
    for rel, n in (("a/x.wav", 3), ("a/y.wav", 2), ("b/z.flac", 5)):
        result = EmbeddingResult(
            rng.standard_normal((n, 128)).astype(np.float32), example_timestamps(n), None, 16000, 1,
            n * 16000,
            str(root.parent / "audio" / rel),
        )  # fmt: skip
        if writer is not None:
            writer.add(result)
            made[rel] = (result.embeddings, result.timestamps)
        else:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            write_npz((root / rel).with_suffix(".npz"), result)
            made[rel.rsplit(".", 1)[0]] = (result.embeddings, result.timestamps)
    if writer is not None:
        writer.close()
    return made


@pytest.mark.parametrize("fmt", ["parquet", "npz"])
def test_extract_folders_become_items(tmp_path: Path, fmt: str) -> None:
    from vggish.search.extracted import read_features, read_items

    folder = tmp_path / "features"
    made = extract_folder(folder, fmt)
    assert read_features(folder) == FeatureSpec("random", 0.96, False, "reference")
    items = {i.id: i for i in read_items(folder)}
    assert sorted(items) == sorted(made)
    for item_id, (x, t) in made.items():
        np.testing.assert_array_equal(items[item_id].embeddings, x)
        np.testing.assert_array_equal(items[item_id].timestamps, t)
    with pytest.raises(ValueError, match=r"_manifest\.json"):
        read_features(tmp_path)


def test_the_api_is_the_base_class(location: str) -> None:
    assert isinstance(open_collections(location), BaseCollectionStore)
