"""V2 checkpoints ("tensor bundles"): ``PREFIX.index`` plus ``PREFIX.data-0000k-of-0000n`` shards.

The index table (``tensor_bundle.proto``) holds a ``BundleHeaderProto`` under the empty key and a
``BundleEntryProto`` (dtype, shape, shard, offset, size, masked CRC-32C, slices) per variable;
a partitioned variable's slices are entries of their own. Shards hold raw little-endian bytes.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vggish.weights.tf_checkpoint import protobuf as pb
from vggish.weights.tf_checkpoint.base import CheckpointError, CheckpointReader, VariableInfo
from vggish.weights.tf_checkpoint.slices import Extents, assemble, slice_key, slice_shape
from vggish.weights.tf_checkpoint.table import Table
from vggish.weights.tf_checkpoint.tensors import (
    DType,
    decode_strings,
    from_raw,
    lookup_dtype,
    masked_crc32c,
    parse_shape,
    parse_slice,
    result_dtype,
)

HEADER_KEY = b""
SLICE_KEY_PREFIX = b"\x00"  # every slice key starts with OrderedCode's encoding of 0
HEADER_NUM_SHARDS, HEADER_ENDIANNESS = 1, 2
BIG_ENDIAN = 1
ENTRY_DTYPE, ENTRY_SHAPE, ENTRY_SHARD, ENTRY_OFFSET, ENTRY_SIZE, ENTRY_CRC, ENTRY_SLICES = range(1, 8)


def index_path(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + ".index")


def shard_path(prefix: Path, shard: int, num_shards: int) -> Path:
    return prefix.with_name(f"{prefix.name}.data-{shard:05d}-of-{num_shards:05d}")


@dataclass(frozen=True)
class BundleEntry:
    """Where one tensor's bytes live, with their checksum, or the slices it is made of."""

    shape: tuple[int, ...]
    dtype_enum: int
    shard: int
    offset: int
    size: int
    masked_crc: int
    slices: tuple[Extents, ...]


def parse_entry(value: memoryview) -> BundleEntry:
    fields = pb.parse(value)
    return BundleEntry(
        shape=parse_shape(pb.get_bytes(fields, ENTRY_SHAPE)),
        dtype_enum=pb.get_int(fields, ENTRY_DTYPE),
        shard=pb.get_signed(fields, ENTRY_SHARD),
        offset=pb.get_signed(fields, ENTRY_OFFSET),
        size=pb.get_signed(fields, ENTRY_SIZE),
        masked_crc=pb.get_int(fields, ENTRY_CRC),
        slices=tuple(parse_slice(s) for s in pb.get_all_bytes(fields, ENTRY_SLICES)),
    )


class V2Reader(CheckpointReader):
    """A V2 checkpoint, opened by its prefix: the index is read whole, shards on demand."""

    def __init__(self, prefix: Path, *, verify_checksums: bool = True) -> None:
        super().__init__(prefix)
        self.verify_checksums = verify_checksums
        self._index = index_path(prefix)
        with Table(self._index, verify_checksums=verify_checksums) as table:
            entries = dict(table.items())
        self._shards: dict[int, io.BufferedReader] = {}
        self._entries: dict[bytes, memoryview] = entries
        self.num_shards = self._parse_header(entries.get(HEADER_KEY))
        try:
            for key, value in entries.items():
                if key != HEADER_KEY and not key.startswith(SLICE_KEY_PREFIX):
                    entry = parse_entry(value)
                    self.variables[key.decode()] = VariableInfo(key.decode(), entry.shape, entry.dtype_enum)
        except (pb.DecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{self._index}: corrupt bundle entry ({e})") from e

    def _parse_header(self, value: memoryview | None) -> int:
        """The number of data shards, from the checked ``BundleHeaderProto``."""
        try:
            if value is None:
                raise pb.DecodeError("no BundleHeaderProto under the empty key")
            header = pb.parse(value)
            num_shards = pb.get_signed(header, HEADER_NUM_SHARDS)
        except pb.DecodeError as e:
            raise CheckpointError(f"{self._index}: not a V2 checkpoint index ({e})") from e
        if pb.get_int(header, HEADER_ENDIANNESS) == BIG_ENDIAN:
            raise CheckpointError(f"{self._index}: big-endian checkpoints are not supported")
        if num_shards < 1:
            raise CheckpointError(f"{self._index}: corrupt header ({num_shards} data shards)")
        return num_shards

    def close(self) -> None:
        for shard in self._shards.values():
            shard.close()
        self._shards.clear()

    def _read(self, info: VariableInfo) -> np.ndarray:
        entry = parse_entry(self._entries[info.name.encode()])
        dtype = lookup_dtype(entry.dtype_enum)
        if not entry.slices:
            return self._read_bytes(info.name, entry, dtype, entry.shape)
        pieces = []
        for extents in entry.slices:
            value = self._entries.get(slice_key(info.name, extents))
            if value is None:
                raise pb.DecodeError(f"no entry for its slice {extents}")
            shape = slice_shape(extents, entry.shape)
            pieces.append((extents, self._read_bytes(info.name, parse_entry(value), dtype, shape)))
        return assemble(entry.shape, result_dtype(dtype), pieces)

    def _read_bytes(self, name: str, entry: BundleEntry, dtype: DType, shape: tuple[int, ...]) -> np.ndarray:
        raw = self._read_range(name, entry)
        count = int(np.prod(shape, dtype=np.int64))
        if dtype.name == "string":
            values, crc = decode_strings(raw, count)
            self._check_crc(name, entry, crc)
            return values.reshape(shape)
        if self.verify_checksums:
            self._check_crc(name, entry, masked_crc32c(raw))
        return from_raw(raw, dtype, shape)

    def _check_crc(self, name: str, entry: BundleEntry, masked_crc: int) -> None:
        if self.verify_checksums and masked_crc != entry.masked_crc:
            raise CheckpointError(
                f"{shard_path(self.path, entry.shard, self.num_shards)}: checksum mismatch for variable "
                f"{name!r} (bytes [{entry.offset}, {entry.offset + entry.size})); the data file is corrupt"
            )

    def _read_range(self, name: str, entry: BundleEntry) -> np.ndarray:
        if not 0 <= entry.shard < self.num_shards or entry.offset < 0 or entry.size < 0:
            raise pb.DecodeError(
                f"bad location (shard {entry.shard}, offset {entry.offset}, size {entry.size})"
            )
        path = shard_path(self.path, entry.shard, self.num_shards)
        shard = self._open_shard(entry.shard, path)
        file_size = os.fstat(shard.fileno()).st_size
        if entry.offset + entry.size > file_size:
            raise CheckpointError(
                f"{path}: truncated: variable {name!r} needs bytes [{entry.offset}, "
                f"{entry.offset + entry.size}) but the file has {file_size}"
            )
        buf = np.empty(entry.size, dtype=np.uint8)
        shard.seek(entry.offset)
        if shard.readinto(buf.data) != entry.size:
            raise CheckpointError(f"{path}: file shrank while reading variable {name!r}")
        return buf

    def _open_shard(self, shard: int, path: Path) -> io.BufferedReader:
        if shard not in self._shards:
            try:
                self._shards[shard] = open(path, "rb")  # noqa: SIM115 (closed by close())
            except FileNotFoundError as e:
                raise CheckpointError(f"{path}: data shard missing (index {self._index})") from e
        return self._shards[shard]
