"""vggish.heads.store: both stores of heads (SQLite in a data directory, PostgreSQL on a real
server) through one suite: the API, schema versions and upgrades, concurrency, and real
``kill -9`` of writers (and of the PostgreSQL server) in the middle of writes; pages, the bound on
the number of heads, and stores that cannot be written: a full database (SQLite's page limit), a
full volume (a real tmpfs, as root), a read-only folder, a PostgreSQL server gone."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from postgres_server import PostgresServer
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from vggish import heads
from vggish.errors import ConflictError, InvalidInputError, NotFoundError
from vggish.heads.store import (
    SCHEMA_VERSION,
    BaseHeadStore,
    HeadExistsError,
    HeadNotFoundError,
    HeadStore,
    StoreFullError,
    StoreUnavailableError,
    TooManyHeadsError,
    open_store,
)
from vggish.heads.store import sqlite as sqlite_backend

REPO = Path(__file__).resolve().parents[1]
SPEC = heads.FeatureSpec("random", 0.48, True, "fast")


def small_head(
    seed: int = 0, kind: heads.HeadKind = "linear", features: heads.FeatureSpec = SPEC
) -> heads.Head:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6, 128)).astype(np.float32)
    head, _ = heads.train(x, ["a", "b", "c"] * 2, kind=kind, features=features)
    return head


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store starts empty: a data directory, or the URL of a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "data")
    url: str = request.getfixturevalue("postgres_url")
    return url


def is_postgres(location: str) -> bool:
    return location.startswith("postgresql://")


@contextlib.contextmanager
def raw(location: str) -> Iterator[Any]:
    """A connection to the store's database that bypasses the store (autocommit)."""
    if is_postgres(location):
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            yield conn
    else:
        Path(location).mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(Path(location) / sqlite_backend.DB_NAME, isolation_level=None)
        try:
            yield conn
        finally:
            conn.close()


def set_schema_version(location: str, version: int) -> None:
    with raw(location) as conn:
        if is_postgres(location):
            conn.execute("UPDATE heads_schema SET version = %s", (version,))
        else:
            conn.execute(f"PRAGMA user_version = {version}")


def schema_version(location: str) -> int:
    """The schema version the database holds, read past the store (0: none yet)."""
    if not is_postgres(location):
        if not (Path(location) / sqlite_backend.DB_NAME).exists():
            return 0
        with raw(location) as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
    with raw(location) as conn:
        if conn.execute("SELECT to_regclass('heads_schema')").fetchone() == (None,):
            return 0
        row = conn.execute("SELECT version FROM heads_schema").fetchone()
        return 0 if row is None else int(row[0])


def assert_sound(location: str | Path) -> None:
    """SQLite's own check passes, and every head has its tensors."""
    location = str(location)
    with raw(location) as conn:
        if not is_postgres(location):
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM heads WHERE length(tensors) < 8").fetchone()[0] == 0


def test_save_get_list_load_delete(location: str) -> None:
    store = open_store(location)
    assert store.list() == []
    if not is_postgres(location):
        assert isinstance(store, HeadStore) and not store.path.exists()  # reading creates nothing
    head = small_head()
    record = store.save("one", head)
    assert (record.name, record.version, record.classes, record.num_examples, record.features) == (
        "one",
        1,
        ("a", "b", "c"),
        6,
        SPEC,
    )
    assert store.get("one") == record
    loaded_record, loaded = store.load("one")
    assert loaded_record == record and loaded.features == SPEC and loaded.metrics == head.metrics
    x = np.random.default_rng(1).standard_normal((3, 128)).astype(np.float32)
    np.testing.assert_array_equal(loaded.scores(x), head.scores(x))
    assert heads.from_safetensors(store.export("one")).classes == head.classes
    store.save("two", small_head(1, "mlp", heads.UNKNOWN_FEATURES))
    assert store.get("two").features == heads.UNKNOWN_FEATURES
    assert [r.name for r in store.list()] == ["one", "two"]
    store.delete("one")
    with pytest.raises(HeadNotFoundError):
        store.get("one")
    with pytest.raises(HeadNotFoundError):
        store.delete("one")
    with pytest.raises(HeadNotFoundError):
        store.export("one")
    assert [r.name for r in store.list()] == ["two"]
    assert_sound(location)


