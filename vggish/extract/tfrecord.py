"""AudioSet-style ``tf.train.SequenceExample`` records in TFRecord files, written without TensorFlow.

The protobuf messages are few and small, so they are encoded by hand (wire format: a varint key
``field << 3 | wire_type``, then a varint, or a varint length and the bytes). The layout follows
AudioSet's released features::

    context:        video_id (bytes), path (bytes), start_time_seconds, end_time_seconds (float)
    feature_lists:  audio_embedding: one bytes_list per example holding its 128 uint8 values

A TFRecord file is a sequence of records: length (uint64 LE), masked CRC-32C of those 8 bytes
(uint32 LE), the data, masked CRC-32C of the data (uint32 LE).
"""

from __future__ import annotations

import struct

import numpy as np

from vggish.weights.tf_checkpoint.tensors import masked_crc32c

_LENGTH_DELIMITED = 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: key, length, payload."""
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
    """Encodes one input as a SequenceExample.

    Args:
        video_id: the record's id (AudioSet's ``video_id``).
        path: the input file's path.
        start_seconds: start of the embedded segment.
        end_seconds: its end.
        features: (N, 128) uint8 postprocessed embeddings, one bytes entry per row.

    Returns:
        The serialized message.
    """
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
    """Frames one record: length, its masked CRC, the data, its masked CRC."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))
