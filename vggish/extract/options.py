"""How a batch extraction runs: :class:`ExtractOptions`, shared by the package and its engines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from vggish.extract.outputs import OutputFormat
from vggish.network.cpus import available_cpus
from vggish.network.runtime import BackendName, PrecisionName
from vggish.pipeline.options import EmbedOptions

Engine = Literal["local", "ray"]
DEFAULT_ROWS_PER_PART = 20_000  # about 13 MB of rows in memory, 12 MB of Parquet


def default_workers(device: str = "cpu") -> int:
    """Decoding processes for a model on ``device``: on the CPU a quarter of the CPUs (the model
    costs more than decoding; ``benchmarks/bench_extract.py``), with a GPU all but one."""
    cpus = available_cpus()
    return max(1, cpus - 1) if device.startswith("cuda") else cpus // 4


@dataclass(frozen=True)
class ExtractOptions:
    """How a batch extraction runs (``workers``: 0 decodes in the main process; ``threads`` None: the
    CPUs not decoding; an input's rows never straddle two parts)."""

    embed: EmbedOptions = field(default_factory=EmbedOptions)
    format: OutputFormat = "parquet"
    engine: Engine = "local"
    workers: int = field(default_factory=default_workers)  # for the CPU; see default_workers("cuda")
    device: str = "cpu"
    backend: BackendName = "auto"
    precision: PrecisionName = "fp32"
    threads: int | None = None
    ray_address: str | None = None
    rows_per_part: int = DEFAULT_ROWS_PER_PART

    def __post_init__(self) -> None:
        if self.format not in get_args(OutputFormat):
            raise ValueError(f"format must be one of {get_args(OutputFormat)}; got {self.format!r}")
        if self.engine not in get_args(Engine):
            raise ValueError(f"engine must be one of {get_args(Engine)}; got {self.engine!r}")
        if not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"workers must be an integer >= 0; got {self.workers!r}")
        if not isinstance(self.rows_per_part, int) or self.rows_per_part < 1:
            raise ValueError(f"rows_per_part must be a positive integer; got {self.rows_per_part!r}")
