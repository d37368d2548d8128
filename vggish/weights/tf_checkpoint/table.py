"""TensorFlow's immutable sorted key/value table (LevelDB's "SSTable"): a V1 checkpoint, or a V2
checkpoint's ``PREFIX.index``.

Blocks, each followed by a compression byte and a masked CRC-32C, then a 48-byte footer (the
metaindex and index block handles, the magic). A block holds prefix-compressed entries (varint
``shared``, ``non_shared``, ``value_length``, key suffix, value) and its restart offsets; the
index block maps each data block's last key to its handle. Snappy blocks are refused.
"""

from __future__ import annotations

import bisect
import io
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vggish.weights.tf_checkpoint.base import CheckpointError
from vggish.weights.tf_checkpoint.protobuf import DecodeError, read_varint
from vggish.weights.tf_checkpoint.tensors import masked_crc32c

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # two handles of at most 2 x 10 bytes each, padded, plus the 8-byte magic
BLOCK_TRAILER_SIZE = 5  # 1 type byte + 4-byte masked CRC-32C
NO_COMPRESSION, SNAPPY_COMPRESSION = 0, 1


@dataclass(frozen=True)
class BlockHandle:
    """Where a block lies in the file: ``offset`` and ``size`` in bytes (trailer excluded)."""

    offset: int
    size: int


def decode_handle(buf: memoryview, pos: int = 0) -> tuple[BlockHandle, int]:
    """The handle (two varint64s) at ``buf[pos:]``, and the next position."""
    offset, pos = read_varint(buf, pos)
    size, pos = read_varint(buf, pos)
    return BlockHandle(offset, size), pos


def is_table(path: str | os.PathLike[str]) -> bool:
    """Whether the file ends with the table magic (cheap; reads 8 bytes)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < FOOTER_SIZE:
            return False
        f.seek(-8, os.SEEK_END)
        magic: int = struct.unpack("<Q", f.read(8))[0]
        return magic == TABLE_MAGIC


class Table:
    """A read-only table file (a context manager); values are memoryviews into their block."""

    def __init__(self, path: str | os.PathLike[str], *, verify_checksums: bool = True) -> None:
        self.path = Path(path)
        self.verify_checksums = verify_checksums
        try:
            self._file: io.BufferedReader = open(self.path, "rb")  # noqa: SIM115 (closed by close())
        except FileNotFoundError as e:
            raise CheckpointError(f"{self.path}: no such file") from e
        self._size = os.fstat(self._file.fileno()).st_size
        try:
            self._index = self._read_index()
        except BaseException:
            self._file.close()
            raise
        self._separators = [key for key, _ in self._index]

    def __enter__(self) -> Table:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def error(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: {what}")

    def _read_index(self) -> list[tuple[bytes, BlockHandle]]:
        """The index block's (key, handle) pairs, from the footer."""
        if self._size < FOOTER_SIZE:
            raise self.error(f"not a TensorFlow table: {self._size} bytes is shorter than the footer")
        footer = self._read_exact(self._size - FOOTER_SIZE, FOOTER_SIZE).data
        (magic,) = struct.unpack_from("<Q", footer, FOOTER_SIZE - 8)
        if magic != TABLE_MAGIC:
            raise self.error(
                f"not a TensorFlow table (bad footer magic {magic:#018x}; the file may be truncated "
                "or not a checkpoint)"
            )
        try:
            _, pos = decode_handle(footer)  # the metaindex: TensorFlow stores no filters in it
            index_handle, _ = decode_handle(footer, pos)
            entries = list(self._block_entries(self.read_block(index_handle)))
            return [(key, decode_handle(value)[0]) for key, value in entries]
        except DecodeError as e:
            raise self.error(f"corrupt table index ({e})") from e

    def _read_exact(self, offset: int, size: int) -> np.ndarray:
        """``size`` bytes from ``offset`` into a fresh uint8 array."""
        if offset < 0 or size < 0 or offset + size > self._size:
            raise self.error(
                f"truncated or corrupt: needs bytes [{offset}, {offset + size}) but the file has {self._size}"
            )
        buf = np.empty(size, dtype=np.uint8)
        self._file.seek(offset)
        if self._file.readinto(buf.data) != size:
            raise self.error(f"file shrank while reading bytes [{offset}, {offset + size})")
        return buf

    def read_block(self, handle: BlockHandle) -> memoryview:
        """A block's bytes, its type byte and checksum checked."""
        raw = self._read_exact(handle.offset, handle.size + BLOCK_TRAILER_SIZE)
        kind = int(raw[handle.size])
        if kind == SNAPPY_COMPRESSION:
            raise self.error(
                f"block at offset {handle.offset} is snappy-compressed, which this reader does not "
                "support (TensorFlow writes checkpoints uncompressed)"
            )
        if kind != NO_COMPRESSION:
            raise self.error(f"block at offset {handle.offset} has unknown compression type {kind}")
        if self.verify_checksums:
            (stored,) = struct.unpack_from("<I", raw.data, handle.size + 1)
            actual = masked_crc32c(raw[: handle.size + 1])
            if actual != stored:
                raise self.error(
                    f"checksum mismatch in the block at offset {handle.offset} ({handle.size} bytes): "
                    f"stored {stored:#010x}, computed {actual:#010x}; the file is corrupt"
                )
        return raw.data[: handle.size]

    def _block_entries(self, block: memoryview) -> Iterator[tuple[bytes, memoryview]]:
        if len(block) < 4:
            raise self.error(f"corrupt block: {len(block)} bytes cannot hold a restart count")
        (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
        limit = len(block) - 4 * (num_restarts + 1)
        if num_restarts == 0 or limit < 0:
            raise self.error(f"corrupt block: {num_restarts} restart points in {len(block)} bytes")
        pos, key = 0, b""
        block_limit = memoryview(block)[:limit]
        while pos < limit:
            try:
                shared, pos = read_varint(block_limit, pos)
                non_shared, pos = read_varint(block_limit, pos)
                value_size, pos = read_varint(block_limit, pos)
            except DecodeError as e:
                raise self.error(f"corrupt block: bad entry header near byte {pos} ({e})") from e
            end = pos + non_shared + value_size
            if shared > len(key) or end > limit:
                raise self.error(f"corrupt block: the entry at byte {pos} overruns its key or block")
            key = key[:shared] + bytes(block[pos : pos + non_shared])
            yield key, block[pos + non_shared : end]
            pos = end

    def get(self, key: bytes) -> memoryview | None:
        """The value stored under ``key``, or None."""
        position = bisect.bisect_left(self._separators, key)
        if position == len(self._index):
            return None
        for found, value in self._block_entries(self.read_block(self._index[position][1])):
            if found >= key:
                return value if found == key else None
        return None

    def items(self) -> Iterator[tuple[bytes, memoryview]]:
        """Every (key, value) in key order."""
        for _, handle in self._index:
            yield from self._block_entries(self.read_block(handle))