def test_errors_are_the_library_kinds(location: str) -> None:
    store = open_store(location)
    store.save("x", small_head())
    with pytest.raises(ConflictError):
        store.save("x", small_head())
    with pytest.raises(NotFoundError, match="no head named 'y'"):
        store.load("y")
    for name in ("..", "bad name", "x" * 65):
        with pytest.raises(InvalidInputError, match="head name"):
            store.save(name, small_head())


def test_names_are_taken_unless_replaced(location: str) -> None:
    store = open_store(location)
    store.save("x", small_head(0))
    with pytest.raises(HeadExistsError):
        store.save("x", small_head(1))
    assert store.get("x").version == 1  # the refused save changed nothing
    assert store.save("x", small_head(2), replace=True).version == 2
    third = small_head(3, "mlp", heads.FeatureSpec(weights_sha256="random"))
    assert store.save("x", third, replace=True).version == 3
    record, head = store.load("x")
    assert (record.version, record.kind, record.features) == (
        3,
        "mlp",
        heads.FeatureSpec(weights_sha256="random"),
    )
    np.testing.assert_array_equal(head.weights["out.weight"], third.weights["out.weight"])
    store.delete("x")
    assert store.save("x", small_head(4)).version == 1  # a deleted name starts again


def test_list_is_in_byte_order(location: str) -> None:
    store = open_store(location)
    names = ["b", "B", "a-1", "a_1", "a.1", "0", "Z", "_", "-"]
    for name in names:
        store.save(name, small_head())
    assert [r.name for r in store.list()] == sorted(names)


def test_schema_is_versioned_and_newer_ones_refused(location: str) -> None:
    store = open_store(location)
    assert schema_version(location) == 0  # nothing there yet
    store.open()
    assert schema_version(location) == SCHEMA_VERSION == 2
    open_store(location).open()  # already current: nothing to do
    if not is_postgres(location):
        with raw(location) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert sqlite_backend.migrate(conn) == SCHEMA_VERSION
    set_schema_version(location, SCHEMA_VERSION + 1)
    with pytest.raises(RuntimeError, match="schema 3; this code knows 2"):
        open_store(location).open()
    with pytest.raises(RuntimeError, match="schema"):
        open_store(location).list()


def old_file(head: heads.Head) -> bytes:
    """The head as a file written before heads recorded their features."""
    data = heads.to_safetensors(head)
    (n,) = np.frombuffer(data[:8], "<u8")
    meta = json.loads(data[8 : 8 + int(n)])["__metadata__"]
    del meta["features"]
    return bytes(save_safetensors(load_safetensors(data), metadata=meta))


def make_v1_database(location: str, head: heads.Head) -> None:
    """A schema-1 database (as the code before this change made it) holding one head, ``old``."""
    values = ("old", head.kind, json.dumps(list(head.classes)), 6, "null", "2024-01-01T00:00:00+00:00", 4)
    with raw(location) as conn:
        if is_postgres(location):
            from vggish.heads.store import postgres as postgres_backend

            conn.execute(postgres_backend.MIGRATIONS[0][0])
            conn.execute(
                "CREATE TABLE heads_schema (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), "
                "version integer NOT NULL)"
            )
            conn.execute("INSERT INTO heads_schema VALUES (true, 1)")
            marks = ", ".join(["%s"] * 8)
        else:
            conn.execute(sqlite_backend.MIGRATIONS[0][0])
            conn.execute("PRAGMA user_version = 1")
            marks = ", ".join("?" * 8)
        columns = "name, kind, classes, num_examples, metrics, created_at, version, tensors"
        conn.execute(f"INSERT INTO heads ({columns}) VALUES ({marks})", (*values, old_file(head)))


def test_a_schema_1_database_is_upgraded_and_its_heads_are_of_unknown_features(location: str) -> None:
    head = small_head(5, features=heads.UNKNOWN_FEATURES)
    make_v1_database(location, head)
    store = open_store(location)
    assert schema_version(location) == 1
    record, loaded = store.load("old")
    assert schema_version(location) == SCHEMA_VERSION
    assert (record.version, record.metrics, record.features) == (4, None, heads.UNKNOWN_FEATURES)
    assert loaded.features.unknown
    x = np.random.default_rng(2).standard_normal((2, 128)).astype(np.float32)
    np.testing.assert_array_equal(loaded.scores(x), head.scores(x))
    warning = heads.check_compatible(record.features, SPEC, name="old")
    assert warning is not None and "does not record its weights" in warning  # still usable, with a warning
    assert store.save("old", small_head(6), replace=True).version == 5
    assert store.get("old").features == SPEC


