"""A real PostgreSQL server for the tests: Debian's binaries, a throwaway cluster on loopback.

``postgres_server`` (session) runs ``initdb`` and ``pg_ctl start`` in a temporary directory, on a
free loopback port with its unix socket in that directory, password authentication on, as the
``postgres`` system user when the tests run as root (PostgreSQL refuses to run as root); it is
stopped and removed at the end. ``postgres_url`` (per test) is a fresh, empty database on it.
The tests skip, saying why, only where the binaries or psycopg are missing
(``scripts/system-deps.sh`` installs the ``postgresql`` package; ``vggish[postgres]`` psycopg).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN_GLOB = "/usr/lib/postgresql/*/bin"  # Debian's layout: one folder per major version
RUN_AS = "postgres"  # the system user Debian's package creates
USER = "vggish"  # the cluster's superuser (its password is random per run)
START_TIMEOUT_S = 120  # pg_ctl's wait for the server to accept connections (2 shared cores)
KILL_WAIT_S = 60  # how long killed server processes may take to be gone


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` holding ``initdb`` and ``pg_ctl``, else None."""
    found = [
        p
        for p in Path("/").glob(BIN_GLOB.lstrip("/"))
        if (p / "initdb").is_file() and (p / "pg_ctl").is_file()
    ]
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, default=None)


def free_port() -> int:
    """A loopback port free at this moment (start() retries if another process takes it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """One running cluster: ``root`` holds ``data/``, ``sock/`` and ``log``."""

    bin_dir: Path
    root: Path
    port: int
    password: str
    as_root: bool

    def url(self, dbname: str = "postgres") -> str:
        """A URL (with the password) for ``dbname`` over TCP on loopback."""
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Runs a PostgreSQL binary (as ``postgres`` when we are root)."""
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", RUN_AS, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, cwd=self.root)

    def start(self) -> None:
        """``pg_ctl start`` (after a crash too: the server then replays its WAL)."""
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.root / 'sock'} -c max_connections=100"
        )
        result = self.run(
            "pg_ctl", "start", "-D", str(self.root / "data"), "-l", str(self.root / "log"),
            "-w", "-t", str(START_TIMEOUT_S), "-o", options, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            log = (
                (self.root / "log").read_text(errors="replace")[-2000:]
                if (self.root / "log").exists()
                else ""
            )
            raise RuntimeError(f"pg_ctl start failed: {result.stdout}{result.stderr}\n{log}")

    def stop(self) -> None:
        """``pg_ctl stop -m fast`` (a clean shutdown; no error when it is not running)."""
        self.run("pg_ctl", "stop", "-D", str(self.root / "data"), "-m", "fast", "-w", check=False)

    def postmaster_pid(self) -> int | None:
        """The running postmaster's process id (from ``postmaster.pid``), else None."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.root / "data" / "postmaster.pid").read_text().split()[0])
            if Path(f"/proc/{pid}").exists():
                return pid
        return None

    def kill_9(self) -> int:
        """SIGKILLs the postmaster and all its children at once, as a crash would, and waits
        until they are gone; returns how many there were (0 when it was not running)."""
        postmaster = self.postmaster_pid()
        if postmaster is None:
            return 0
        os.kill(postmaster, signal.SIGSTOP)  # frozen: it forks no child while we list them
        pids = [postmaster, *children(postmaster)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + KILL_WAIT_S
        while any(
            Path(f"/proc/{pid}").exists() for pid in pids
        ):  # until reaped: a zombie holds the lock file
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL processes {pids} survived SIGKILL for {KILL_WAIT_S} s")
            time.sleep(0.05)
        return len(pids)


def children(parent: int) -> list[int]:
    """Process ids whose parent is ``parent`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(stat.parent.name))
    return found


def start_server(bin_dir: Path) -> PostgresServer:
    """initdb + pg_ctl start in a new temporary directory; the caller stops it."""
    as_root = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="vggish-pg-"))  # short: a socket path has < 108 bytes
    (root / "sock").mkdir()
    password = secrets.token_hex(16)
    (root / "pw").write_text(password + "\n")
    if as_root:
        owner = pwd.getpwnam(RUN_AS)
        for path in (root, root / "sock", root / "pw"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    server = PostgresServer(bin_dir, root, 0, password, as_root)
    server.run(
        "initdb", "-D", str(root / "data"), "-U", USER, f"--pwfile={root / 'pw'}", "--auth=scram-sha-256",
        "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
    )  # fmt: skip
    for attempt in range(3):  # the free port may be taken between free_port() and the bind
        server.port = free_port()
        try:
            server.start()
            return server
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def remove(server: PostgresServer) -> None:
    """Stops the server (SIGKILL for what a failed test left half-running) and deletes its files."""
    server.stop()
    server.kill_9()
    shutil.rmtree(server.root, ignore_errors=True)


def _requirements() -> Path:
    """Debian's binaries (skips, naming the fix, when missing)."""
    pytest.importorskip("psycopg", reason="psycopg missing: pip install -e '.[postgres]'")
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip(f"PostgreSQL binaries missing ({BIN_GLOB}): scripts/system-deps.sh installs them")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(RUN_AS)
        except KeyError:
            pytest.skip(f"running as root without a {RUN_AS!r} user to run PostgreSQL as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser (util-linux) to run PostgreSQL as another user")
    return bin_dir


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster for the whole session (stopped and removed at the end)."""
    server = start_server(_requirements())
    try:
        yield server
    finally:
        remove(server)


@contextlib.contextmanager
def fresh_database(server: PostgresServer) -> Iterator[str]:
    """A new, empty database on ``server`` (dropped at the end): its URL."""
    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield server.url(name)
    finally:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A URL of a new, empty database (dropped after the test)."""
    with fresh_database(postgres_server) as url:
        yield url


@pytest.fixture(scope="module")
def module_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A URL of a new, empty database shared by one test module (dropped after it)."""
    with fresh_database(postgres_server) as url:
        yield url


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A cluster of its own, for a test that kills or stops the server."""
    server = start_server(_requirements())
    try:
        yield server
    finally:
        remove(server)
