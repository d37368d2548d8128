"""vggish.heads_store: the SQLite store of heads: schema, transactions, concurrency, and a real
``kill -9`` of a process in the middle of writes."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from vggish import heads
from vggish.heads_store import SCHEMA_VERSION, HeadExistsError, HeadNotFoundError, HeadStore, migrate

REPO = Path(__file__).resolve().parents[1]


def small_head(seed: int = 0, kind: heads.HeadKind = "linear") -> heads.Head:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6, 128)).astype(np.float32)
    head, _ = heads.train(x, ["a", "b", "c"] * 2, kind=kind)
    return head


def test_save_get_list_load_delete(tmp_path: Path) -> None:
    store = HeadStore(tmp_path / "data")
    assert store.list() == []
    assert not store.path.exists()  # reading creates nothing
    head = small_head()
    record = store.save("one", head)
    assert (record.name, record.version, record.classes, record.num_examples) == (
        "one",
        1,
        ("a", "b", "c"),
        6,
    )
    assert store.get("one") == record
    loaded_record, loaded = store.load("one")
    assert loaded_record == record
    x = np.random.default_rng(1).standard_normal((3, 128)).astype(np.float32)
    np.testing.assert_array_equal(loaded.scores(x), head.scores(x))
    assert heads.from_safetensors(store.export("one")).classes == head.classes
    store.save("two", small_head(1, "mlp"))
    assert [r.name for r in store.list()] == ["one", "two"]
    store.delete("one")
    with pytest.raises(HeadNotFoundError):
        store.get("one")
    with pytest.raises(HeadNotFoundError):
        store.delete("one")
    assert [r.name for r in store.list()] == ["two"]


def test_names_are_taken_unless_replaced(tmp_path: Path) -> None:
    store = HeadStore(tmp_path)
    store.save("x", small_head(0))
    with pytest.raises(HeadExistsError):
        store.save("x", small_head(1))
    assert store.save("x", small_head(2), replace=True).version == 2
    assert store.save("x", small_head(3), replace=True).version == 3
    with pytest.raises(ValueError, match="head name"):
        store.save("bad name", small_head())


def test_schema_is_versioned_and_wal(tmp_path: Path) -> None:
    store = HeadStore(tmp_path)
    store.open()
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert migrate(conn) == SCHEMA_VERSION  # already current: nothing to do
    conn = sqlite3.connect(store.path, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="schema"):
        HeadStore(tmp_path).open()


def test_a_corrupt_database_is_a_runtime_error(tmp_path: Path) -> None:
    (tmp_path / "heads.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(RuntimeError, match="heads database"):
        HeadStore(tmp_path).list()


def test_concurrent_writers_and_deleters(tmp_path: Path) -> None:
    store = HeadStore(tmp_path)
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
    assert store.integrity_check() == "ok"
    for record in store.list():
        assert store.load(record.name)[1].classes == ("a", "b", "c")


HAMMER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from vggish import heads
    from vggish.heads_store import HeadStore, HeadNotFoundError

    store = HeadStore(sys.argv[1])
    rng = np.random.default_rng(int(sys.argv[2]))
    made = {}
    for kind in ("linear", "mlp"):
        x = rng.standard_normal((8, 128)).astype(np.float32)
        made[kind] = heads.train(x, ["a", "b", "c", "d"] * 2, kind=kind)[0]
    i = 0
    while True:
        name = f"h{rng.integers(12)}"
        if rng.random() < 0.2:
            try:
                store.delete(name)
            except HeadNotFoundError:
                pass
        else:
            store.save(name, made["mlp" if i % 2 else "linear"], replace=True)
        i += 1
        if i == 20:
            print("writing", flush=True)
    """
)


@pytest.mark.slow
def test_kill_9_during_writes_leaves_every_head_whole_or_absent(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for round_ in range(3):
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", HAMMER, str(tmp_path), str(10 * round_ + k)],
                env=env,
                stdout=subprocess.PIPE,
            )
            for k in range(2)
        ]
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == b"writing\n"
        time.sleep(0.3 + 0.2 * round_)  # a different moment each round; nothing is asserted on time
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert proc.returncode == -signal.SIGKILL
        store = HeadStore(tmp_path)
        assert store.integrity_check() == "ok"
        records = store.list()
        assert records, "the writers wrote nothing"
        for record in records:
            _, head = store.load(record.name)
            assert head.classes == ("a", "b", "c", "d") and head.kind == record.kind
            assert head.scores(np.zeros((1, 128), np.float32)).shape == (1, 4)
    with sqlite3.connect(tmp_path / "heads.sqlite3") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
