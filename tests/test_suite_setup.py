"""How `make test` runs the suite: under pytest-xdist each test process, and every process it
starts, computes on its own share of the CPUs (tests/conftest.py), with thread pools sized to it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from vggish.network import cpus


def test_each_test_process_computes_on_its_own_share_of_the_cpus() -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2:
        pytest.skip("checks the pytest-xdist processes of `make test` (-n 2)")
    machine = sorted(os.sched_getaffinity(os.getppid()))  # pytest-xdist's controller: not pinned
    expected = set(machine[int(worker[2:]) % len(machine) :: count]) or set(machine)
    assert os.sched_getaffinity(0) == expected
    assert torch.get_num_threads() == len(expected)
    assert cpus.available_cpus() <= len(expected)  # what the library sizes its pools by
    child = "import os; print(sorted(os.sched_getaffinity(0)))"
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(sorted(expected))  # servers, CLI runs, validators inherit it
