"""What both checkpoint readers share: the error type, variable descriptions, the reader interface."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vggish.weights.tf_checkpoint.protobuf import DecodeError
from vggish.weights.tf_checkpoint.tensors import DTYPES, UnsupportedDTypeError, lookup_dtype, result_dtype


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, truncated, fails a checksum, or uses an unsupported feature."""


@dataclass(frozen=True)
class VariableInfo:
    """One saved variable: its name, shape and TensorFlow ``DataType`` enum value."""

    name: str
    shape: tuple[int, ...]
    dtype_enum: int

    @property
    def supported(self) -> bool:
        return self.dtype_enum in DTYPES

    @property
    def numpy_dtype(self) -> np.dtype:
        """The dtype :meth:`CheckpointReader.read` returns."""
        return result_dtype(lookup_dtype(self.dtype_enum))


class CheckpointReader(abc.ABC):
    """An open checkpoint: :attr:`variables` describes it, :meth:`read` decodes one variable."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.variables: dict[str, VariableInfo] = {}

    def __enter__(self) -> CheckpointReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def close(self) -> None:
        """Releases open files; arrays already returned stay valid."""

    @abc.abstractmethod
    def _read(self, info: VariableInfo) -> np.ndarray:
        """Decodes one variable."""

    def read(self, name: str) -> np.ndarray:
        """The variable's value, exactly as TensorFlow saved it (KeyError for no such variable)."""
        info = self.variables[name]
        try:
            return self._read(info)
        except (DecodeError, UnsupportedDTypeError) as e:
            raise CheckpointError(f"{self.path}: variable {name!r}: {e}") from e
