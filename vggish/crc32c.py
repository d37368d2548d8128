"""CRC-32C (Castagnoli), as TensorFlow's tables and tensor bundles store it, in NumPy.

TensorFlow checksums every table block and every V2 tensor with CRC-32C (reflected polynomial
0x82F63B78, initial value and final XOR 0xFFFFFFFF) and stores it *masked*
(:func:`mask`), so that a CRC of data that itself holds CRCs does not degenerate.

Speed without a C extension comes from linearity. A CRC register is a 32-bit vector and
"feed n zero bytes" is a fixed 32x32 matrix over GF(2), applied with two 65536-entry lookup
tables. Large inputs are cut into rows of ``lanes`` 32-bit words; lane ``l`` carries the
contribution of word ``l`` of every row, and one vectorised step per row XORs the row in and
advances every lane by a whole row. At the end the lane registers, written out as bytes, have
the same CRC as the data they summarise, so the same routine finishes the job on a much shorter
input. A 277 MB checkpoint takes about a second (see ``benchmarks/bench_convert.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

POLYNOMIAL = 0x82F63B78  # Castagnoli, bit-reflected
MASK_DELTA = 0xA282EAD8  # TensorFlow's crc32c::Mask constant
_U32 = 0xFFFFFFFF
_SCALAR_LIMIT = 2048  # bytes: below this a plain byte loop is quicker than setting up lanes
_MIN_ROWS = 32  # a lane layout is worth it only with at least this many rows
_MAX_LANES = 16384  # 64 KiB rows: the row and both tables stay in the L2 cache

Buffer = bytes | bytearray | memoryview | np.ndarray


def _byte_table() -> tuple[int, ...]:
    """The classic table: ``table[b]`` is the register after feeding byte ``b`` into zero."""
    table = []
    for byte in range(256):
        reg = byte
        for _ in range(8):
            reg = (reg >> 1) ^ (POLYNOMIAL if reg & 1 else 0)
        table.append(reg)
    return tuple(table)


_TABLE = _byte_table()


def _update_bytes(reg: int, data: Sequence[int]) -> int:
    """Feeds bytes into the (pre-inverted) register one at a time."""
    table = _TABLE
    for byte in data:
        reg = table[(reg ^ byte) & 0xFF] ^ (reg >> 8)
    return reg


def _apply(columns: Sequence[int], vector: int) -> int:
    """Applies a GF(2) 32x32 matrix, given by the images of the 32 unit vectors, to a vector."""
    out = 0
    for bit, column in enumerate(columns):
        if vector >> bit & 1:
            out ^= column
    return out


def _compose(outer: Sequence[int], inner: Sequence[int]) -> tuple[int, ...]:
    """The matrix of ``outer(inner(x))``."""
    return tuple(_apply(outer, column) for column in inner)


@functools.lru_cache(maxsize=16)
def _zero_bytes_operator(count: int) -> tuple[int, ...]:
    """The matrix that advances a register over ``count`` zero bytes (square and multiply)."""
    result = tuple(1 << bit for bit in range(32))
    power = tuple(_TABLE[(1 << bit) & 0xFF] ^ ((1 << bit) >> 8) for bit in range(32))
    while count:
        if count & 1:
            result = _compose(power, result)
        power = _compose(power, power)
        count >>= 1
    return result


@functools.lru_cache(maxsize=16)
def _half_word_tables(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables of the zero-bytes operator for the low and high 16 bits of a register."""
    columns = np.array(_zero_bytes_operator(count), dtype=np.uint32)
    index = np.arange(1 << 16, dtype=np.uint32)
    low = np.zeros(1 << 16, dtype=np.uint32)
    high = np.zeros(1 << 16, dtype=np.uint32)
    for bit in range(16):
        selected = ((index >> bit) & 1).astype(bool)
        low[selected] ^= columns[bit]
        high[selected] ^= columns[bit + 16]
    return low, high


def _update_lanes(reg: int, words: np.ndarray) -> np.ndarray:
    """Runs the lanes over ``words`` (rows, lanes) uint32 and returns the lane registers.

    Lane ``l``'s register sits at the start of word ``l`` of the last row, with that word
    already XORed in; every other row has been XORed in and advanced by one row length.
    """
    rows, lanes = words.shape
    low, high = _half_word_tables(4 * lanes)
    state = np.zeros(lanes, dtype=np.uint32)
    state[0] = reg
    mixed, low_half, high_half = (np.empty(lanes, dtype=np.uint32) for _ in range(3))
    for row in range(rows - 1):
        np.bitwise_xor(state, words[row], out=mixed)
        np.bitwise_and(mixed, 0xFFFF, out=low_half)
        np.right_shift(mixed, 16, out=high_half)
        np.bitwise_xor(low[low_half], high[high_half], out=state)
    np.bitwise_xor(state, words[rows - 1], out=mixed)
    return mixed


def _update(reg: int, data: np.ndarray) -> int:
    """Feeds a uint8 array into the register, using lanes for all but a short tail."""
    size = data.size
    if size < _SCALAR_LIMIT:
        return _update_bytes(reg, data.tobytes())
    lanes = _MAX_LANES
    while lanes > 1 and 4 * lanes * _MIN_ROWS > size:
        lanes //= 2
    body = size - size % (4 * lanes)
    words = data[:body].view("<u4").reshape(-1, lanes)
    summary = _update_lanes(reg, words).astype("<u4").view(np.uint8)
    reg = _update(0, summary)
    return _update_bytes(reg, data[body:].tobytes())


def _as_uint8(data: Buffer) -> np.ndarray:
    """A flat uint8 view of any contiguous buffer, without copying."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def extend(crc: int, data: Buffer) -> int:
    """The CRC-32C of ``previous + data``, given ``crc`` = CRC-32C of ``previous``.

    Args:
        crc: the CRC of the bytes before ``data`` (0 for none).
        data: any contiguous buffer (bytes, memoryview, NumPy array).

    Returns:
        The unmasked CRC-32C, 0 <= value < 2**32.
    """
    return _update(crc ^ _U32, _as_uint8(data)) ^ _U32


def crc32c(data: Buffer) -> int:
    """The CRC-32C of ``data`` (``crc32c(b"123456789") == 0xE3069283``)."""
    return extend(0, data)


def mask(crc: int) -> int:
    """TensorFlow's masked form of a CRC: rotate right by 15 bits, add a constant (mod 2**32)."""
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & _U32


def unmask(masked: int) -> int:
    """Inverse of :func:`mask`."""
    rotated = (masked - MASK_DELTA) & _U32
    return ((rotated >> 17) | (rotated << 15)) & _U32
