"""Reads TensorFlow checkpoints without TensorFlow: legacy V1 files and V2 tensor bundles.

Every table block and V2 tensor is checked against its CRC-32C. Variables of unsupported dtypes
(quantized, resource, float8...) are skipped with a warning, or refused when asked for by name.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np

from vggish.weights.tf_checkpoint.base import CheckpointError, CheckpointReader
from vggish.weights.tf_checkpoint.table import is_table
from vggish.weights.tf_checkpoint.v1 import V1Reader
from vggish.weights.tf_checkpoint.v2 import V2Reader, index_path, shard_path

__all__ = [
    "CheckpointError",
    "checkpoint_files",
    "detect_format",
    "list_variables",
    "open_checkpoint",
    "read_checkpoint",
]

logger = logging.getLogger(__name__)

Format = Literal["v1", "v2"]
_INDEX_SUFFIX = ".index"
_SHARD_NAME = re.compile(r"(?P<prefix>.+)\.data-\d{5}-of-\d{5}")


def _locate(path: str | os.PathLike[str]) -> tuple[Format, Path]:
    given = Path(path)
    if given.is_dir():
        raise CheckpointError(f"{given} is a directory: pass the checkpoint file (V1) or prefix (V2)")
    shard = _SHARD_NAME.fullmatch(given.name)
    if given.name.endswith(_INDEX_SUFFIX) or shard:
        prefix = given.with_name(shard["prefix"] if shard else given.name[: -len(_INDEX_SUFFIX)])
        if not index_path(prefix).is_file():
            raise CheckpointError(f"{index_path(prefix)}: no such file (the index of V2 checkpoint {prefix})")
        return "v2", prefix
    if given.is_file():
        if not is_table(given):
            raise CheckpointError(f"{given}: not a TensorFlow checkpoint (no table footer; truncated?)")
        return "v1", given
    if index_path(given).is_file():
        return "v2", given
    raise CheckpointError(f"{given}: no such checkpoint (neither a V1 file nor a V2 prefix with a .index)")


def detect_format(path: str | os.PathLike[str]) -> Format:
    """``"v1"`` for a legacy single-file checkpoint, ``"v2"`` for a bundle (a prefix, its
    ``.index`` or a data shard); CheckpointError for neither."""
    return _locate(path)[0]


def checkpoint_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files a checkpoint consists of: the V1 file, or the V2 index and its data shards."""
    fmt, located = _locate(path)
    if fmt == "v1":
        return [located]
    reader = V2Reader(located)
    count = reader.num_shards
    reader.close()
    return [index_path(located), *(shard_path(located, shard, count) for shard in range(count))]


def open_checkpoint(path: str | os.PathLike[str], *, verify_checksums: bool = True) -> CheckpointReader:
    """Opens a checkpoint for reading variable by variable (a context manager)."""
    fmt, located = _locate(path)
    reader = V1Reader if fmt == "v1" else V2Reader
    return reader(located, verify_checksums=verify_checksums)


def list_variables(path: str | os.PathLike[str]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Every readable variable's shape and the dtype :func:`read_checkpoint` returns for it."""
    with open_checkpoint(path, verify_checksums=True) as reader:
        return {
            name: (info.shape, info.numpy_dtype) for name, info in reader.variables.items() if info.supported
        }


def read_checkpoint(
    path: str | os.PathLike[str], *, names: Iterable[str] | None = None, verify_checksums: bool = True
) -> dict[str, np.ndarray]:
    """``{name: array}`` with TensorFlow's exact dtypes, shapes and values, in the checkpoint's
    order; ``names``: only these (default: all of a supported dtype).

    Raises:
        CheckpointError: if the file is missing, corrupt, truncated, fails a checksum, lacks a
            requested variable or holds it in an unsupported dtype.
    """
    with open_checkpoint(path, verify_checksums=verify_checksums) as reader:
        wanted = _wanted(reader, names)
        return {name: reader.read(name) for name in wanted}


def _wanted(reader: CheckpointReader, names: Iterable[str] | None) -> list[str]:
    if names is None:
        skipped = [name for name, info in reader.variables.items() if not info.supported]
        if skipped:
            logger.warning(
                "%s: skipping variables of unsupported dtypes: %s", reader.path, ", ".join(skipped)
            )
        return [name for name in reader.variables if name not in skipped]
    wanted = list(names)
    missing = [name for name in wanted if name not in reader.variables]
    if missing:
        raise CheckpointError(f"{reader.path}: no variable named {', '.join(map(repr, missing))}")
    return wanted
