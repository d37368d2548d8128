"""Messages and values shared by both checkpoint formats: dtypes, shapes, slices, tensor values.

Field numbers from TensorFlow's ``tensor_shape.proto`` (2 ``dim``: 1 ``size``; 3
``unknown_rank``), ``tensor_slice.proto`` (1 ``extent``: 1 ``start``, 2 ``length``) and
``tensor.proto`` (1 ``dtype``, 4 ``tensor_content``, typed fields in :data:`DTYPES`). bfloat16 is
returned as float32 (exactly); everything else keeps TensorFlow's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import google_crc32c
import numpy as np

from vggish.weights.tf_checkpoint import protobuf as pb

FULL_EXTENT = -1  # TensorFlow's "length" of a slice that spans its whole dimension
MASK_DELTA = 0xA282EAD8  # TensorFlow's crc32c::Mask constant


def mask(crc: int) -> int:
    """TensorFlow's stored form of a CRC-32C: rotated right by 15 bits, plus a constant."""
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


def masked_crc32c(data: bytes | np.ndarray) -> int:
    """The masked CRC-32C of ``data``, as TensorFlow stores it."""
    return mask(google_crc32c.value(data))


@dataclass(frozen=True)
class DType:
    """A TensorFlow dtype the reader supports."""

    name: str
    storage: str  # NumPy dtype of the raw little-endian bytes; "string" for strings
    proto_field: int  # the TensorProto field that holds V1 values of this dtype
    proto_kind: str  # how that field is encoded: a NumPy dtype, "varint" or "bytes"


DTYPES: dict[int, DType] = {
    1: DType("float32", "<f4", 5, "<f4"),
    2: DType("float64", "<f8", 6, "<f8"),
    3: DType("int32", "<i4", 7, "varint"),
    4: DType("uint8", "u1", 7, "varint"),
    5: DType("int16", "<i2", 7, "varint"),
    6: DType("int8", "i1", 7, "varint"),
    7: DType("string", "string", 8, "bytes"),
    8: DType("complex64", "<c8", 9, "<f4"),
    9: DType("int64", "<i8", 10, "varint"),
    10: DType("bool", "?", 11, "varint"),
    14: DType("bfloat16", "<u2", 13, "varint"),
    17: DType("uint16", "<u2", 7, "varint"),
    18: DType("complex128", "<c16", 12, "<f8"),
    19: DType("float16", "<f2", 13, "varint"),
    22: DType("uint32", "<u4", 16, "varint"),
    23: DType("uint64", "<u8", 17, "varint"),
}

# Names of the dtypes that are refused, for clear messages.
UNSUPPORTED_DTYPE_NAMES = {
    0: "invalid", 11: "qint8", 12: "quint8", 13: "qint32", 15: "qint16", 16: "quint16",
    20: "resource", 21: "variant", 24: "float8_e5m2", 25: "float8_e4m3fn", 26: "float8_e4m3fnuz",
    27: "float8_e4m3b11fnuz", 28: "float8_e5m2fnuz", 29: "int4", 30: "uint4", 31: "int2", 32: "uint2",
    33: "float4_e2m1fn",
}  # fmt: skip


class UnsupportedDTypeError(ValueError):
    """A tensor whose dtype this reader cannot decode."""


def lookup_dtype(enum: int) -> DType:
    """The supported dtype for a ``DataType`` enum value (else UnsupportedDTypeError)."""
    if enum in DTYPES:
        return DTYPES[enum]
    name = UNSUPPORTED_DTYPE_NAMES.get(enum, f"unknown DataType {enum}")
    raise UnsupportedDTypeError(f"dtype {name} is not supported")


def result_dtype(dtype: DType) -> np.dtype:
    """The NumPy dtype the reader returns for ``dtype`` (bfloat16 widens to float32)."""
    if dtype.name == "string":
        return np.dtype(object)
    if dtype.name == "bfloat16":
        return np.dtype(np.float32)
    return np.dtype(dtype.storage).newbyteorder("=")