def test_concurrent_first_starts_migrate_once(location: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def first_start(k: int) -> None:
        try:
            store = open_store(location)  # a store per thread: as separate processes, nothing shared
            barrier.wait()
            store.open()
            store.save(f"h{k}", small_head())
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=first_start, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert schema_version(location) == SCHEMA_VERSION
    assert [r.name for r in open_store(location).list()] == [f"h{k}" for k in range(6)]


def test_a_corrupt_database_is_a_runtime_error(tmp_path: Path) -> None:
    (tmp_path / "heads.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(RuntimeError, match="heads database"):
        HeadStore(tmp_path).list()


def test_open_store_chooses_the_backend(tmp_path: Path) -> None:
    store = open_store(tmp_path / "data")
    assert isinstance(store, HeadStore) and store.path == tmp_path / "data" / "heads.sqlite3"
    assert isinstance(open_store(str(tmp_path)), HeadStore)
    pytest.importorskip("psycopg")
    from vggish.heads.store.postgres import PostgresHeadStore

    for url in (
        "postgresql://me:s3cret@db.internal:6543/heads",
        "postgres://me:s3cret@db.internal:6543/heads",
    ):
        pg = open_store(url)  # connects to nothing until used
        assert isinstance(pg, PostgresHeadStore) and isinstance(pg, BaseHeadStore)
        assert pg.location == "postgresql://me@db.internal:6543/heads"
        assert "s3cret" not in repr(pg)
    with pytest.raises(InvalidInputError, match="'mysql' is not supported"):
        open_store("mysql://me@db/heads")
    with pytest.raises(InvalidInputError, match="malformed PostgreSQL URL") as caught:
        open_store("postgresql://me:s3cret@db/heads?nonsense=1")
    assert "s3cret" not in str(caught.value)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed now: nothing listens on it


def test_an_unreachable_server_is_a_runtime_error_without_the_password() -> None:
    pytest.importorskip("psycopg")
    port = closed_port()
    store = open_store(f"postgresql://me:s3cret-pw@127.0.0.1:{port}/heads")
    for operation in (store.list, store.open, lambda: store.get("x"), lambda: store.save("x", small_head())):
        with pytest.raises(
            RuntimeError, match=f"cannot reach the heads database postgresql://me@127.0.0.1:{port}/heads"
        ):
            operation()
    with pytest.raises(RuntimeError) as caught:
        store.list()
    assert "s3cret-pw" not in str(caught.value) and "refused" in str(caught.value)


def test_a_wrong_password_is_a_runtime_error_without_the_password(postgres_server: PostgresServer) -> None:
    url = postgres_server.url().replace(postgres_server.password, "Wr0ng-pass")
    with pytest.raises(RuntimeError, match="password authentication failed") as caught:
        open_store(url).list()
    assert "Wr0ng-pass" not in str(caught.value) and postgres_server.password not in str(caught.value)


REPLICA = textwrap.dedent(
    """
    import sys
    import numpy as np
    from vggish import heads
    from vggish.heads.store import open_store

    x = np.random.default_rng(7).standard_normal((6, 128)).astype(np.float32)
    head, _ = heads.train(x, ["p", "q"] * 3, features=heads.FeatureSpec(weights_sha256="random"))
    record = open_store(sys.argv[1]).save("common", head, replace=True)
    print(record.version)
    """
)


@pytest.mark.slow
def test_replicas_share_one_postgres_store(postgres_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    here = open_store(postgres_url)
    assert here.list() == []
    for version in (1, 2):  # another process (a replica) saves; this one sees it at once
        out = subprocess.run(
            [sys.executable, "-c", REPLICA, postgres_url], env=env, capture_output=True, check=True
        )
        assert out.stdout.decode().strip() == str(version)
        record, head = here.load("common")
        assert (record.version, head.classes, record.features.weights_sha256) == (
            version,
            ("p", "q"),
            "random",
        )
    assert here.save("common", small_head(), replace=True).version == 3


@pytest.mark.slow
def test_concurrent_writers_and_deleters(location: str) -> None:
    store = open_store(location)
    errors: list[BaseException] = []
    head = small_head()

    def work(k: int) -> None:
        try:
            for i in range(15):
                store.save(f"h{(k + i) % 6}", head, replace=True)
                if i % 4 == 0:
                    with contextlib.suppress(HeadNotFoundError):
                        store.delete(f"h{(k * i) % 6}")
                store.list()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert_sound(location)
    for record in store.list():
        assert store.load(record.name)[1].classes == ("a", "b", "c")


def test_replacing_one_name_from_many_threads_counts_every_version(location: str) -> None:
    store = open_store(location)
    head = small_head()
    versions: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(10):
            version = store.save("same", head, replace=True).version
            with lock:
                versions.append(version)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == list(range(1, 41))  # atomic increments: no version lost or repeated
    assert store.get("same").version == 40


# ---------------------------------------------------------------------------------------------
# kill -9: writers log "begin OP" before each operation and "done OP" after it returns, so the
# state of every head each writer owns is known, but for the one operation in flight at the kill.

HAMMER = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from vggish import heads
    from vggish.heads.store import HeadNotFoundError, open_store

    store = open_store(sys.argv[1])
    prefix, rng = sys.argv[2], np.random.default_rng(int(sys.argv[3]))
    log = os.open(sys.argv[4], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    note = lambda line: os.write(log, (line + "\\n").encode())
    made = {}
    for kind in ("linear", "mlp"):
        x = rng.standard_normal((8, 128)).astype(np.float32)
        made[kind] = heads.train(x, ["a", "b", "c", "d"] * 2, kind=kind)[0]
    i = 0
    while True:
        # half the names are this writer's own (their state is checked), half are shared
        name = f"{prefix}{rng.integers(6)}" if rng.random() < 0.5 else f"shared{rng.integers(6)}"
        if rng.random() < 0.2:
            note(f"begin delete {name}")
            try:
                store.delete(name)
                note(f"done delete {name}")
            except HeadNotFoundError:
                note(f"done missing {name}")
        else:
            kind = "mlp" if i % 2 else "linear"
            note(f"begin save {name} {kind}")
            record = store.save(name, made[kind], replace=True)
            note(f"done save {name} {kind} {record.version}")
        i += 1
        if i == 20:
            print("writing", flush=True)
    """
)
State = tuple[str, int] | None  # (kind, version) of a stored head, or None when absent


def allowed_states(log: Path, prefix: str) -> dict[str, set[State]]:
    """For each of a writer's own heads: the states its log allows after a kill at any moment."""
    state: dict[str, State] = {}
    allowed: dict[str, set[State]] = {}
    lines = log.read_text().split("\n")[:-1]  # a line cut by the kill has no newline: dropped
    for line in lines:
        words = line.split()
        name = words[2]
        if not name.startswith(prefix):
            continue
        before = state.get(name)
        if words[:2] == ["begin", "save"]:
            allowed[name] = {before, (words[3], 1 if before is None else before[1] + 1)}
        elif words[:2] == ["begin", "delete"]:
            allowed[name] = {before, None}
        elif words[1] == "save":
            state[name] = (words[3], int(words[4]))
        else:
            state[name] = None
        if words[0] == "done":
            allowed[name] = {state[name]}
    return allowed


def check_after_crash(location: str, writers: dict[str, Path]) -> int:
    """Every head whole; each writer's own heads as its log allows. Returns the heads checked."""
    store = open_store(location)
    assert_sound(location)
    records = {r.name: r for r in store.list()}
    assert records, "the writers wrote nothing"
    for record in records.values():
        _, head = store.load(record.name)
        assert head.classes == ("a", "b", "c", "d") and head.kind == record.kind
        assert head.scores(np.zeros((1, 128), np.float32)).shape == (1, 4)
    checked = 0
    for prefix, log in writers.items():
        for name, states in allowed_states(log, prefix).items():
            record = records.get(name)
            found = None if record is None else (record.kind, record.version)
            assert found in states, f"{name}: {found} after the kill; the writer's log allows {states}"
            checked += 1
    return checked


def start_writers(
    location: str, tmp_path: Path, round_: int, count: int = 2
) -> dict[str, tuple[subprocess.Popen[bytes], Path]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writers = {}
    for k in range(count):
        prefix, log = f"r{round_}w{k}-", tmp_path / f"r{round_}w{k}.log"
        proc = subprocess.Popen(
            [sys.executable, "-c", HAMMER, location, prefix, str(10 * round_ + k), str(log)],
            env=env,
            stdout=subprocess.PIPE,
        )
        writers[prefix] = (proc, log)
    for proc, _ in writers.values():
        assert proc.stdout is not None and proc.stdout.readline() == b"writing\n"
    return writers


def kill_9(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()


@pytest.mark.slow
def test_kill_9_during_writes_leaves_every_head_whole_or_absent(location: str, tmp_path: Path) -> None:
    for round_ in range(3):
        writers = start_writers(location, tmp_path, round_)
        time.sleep(0.3 + 0.2 * round_)  # a different moment each round; nothing is asserted on time
        for proc, _ in writers.values():
            kill_9(proc)
            assert proc.returncode == -signal.SIGKILL
        assert check_after_crash(location, {p: log for p, (_, log) in writers.items()}) >= 2
    assert schema_version(location) == SCHEMA_VERSION


@pytest.mark.slow
def test_kill_9_of_the_postgres_server_loses_no_acknowledged_save(
    private_postgres: PostgresServer, tmp_path: Path
) -> None:
    location = private_postgres.url()
    for round_ in range(2):
        writers = start_writers(location, tmp_path, round_)
        time.sleep(0.5 + 0.3 * round_)
        assert private_postgres.kill_9() >= 2  # the postmaster and its backends, mid-transaction
        for proc, _ in writers.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)  # they fail on the lost connection, or are killed here
            kill_9(proc)
        private_postgres.start()  # crash recovery replays the WAL
        assert check_after_crash(location, {p: log for p, (_, log) in writers.items()}) >= 2


def test_a_count_beyond_64_bits_is_invalid_input_not_an_overflow(location: str) -> None:
    head = dataclasses.replace(small_head(), num_examples=10**30)
    with pytest.raises(InvalidInputError, match="num_examples"):
        open_store(location).save("big", head)
    assert open_store(location).list() == []


# --- pages, a bound on the number of heads, and a store that cannot be written -----------------


def test_pages_of_heads_by_name(location: str) -> None:
    store = open_store(location)
    head = small_head(7)
    names = ["B", "a", "a.2", "a_1", "z-9", "0"]
    for name in names:
        store.save(name, head)
    in_byte_order = sorted(names)  # "0" < "B" < "a" < "a.2" < "a_1" < "z-9"
    assert [r.name for r in store.list()] == in_byte_order
    assert [r.name for r in store.list(limit=2)] == in_byte_order[:2]
    assert [r.name for r in store.list(after="B", limit=3)] == in_byte_order[2:5]
    assert [r.name for r in store.list(after="a_1")] == ["z-9"]
    assert store.list(after="z-9") == []


def test_max_heads_refuses_a_new_name_only(location: str) -> None:
    store = open_store(location)
    for k in range(3):
        store.save(f"h{k}", small_head(k), max_heads=3)
    with pytest.raises(TooManyHeadsError, match="holds 3 heads") as caught:
        store.save("h3", small_head(3), max_heads=3)
    assert caught.value.max_heads == 3
    assert store.save("h1", small_head(4), replace=True, max_heads=3).version == 2  # replacing: fine
    store.delete("h0")
    assert store.save("h3", small_head(3), max_heads=3).version == 1
    assert [r.name for r in store.list()] == ["h1", "h2", "h3"]


class CappedStore(HeadStore):
    """A SQLite store whose database may not grow past ``pages`` pages (``PRAGMA
    max_page_count``, set on each connection): SQLite's own "database or disk is full"."""

    def __init__(self, data_dir: Path, pages: int) -> None:
        super().__init__(data_dir)
        self.pages = pages

    def _open(self, read_only: bool) -> sqlite3.Connection:
        conn = super()._open(read_only)
        conn.execute(f"PRAGMA max_page_count = {self.pages}")
        return conn


def fill(store: BaseHeadStore, head: heads.Head) -> int:
    """Saves heads until the store is full; how many fitted."""
    for k in range(10_000):
        try:
            store.save(f"h{k:04d}", head)
        except StoreFullError:
            return k
    raise AssertionError("the store never filled")


def big_head() -> heads.Head:
    x = np.random.default_rng(0).standard_normal((40, 128)).astype(np.float32)
    return heads.train(x, [f"class-{k}" for k in range(20)] * 2)[0]  # 11 KB of tensors


def test_a_full_database_refuses_writes_and_still_deletes(tmp_path: Path) -> None:
    """A database at SQLite's page limit (simulated with max_page_count): 507-worthy
    StoreFullError naming the fix, not the ROLLBACK error that hid it; deleting and reading work."""
    HeadStore(tmp_path).save("seed", small_head())  # the schema, in a few pages
    pages = sqlite3.connect(tmp_path / "heads.sqlite3").execute("PRAGMA page_count").fetchone()[0]
    store = CappedStore(tmp_path, pages + 40)
    head = big_head()
    saved = fill(store, head)
    assert saved >= 2
    with pytest.raises(StoreFullError, match="is full: no head can be saved") as caught:
        store.save("one-more", head)
    assert "rollback" not in str(caught.value).lower()
    fresh = CappedStore(tmp_path, pages + 40)  # a new process's first operation, too
    assert len(fresh.list()) == saved + 1
    fresh.delete("h0000")
    fresh.delete("h0001")
    assert fresh.save("one-more", head).version == 1  # the deleted heads' pages are reused
    assert_sound(tmp_path)


@pytest.fixture
def tiny_volume(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the max_page_count test simulates a full disk)")
    volume = tmp_path / "volume"
    volume.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(volume)], check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield volume
    finally:
        subprocess.run(["umount", "-l", str(volume)], check=False)


def test_a_full_volume_refuses_writes_and_still_deletes(tiny_volume: Path) -> None:
    """A real full disk (a 2 MiB tmpfs): writes fail with StoreFullError, and a deletion, even as
    the first operation of a new store object, spends the reserve kept for it."""
    data = tiny_volume / "data"
    store = HeadStore(data)
    head = big_head()
    saved = fill(store, head)
    assert saved > 10 and os.statvfs(tiny_volume).f_bavail < 8
    assert "is full" in (store.probe() or "")
    fresh = HeadStore(data)
    assert len(fresh.list()) == saved
    fresh.delete("h0000")
    fresh.delete("h0001")
    assert not fresh.reserve.exists()  # spent on the first deletion
    assert [r.name for r in fresh.list(limit=1)] == ["h0002"]
    with pytest.raises(StoreFullError):
        fresh.save("again", head)
    assert_sound(data)


@pytest.fixture
def read_only_data(tmp_path: Path) -> Iterator[Path]:
    """A data directory holding one head, then made read-only: a read-only bind mount of it
    (root), or its mode 555 (anyone else)."""
    source = tmp_path / "data"
    HeadStore(source).save("kept", small_head(9))
    if os.geteuid() != 0:
        source.chmod(0o555)
        try:
            yield source
        finally:
            source.chmod(0o755)
        return
    view = tmp_path / "view"
    view.mkdir()
    subprocess.run(["mount", "--bind", str(source), str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        yield view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)


def test_a_read_only_folder_is_read_and_refuses_writes_naming_the_fix(read_only_data: Path) -> None:
    store = HeadStore(read_only_data)
    assert not store.writable()
    assert [r.name for r in store.list()] == ["kept"]
    assert store.load("kept")[1].classes == ("a", "b", "c")
    said = store.probe()
    assert said is not None and f"not writable by uid {os.getuid()}" in said
    for write in (lambda: store.save("new", small_head()), lambda: store.delete("kept")):
        with pytest.raises(StoreUnavailableError, match=r"not writable by uid .*mount a writable volume"):
            write()
    assert [r.name for r in store.list()] == ["kept"]


def test_postgresql_down_is_store_unavailable_then_recovers(private_postgres: PostgresServer) -> None:
    import psycopg

    with psycopg.connect(private_postgres.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE heads_down")
    store = open_store(private_postgres.url("heads_down"))
    store.save("kept", small_head(10))
    assert store.probe() is None
    private_postgres.kill_9()
    for operation in (store.list, lambda: store.get("kept"), store.probe, lambda: store.delete("kept")):
        with pytest.raises(StoreUnavailableError, match="cannot reach the heads database") as caught:
            operation()
        assert private_postgres.password not in str(caught.value)
    private_postgres.start()
    assert [r.name for r in store.list()] == ["kept"]
