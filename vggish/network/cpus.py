"""How many CPUs this process really has (affinity mask and cgroup CPU quota, which PyTorch and
ONNX Runtime ignore), and the thread counts chosen from that. NumPy's BLAS is kept to one thread
while the front end runs: its products are small, and idle OpenBLAS threads spin on the cores.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_PROC_CGROUP = Path("/proc/self/cgroup")


def _own_cgroup_dir() -> Path:
    """This process's cgroup v2 folder (``0::/path`` in /proc/self/cgroup), else the root."""
    with contextlib.suppress(OSError):
        for line in _PROC_CGROUP.read_text().splitlines():
            if line.startswith("0::"):
                folder = _CGROUP_ROOT / line[3:].strip().lstrip("/")
                if (folder / "cpu.max").is_file():
                    return folder
    return _CGROUP_ROOT


def _cgroup_cpu_limit(root: Path | None = None) -> float | None:
    """CPUs allowed by the cgroup v2 or v1 quota under ``root`` (fractional), or None without one."""
    v2 = root if root is not None else _own_cgroup_dir()
    v1 = root if root is not None else _CGROUP_ROOT
    with contextlib.suppress(OSError, ValueError):
        quota, period = (v2 / "cpu.max").read_text().split()[:2]  # cgroup v2: "max 100000"
        return None if quota == "max" else int(quota) / int(period)
    try:
        quota_us = int((v1 / "cpu" / "cpu.cfs_quota_us").read_text())  # cgroup v1
        period_us = int((v1 / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """CPUs this process may use: the affinity mask, capped by a cgroup CPU quota (rounded up)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return max(1, cpus)


def validate_threads(threads: object, what: str = "threads") -> int:
    """Returns ``threads`` (an int, or a string of digits) as a positive int, else raises ValueError."""
    value = 0
    if isinstance(threads, int) and not isinstance(threads, bool):
        value = threads
    elif isinstance(threads, str) and threads.strip().isdigit():
        value = int(threads)
    if value < 1:
        raise ValueError(f"{what} must be a positive integer (for example 4); got {threads!r}")
    return value


def intra_op_threads(threads: int | None = None) -> int:
    """Threads for one model call: ``threads`` when given, else :func:`available_cpus`."""
    return available_cpus() if threads is None else validate_threads(threads)


def configure_torch_threads(threads: int | None = None) -> int:
    """Sets PyTorch's intra-op thread count (process-wide) and returns it; with nothing asked
    for, only lowers PyTorch's own when it exceeds the CPUs found here."""
    import torch

    wanted = intra_op_threads(threads)
    current = torch.get_num_threads()
    if wanted != current and (threads is not None or current > wanted):
        torch.set_num_threads(wanted)
    return torch.get_num_threads()


@functools.cache
def _blas_controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """NumPy's BLAS on one thread inside the block (the log-mel and resampling products)."""
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


def limit_blas_threads(threads: int = 1) -> None:
    """Sets NumPy's BLAS threads for the rest of the process."""
    _blas_controller().limit(limits=threads, user_api="blas")


_CPUINFO = Path("/proc/cpuinfo")
# SIMD and matrix extensions that decide which algorithm and precision pay (x86 and ARM names).
SIMD_FLAGS = (
    "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8",
    "amx_tile", "asimd", "asimddp", "bf16", "i8mm", "sve",
)  # fmt: skip


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (x86 ``flags``, ARM ``Features`` in /proc/cpuinfo); empty where unknown."""
    try:
        first = _CPUINFO.read_text().strip().split("\n\n")[0]  # the first processor is enough
    except OSError:
        return frozenset()
    fields = {key.strip(): value for key, _, value in (line.partition(":") for line in first.splitlines())}
    return frozenset((fields.get("flags") or fields.get("Features") or "").split())


def simd_summary() -> str:
    """The flags of :data:`SIMD_FLAGS` this CPU has, space-separated (``unknown`` without any)."""
    flags = cpu_flags()
    return " ".join(f for f in SIMD_FLAGS if f in flags) or "unknown"


def has_bf16() -> bool:
    """Whether the CPU has bfloat16 arithmetic (AVX512_BF16, AMX-BF16, or ARM's BF16)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"})
