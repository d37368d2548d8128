"""Tensor slices: the table keys they are stored under, and reassembly into whole tensors.

A slice's key is TensorFlow's order-preserving "OrderedCode" of ``0``, the tensor name (an
escaped string), the rank, then ``start`` and ``length`` of every dimension (signed numbers).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vggish.weights.tf_checkpoint.protobuf import DecodeError
from vggish.weights.tf_checkpoint.tensors import FULL_EXTENT

Extents = tuple[tuple[int, int], ...]
_STRING_ESCAPES = {0x00: b"\x00\xff", 0xFF: b"\xff\x00"}
_STRING_TERMINATOR = b"\x00\x01"


def _increasing_number(value: int) -> bytes:
    size = (value.bit_length() + 7) // 8
    return bytes([size]) + value.to_bytes(size, "big")


def _increasing_string(text: bytes) -> bytes:
    return b"".join(_STRING_ESCAPES.get(byte, bytes([byte])) for byte in text) + _STRING_TERMINATOR


def _signed_increasing_number(value: int) -> bytes:
    magnitude = ~value if value < 0 else value
    size = 1
    while magnitude >= 1 << (7 * size - 1):
        size += 1
    header = ((1 << size) - 1) << (7 * size)
    return ((value & ((1 << 8 * size) - 1)) ^ header).to_bytes(size, "big")


def slice_key(name: str, extents: Extents) -> bytes:
    """The table key of one slice of tensor ``name``."""
    parts = [_increasing_number(0), _increasing_string(name.encode()), _increasing_number(len(extents))]
    for start, length in extents:
        parts += [_signed_increasing_number(start), _signed_increasing_number(length)]
    return b"".join(parts)


def full_extents(extents: Extents, shape: tuple[int, ...]) -> Extents:
    """Extents with every dimension made explicit (DecodeError if they do not fit ``shape``)."""
    if not extents:
        extents = tuple((0, FULL_EXTENT) for _ in shape)
    if len(extents) != len(shape):
        raise DecodeError(f"slice of rank {len(extents)} for a tensor of shape {shape}")
    explicit = tuple(
        (start, size if length == FULL_EXTENT else length)
        for (start, length), size in zip(extents, shape, strict=True)
    )
    for (start, length), size in zip(explicit, shape, strict=True):
        if start < 0 or length < 0 or start + length > size:
            raise DecodeError(f"slice {explicit} lies outside the tensor shape {shape}")
    return explicit


def slice_shape(extents: Extents, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(length for _, length in full_extents(extents, shape))


def assemble(
    shape: tuple[int, ...], dtype: np.dtype, pieces: Sequence[tuple[Extents, np.ndarray]]
) -> np.ndarray:
    """A tensor from its (extents, C-order values) slices (DecodeError unless they cover it once)."""
    regions = [full_extents(extents, shape) for extents, _ in pieces]
    if len(pieces) == 1 and all(length == size for (_, length), size in zip(regions[0], shape, strict=True)):
        return pieces[0][1].reshape(shape)
    covered = sum(int(np.prod([length for _, length in region], dtype=np.int64)) for region in regions)
    if covered != int(np.prod(shape, dtype=np.int64)):
        raise DecodeError(f"slices cover {covered} elements of a tensor of shape {shape}")
    out = np.empty(shape, dtype=dtype)
    for region, (_, values) in zip(regions, pieces, strict=True):
        index = tuple(slice(start, start + length) for start, length in region)
        out[index] = values.reshape(tuple(length for _, length in region))
    return out
