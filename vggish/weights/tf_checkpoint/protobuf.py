"""A minimal protocol-buffer wire-format decoder: just what TensorFlow's checkpoint messages need.

:func:`parse` groups a message's fields by number; the accessors read them as the schema says,
repeated numbers straight into NumPy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
_MAX_VARINT_BYTES = 10
_WIRE_WIDTHS = {FIXED64: 8, FIXED32: 4}


class DecodeError(ValueError):
    """Malformed protocol-buffer bytes (the caller adds the file name)."""


@dataclass(frozen=True)
class Field:
    """One field occurrence: ``value`` is an int for varints, else the field's raw bytes."""

    number: int
    wire_type: int
    value: int | memoryview


Message = dict[int, list[Field]]


def read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """Decodes the unsigned varint at ``buf[pos:]``; returns ``(value, next position)``."""
    value = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= len(buf):
            raise DecodeError("truncated varint")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            return value, pos + i + 1
    raise DecodeError("varint longer than 10 bytes")


def parse(buf: bytes | memoryview) -> Message:
    """Groups a message's fields by field number (repeated fields keep their order)."""
    buf = memoryview(buf).cast("B")
    fields: Message = {}
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise DecodeError("field number 0")
        if wire_type == VARINT:
            value, pos = read_varint(buf, pos)
            fields.setdefault(number, []).append(Field(number, wire_type, value))
            continue
        if wire_type == LENGTH_DELIMITED:
            width, pos = read_varint(buf, pos)
        elif wire_type in _WIRE_WIDTHS:
            width = _WIRE_WIDTHS[wire_type]
        else:
            raise DecodeError(f"unsupported wire type {wire_type} (field {number})")
        if pos + width > len(buf):
            raise DecodeError(f"field {number} runs past the end of its message")
        fields.setdefault(number, []).append(Field(number, wire_type, buf[pos : pos + width]))
        pos += width
    return fields


def get_int(message: Message, number: int, default: int = 0) -> int:
    """The last occurrence of a varint field (protobuf's rule for repeated scalars), as unsigned."""
    fields = message.get(number)
    if not fields:
        return default
    field = fields[-1]
    if field.wire_type == VARINT:
        assert isinstance(field.value, int)
        return field.value
    if field.wire_type in _WIRE_WIDTHS:
        assert isinstance(field.value, memoryview)
        return int.from_bytes(field.value, "little")
    raise DecodeError(f"field {number} should be a number, found wire type {field.wire_type}")


def get_signed(message: Message, number: int, default: int = 0) -> int:
    """A varint field read as a two's-complement int64 (proto ``int32``/``int64``)."""
    value = get_int(message, number, default)
    return value - (1 << 64) if value >= 1 << 63 else value


def get_bytes(message: Message, number: int) -> memoryview | None:
    """The last occurrence of a length-delimited field, or None when absent."""
    fields = message.get(number)
    return _as_bytes(fields[-1]) if fields else None


def get_all_bytes(message: Message, number: int) -> list[memoryview]:
    """Every occurrence of a repeated length-delimited field (strings, sub-messages)."""
    return [_as_bytes(field) for field in message.get(number, [])]


def _as_bytes(field: Field) -> memoryview:
    if field.wire_type != LENGTH_DELIMITED or not isinstance(field.value, memoryview):
        raise DecodeError(
            f"field {field.number} should be length-delimited, found wire type {field.wire_type}"
        )
    return field.value


def decode_varints(buf: memoryview | bytes) -> np.ndarray:
    """A packed run of varints as (n,) uint64 (negatives as their 64-bit two's complement)."""
    data = np.frombuffer(buf, dtype=np.uint8)
    if data.size == 0:
        return np.zeros(0, dtype=np.uint64)
    if data[-1] >= 0x80:
        raise DecodeError("packed varints end in the middle of a value")
    ends = np.flatnonzero(data < 0x80)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > _MAX_VARINT_BYTES:
        raise DecodeError("varint longer than 10 bytes")
    shifts = (np.arange(data.size) - np.repeat(starts, lengths)).astype(np.uint64) * np.uint64(7)
    parts = (data & 0x7F).astype(np.uint64) << shifts
    return np.bitwise_or.reduceat(parts, starts)


def repeated_fixed(message: Message, number: int, dtype: str) -> np.ndarray:
    """A repeated fixed-width field, packed or not (a single packed run: a zero-copy view)."""
    width = np.dtype(dtype).itemsize
    chunks = []
    for field in message.get(number, []):
        wire_types = (LENGTH_DELIMITED, FIXED32, FIXED64)
        if not isinstance(field.value, memoryview) or field.wire_type not in wire_types:
            raise DecodeError(f"field {number} should hold {dtype} values, found wire type {field.wire_type}")
        if field.wire_type != LENGTH_DELIMITED and len(field.value) != width:
            raise DecodeError(
                f"field {number} should hold {dtype} values, found {len(field.value)}-byte items"
            )
        if len(field.value) % width:
            raise DecodeError(f"packed field {number} is not a whole number of {width}-byte values")
        chunks.append(np.frombuffer(field.value, dtype=dtype))
    if len(chunks) == 1:
        return chunks[0]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)


def repeated_varint(message: Message, number: int) -> np.ndarray:
    """A repeated varint field (``int32``, ``int64``, ``bool``...), packed or not, as uint64."""
    chunks = []
    for field in message.get(number, []):
        if field.wire_type == VARINT:
            assert isinstance(field.value, int)
            chunks.append(np.array([field.value], dtype=np.uint64))
        elif field.wire_type == LENGTH_DELIMITED:
            assert isinstance(field.value, memoryview)
            chunks.append(decode_varints(field.value))
        else:
            raise DecodeError(f"field {number} should hold varints, found wire type {field.wire_type}")
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint64)
