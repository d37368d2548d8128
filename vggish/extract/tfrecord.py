"""AudioSet-style ``tf.train.SequenceExample`` records in TFRecord files, without TensorFlow: the
few small protobuf messages are encoded by hand. Context: video_id, path, start and end seconds;
feature list ``audio_embedding``: one bytes entry of 128 uint8 values per example.
"""

from __future__ import annotations

import struct

import numpy as np

from vggish.weights.tf_checkpoint.tensors import masked_crc32c

_LENGTH_DELIMITED = 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def bytes_feature(values: list[bytes]) -> bytes:
    """``Feature{bytes_list: BytesList{value: values}}``."""
    return _field(1, b"".join(_field(1, v) for v in values))


def float_feature(values: list[float]) -> bytes:
    """``Feature{float_list: FloatList{value: values}}`` (packed float32)."""
    return _field(2, _field(1, struct.pack(f"<{len(values)}f", *values)))


def _map_entry(key: str, value: bytes) -> bytes:
    return _field(1, key.encode("utf-8")) + _field(2, value)


def sequence_example(
    video_id: str, path: str, start_seconds: float, end_seconds: float, features: np.ndarray
) -> bytes:
    """One input as a serialized SequenceExample of (N, 128) uint8 ``features``."""
    if features.dtype != np.uint8 or features.ndim != 2:
        raise ValueError(f"features must be (N, 128) uint8; got {features.shape} {features.dtype}")
    context = {
        "video_id": bytes_feature([video_id.encode("utf-8")]),
        "path": bytes_feature([path.encode("utf-8")]),
        "start_time_seconds": float_feature([start_seconds]),
        "end_time_seconds": float_feature([end_seconds]),
    }
    features_msg = b"".join(_field(1, _map_entry(k, v)) for k, v in context.items())
    frames = b"".join(_field(1, bytes_feature([row.tobytes()])) for row in features)
    lists_msg = _field(1, _map_entry("audio_embedding", frames))
    return _field(1, features_msg) + _field(2, lists_msg)


def tfrecord(data: bytes) -> bytes:
    """Frames one record: length (uint64 LE), its masked CRC-32C, the data, its masked CRC-32C."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))
