"""Shared fixtures: the reference arrays, a random-weights model, and small audio files."""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest_plugins = ["postgres_server", "pgvector_server"]  # PostgreSQL servers (Debian's; with pgvector)

# The product's default backend is ``auto`` (ONNX Runtime when installed). Most tests check
# PyTorch's numbers against references; the ONNX backend and ``auto`` have their own tests, which
# set the backend explicitly. The library takes the backend as an argument; the CLI and the service
# read this variable.
os.environ.setdefault("VGGISH_BACKEND", "torch")

DATA_DIR = Path(__file__).resolve().parent / "data"
REFERENCE_NPZ = DATA_DIR / "frontend_reference.npz"  # provenance: tests/data/README.md
ALSA_DIR = Path("/usr/share/sounds/alsa")
FREEDESKTOP_DIR = Path("/usr/share/sounds/freedesktop/stereo")


@pytest.fixture(scope="session")
def reference() -> dict[str, np.ndarray]:
    """Arrays from Google's reference front end (keys and provenance: tests/data/README.md)."""
    with np.load(REFERENCE_NPZ) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def random_model():  # type: ignore[no-untyped-def]
    """VGGish with the library's deterministic random weights (and PCA)."""
    import vggish

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return vggish.load_model("random", backend="torch")


@pytest.fixture(scope="session")
def alsa_recordings() -> list[Path]:
    """Real speech recordings shipped by Debian's alsa-utils."""
    files = sorted(ALSA_DIR.glob("*.wav"))
    if not files:
        pytest.skip("alsa-utils recordings not installed (scripts/system-deps.sh installs them)")
    return files


@pytest.fixture(scope="session")
def freedesktop_recordings() -> list[Path]:
    """Real system sounds shipped by Debian's sound-theme-freedesktop (stereo Ogg Vorbis); may be empty."""
    return sorted(FREEDESKTOP_DIR.glob("*.oga"))


# `make test` runs the suite in two processes (``-n 2 --dist loadfile --no-loadscope-reorder``), one
# work unit a file, so that a file's tests run in order in one process. The files that take a
# minute or more (`pytest --durations`) start first, longest first: one started last would leave
# the other process idle at the end.
LONGEST_FILES = (
    "app/test_service_schema.py",
    "test_docs_snippets.py",
    "test_heads_store.py",
    "app/test_reliability_bodies.py",
    "app/test_reliability_heads.py",
    "app/test_heads_server.py",
    "test_benchmarks.py",
    "test_extract_ray.py",
    "test_extract.py",
    "test_fad_reference.py",
    "app/test_stream.py",
    "test_onnx.py",
    "test_hear.py",
    "test_audio.py",
    "app/test_reliability.py",
)


def _start_order(item: pytest.Item) -> tuple[bool, int]:
    """Browser tests last, then the longest files first; the rest keep their order."""
    path = item.path.relative_to(Path(__file__).parent).as_posix()
    rank = LONGEST_FILES.index(path) if path in LONGEST_FILES else len(LONGEST_FILES)
    return "browser" in item.keywords, rank


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Orders the tests (see above). Browser tests run last, in every process that takes one:
    Playwright's sync API keeps an event loop running in the main thread for as long as its
    session-scoped fixture lives, and later tests that call ``asyncio.run`` would find it there.
    (pytest-xdist hands out the files in this order, so a process that has started on browser
    tests is given only browser tests after them.)"""
    items.sort(key=_start_order)
    for item in items:  # a real browser, a real PostgreSQL server: not in `make test-fast`
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and any(v == "postgres" for v in callspec.params.values()
                                                   if isinstance(v, str))  # fmt: skip
        if "browser" in item.keywords or on_postgres:
            item.add_marker(pytest.mark.slow)


def pytest_configure(config: pytest.Config) -> None:
    """In the test processes of `make test` and `make test-fast` (pytest-xdist's workers), each
    process computes on its own share of the CPUs (see :func:`_own_share_of_the_cpus`)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        _own_share_of_the_cpus()


def _own_share_of_the_cpus() -> None:
    """Pins this test process, every thread it has, and so every process it starts, to its share
    of the CPUs (worker k of n: every n-th CPU from the k-th).

    Two test processes on two cores, each with thread pools sized to both cores (PyTorch, ONNX
    Runtime, OpenBLAS, and the same again in every server, CLI or validator process they start),
    only wait on each other, and ONNX Runtime's and OpenMP's idle threads spin while they wait.
    Pinned, the library sizes its pools from the affinity mask (vggish.network.cpus.available_cpus), as it
    does in a container limited to one CPU (on 2 cores: 3-7 % less CPU over the suite).
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not hasattr(os, "sched_setaffinity") or count < 2 or not worker.startswith("gw"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    share = set(cpus[int(worker[2:]) % len(cpus) :: count]) or set(cpus)
    for task in Path("/proc/self/task").iterdir():  # threads started before now (OpenBLAS's)
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), share)
    os.sched_setaffinity(0, share)
    import torch

    torch.set_num_threads(len(share))