def parse_shape(buf: memoryview | None) -> tuple[int, ...]:
    """A ``TensorShapeProto`` as a tuple of sizes (DecodeError for an unknown rank or size)."""
    if buf is None:
        return ()
    message = pb.parse(buf)
    if pb.get_int(message, 3):
        raise pb.DecodeError("tensor shape has unknown rank")
    dims = tuple(pb.get_signed(pb.parse(dim), 1) for dim in pb.get_all_bytes(message, 2))
    if any(size < 0 for size in dims):
        raise pb.DecodeError(f"tensor shape {dims} has an unknown dimension")
    return dims


def parse_slice(buf: memoryview) -> tuple[tuple[int, int], ...]:
    """A ``TensorSliceProto`` as ``(start, length)`` per dimension, length -1 for a full one."""
    extents = []
    for extent in pb.get_all_bytes(pb.parse(buf), 1):
        message = pb.parse(extent)
        length = pb.get_signed(message, 2) if 2 in message else FULL_EXTENT
        extents.append((pb.get_signed(message, 1), length))
    return tuple(extents)


def from_raw(data: np.ndarray | memoryview, dtype: DType, shape: tuple[int, ...]) -> np.ndarray:
    """Little-endian raw bytes as a tensor, without a copy if possible."""
    itemsize = np.dtype(dtype.storage).itemsize
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) != count * itemsize:
        raise pb.DecodeError(f"{len(data)} bytes of data for shape {shape} of {dtype.name}")
    values = np.frombuffer(data, dtype=dtype.storage)
    return native(values, dtype).reshape(shape)


def native(values: np.ndarray, dtype: DType) -> np.ndarray:
    """Stored values as the returned dtype: native byte order, bf16 -> float32."""
    if dtype.name == "bfloat16":
        return (values.astype(np.uint32) << 16).view(np.float32)
    return values.astype(result_dtype(dtype), copy=False)


def tensor_proto_values(buf: memoryview, dtype: DType, count: int) -> np.ndarray:
    """The flat values of a V1 ``TensorProto`` holding ``count`` elements of ``dtype``."""
    message = pb.parse(buf)
    content = pb.get_bytes(message, 4)
    if content is not None and len(content):
        return from_raw(content, dtype, (count,))
    if dtype.proto_kind == "bytes":
        strings = np.empty(count, dtype=object)
        items = [bytes(item) for item in pb.get_all_bytes(message, dtype.proto_field)]
        if len(items) != count:
            raise pb.DecodeError(f"{len(items)} strings for {count} elements")
        strings[:] = items
        return strings
    if dtype.proto_kind == "varint":
        values = _from_varints(pb.repeated_varint(message, dtype.proto_field), dtype)
    else:
        values = pb.repeated_fixed(message, dtype.proto_field, dtype.proto_kind)
        values = values.view(dtype.storage) if dtype.name.startswith("complex") else values
        values = values.astype(result_dtype(dtype), copy=False)
    if values.size != count:
        raise pb.DecodeError(f"{values.size} values of {dtype.name} for {count} elements")
    return values


def _from_varints(values: np.ndarray, dtype: DType) -> np.ndarray:
    """uint64 varint payloads as ``dtype``."""
    if dtype.name in ("float16", "bfloat16"):  # half_val holds the 16-bit patterns
        bits = values.astype(np.uint16)
        return bits.view(np.float16) if dtype.name == "float16" else native(bits, dtype)
    if dtype.name == "bool":
        flags: np.ndarray = values != 0
        return flags
    signed = np.dtype(dtype.storage).kind == "i"
    return (values.view(np.int64) if signed else values).astype(result_dtype(dtype))


def decode_strings(data: np.ndarray, count: int) -> tuple[np.ndarray, int]:
    """A V2 string tensor (varint64 lengths, a 4-byte CRC of them, the bytes): the (count,) object
    array, and the entry's masked CRC-32C (over the lengths as uint32, the 4 bytes, the strings)."""
    view = data.data.cast("B")
    lengths, pos = [], 0
    for _ in range(count):
        length, pos = pb.read_varint(view, pos)
        lengths.append(length)
    if pos + 4 + sum(lengths) != len(view):
        raise pb.DecodeError(f"string tensor of {count} elements does not fill its {len(view)} bytes")
    crc = google_crc32c.extend(google_crc32c.value(np.array(lengths, dtype="<u4")), data[pos:])
    pos += 4
    out = np.empty(count, dtype=object)
    for i, length in enumerate(lengths):
        out[i] = bytes(view[pos : pos + length])
        pos += length
    return out, mask(crc)
