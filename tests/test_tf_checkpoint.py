"""The TensorFlow checkpoint reader: checksums, wire format, and exact values from real TF files.

TensorFlow writes the checkpoints (V1 and V2, with ``tf.compat.v1.train.Saver``); the reader,
which does not use TensorFlow, must return exactly the values, dtypes and shapes that were saved,
and must refuse corrupt, truncated or checksum-failing files with a message naming the file.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vggish.weights.tf_checkpoint import (
    CheckpointError,
    checkpoint_files,
    detect_format,
    list_variables,
    read_checkpoint,
)
from vggish.weights.tf_checkpoint import protobuf as pb
from vggish.weights.tf_checkpoint.slices import _signed_increasing_number
from vggish.weights.tf_checkpoint.table import FOOTER_SIZE, Table
from vggish.weights.tf_checkpoint.tensors import UnsupportedDTypeError, lookup_dtype, masked_crc32c
from vggish.weights.tf_checkpoint.v1 import V1Reader

# --- CRC-32C (google-crc32c) and TensorFlow's mask -------------------------------------------------


def bitwise_crc32c(data: bytes) -> int:
    """The textbook bit-at-a-time CRC-32C, as an independent reference."""
    reg = 0xFFFFFFFF
    for byte in data:
        reg ^= byte
        for _ in range(8):
            reg = (reg >> 1) ^ (0x82F63B78 if reg & 1 else 0)
    return reg ^ 0xFFFFFFFF


def tf_mask(crc: int) -> int:
    """TensorFlow's crc32c::Mask, restated: rotate right by 15 bits, add 0xa282ead8 (mod 2**32)."""
    return ((crc >> 15 | crc << 17) + 0xA282EAD8) % 2**32


@pytest.mark.parametrize(
    ("data", "crc"),
    [
        # The CRC catalogue's check value and RFC 3720's (iSCSI) test vectors.
        (b"123456789", 0xE3069283),
        (b"", 0),
        (bytes(32), 0x8A9136AA),
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
        (bytes(range(31, -1, -1)), 0x113FDB5C),
    ],
)
def test_masked_crc32c_of_standard_vectors(data: bytes, crc: int) -> None:
    assert masked_crc32c(data) == tf_mask(crc)
    assert masked_crc32c(np.frombuffer(data, np.uint8)) == tf_mask(crc)  # what the readers pass


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=5000))
def test_masked_crc32c_matches_the_bitwise_reference(data: bytes) -> None:
    assert masked_crc32c(data) == tf_mask(bitwise_crc32c(data))


# --- Protocol-buffer wire format ----------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


@given(st.lists(st.integers(-(2**63), 2**64 - 1), max_size=200))
def test_packed_varints_decode_like_one_at_a_time(values: list[int]) -> None:
    payload = b"".join(encode_varint(v) for v in values)
    expected = [v & ((1 << 64) - 1) for v in values]
    assert pb.decode_varints(payload).tolist() == expected
    pos, one_by_one = 0, []
    while pos < len(payload):
        value, pos = pb.read_varint(memoryview(payload), pos)
        one_by_one.append(value)
    assert one_by_one == expected


def test_message_fields_packed_and_unpacked() -> None:
    floats = np.array([1.5, -2.0, 3.25], dtype="<f4")
    message = (
        b"\x08\x96\x01"  # field 1 varint 150
        + b"\x2a"  # field 5, length-delimited: packed floats
        + encode_varint(floats.nbytes)
        + floats.tobytes()
        + b"\x2d"  # field 5 again, one unpacked fixed32
        + np.float32(7.0).tobytes()
        + b"\x32\x03abc"  # field 6 bytes
    )
    fields = pb.parse(message)
    assert pb.get_int(fields, 1) == 150
    assert pb.repeated_fixed(fields, 5, "<f4").tolist() == [1.5, -2.0, 3.25, 7.0]
    assert bytes(pb.get_bytes(fields, 6) or b"") == b"abc"
    with pytest.raises(pb.DecodeError, match="runs past the end"):
        pb.parse(message[:-1])
    with pytest.raises(pb.DecodeError, match="truncated varint"):
        pb.parse(b"\x08\x96")


@given(st.integers(-(2**63), 2**63 - 2), st.integers(1, 2**62))
def test_slice_key_numbers_sort_like_the_numbers(value: int, step: int) -> None:
    # The defining property of TensorFlow's OrderedCode: byte order equals numeric order.
    bigger = min(value + step, 2**63 - 1)
    assert _signed_increasing_number(value) < _signed_increasing_number(bigger)


def test_unsupported_dtypes_are_named() -> None:
    with pytest.raises(UnsupportedDTypeError, match="variant"):
        lookup_dtype(21)
    with pytest.raises(UnsupportedDTypeError, match="unknown DataType 99"):
        lookup_dtype(99)


# --- Exact values from TensorFlow's own files ----------------------------------------------------


@pytest.fixture(scope="module")
def tfr() -> ModuleType:
    """tests/tf_reference.py, which needs TensorFlow (a test-only dependency)."""
    pytest.importorskip("tensorflow")
    import tf_reference

    return tf_reference


def saved_values(tfr: ModuleType, version: str) -> dict[str, np.ndarray]:
    """Every dtype the format can hold, with extreme values, a scalar, empties and strings."""
    rng = np.random.default_rng(7)
    values: dict[str, np.ndarray] = {
        "model/f32": rng.standard_normal((3, 5, 2)).astype(np.float32),
        "model/f64": np.array([np.pi, -0.0, 1e-300, np.inf, -np.inf], dtype=np.float64),
        "model/f16": np.array([1.5, -2.0, 65504.0, 6e-8], dtype=np.float16),
        "ints/i8": np.array([-128, 0, 127], dtype=np.int8),
        "ints/i16": np.array([-32768, 7, 32767], dtype=np.int16),
        "ints/i32": np.array([[-(2**31), -1], [0, 2**31 - 1]], dtype=np.int32),
        "ints/i64": np.array([-(2**63), -1, 2**63 - 1], dtype=np.int64),
        "ints/u8": np.array([0, 1, 255], dtype=np.uint8),
        "ints/u16": np.array([0, 65535], dtype=np.uint16),
        "flags": np.array([[True, False, True]]),
        "scalar": np.array(3.5, dtype=np.float32),
        "global_step": np.array(123456789, dtype=np.int64),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "empty_i64": np.zeros((2, 0), dtype=np.int64),
        "strings": np.array([b"hello", b"", b"\x00\xff" * 200], dtype=object),
        "a/long.scope-name/x_1": rng.standard_normal(70_000).astype(np.float32),
    }
    if version == "v2":  # the V1 writer refuses these dtypes
        values["ints/u32"] = np.array([0, 2**32 - 1], dtype=np.uint32)
        values["ints/u64"] = np.array([0, 2**64 - 1], dtype=np.uint64)
        values["model/bf16"] = np.array([1.5, -3.0, 2.0**-100], dtype=tfr.bfloat16_dtype())
    return values


Written = tuple[Path, dict[str, np.ndarray]]
PARTITIONED = {"part/small": (10, 3, 3), "part/large": (20_000, 3, 3)}  # name -> (rows, cols, parts)


@pytest.fixture(scope="module", params=["v1", "v2"])
def written(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tfr: ModuleType
) -> Written:
    """A TensorFlow-written checkpoint of every dtype, plus variables saved in partitions."""
    version: str = request.param
    values = saved_values(tfr, version)
    rng = np.random.default_rng(8)
    partitioned = {
        name: rng.standard_normal((r, c)).astype(np.float32) for name, (r, c, _) in PARTITIONED.items()
    }
    prefix = tmp_path_factory.mktemp(version) / "model.ckpt"
    tfr.write_checkpoint(
        prefix,
        {**values, **partitioned},
        version,
        partitions={name: parts for name, (_, _, parts) in PARTITIONED.items()},
    )
    return prefix, {**values, **partitioned}


def expected_value(value: np.ndarray) -> np.ndarray:
    """What the reader returns: the saved value, bfloat16 widened to float32."""
    return value.astype(np.float32) if value.dtype.name == "bfloat16" else value


@pytest.mark.tensorflow
def test_reader_returns_exactly_what_tensorflow_wrote(written: Written) -> None:
    prefix, values = written
    got = read_checkpoint(prefix)
    assert set(got) == set(values)
    for name, value in values.items():
        expected = expected_value(value)
        assert got[name].dtype == expected.dtype, name
        assert got[name].shape == expected.shape, name
        if expected.dtype == object:
            assert got[name].tolist() == expected.tolist(), name
        else:
            assert np.array_equal(got[name], expected, equal_nan=True), name
            assert got[name].flags.writeable


@pytest.mark.tensorflow
def test_list_variables_and_selected_reads(written: Written) -> None:
    prefix, values = written
    listed = list_variables(prefix)
    assert listed == {name: (v.shape, expected_value(v).dtype) for name, v in values.items()}
    picked = read_checkpoint(prefix, names=["scalar", "part/large"])
    assert list(picked) == ["scalar", "part/large"]
    with pytest.raises(CheckpointError, match=r"no variable named 'nope'") as info:
        read_checkpoint(prefix, names=["scalar", "nope"])
    assert str(prefix) in str(info.value)


@pytest.mark.tensorflow
def test_partitioned_variables_agree_with_tensorflows_reader(tmp_path: Path, tfr: ModuleType) -> None:
    # Partition boundaries at 0, 6667 and 13334 exercise one-, two- and three-byte key numbers.
    value = np.arange(20_000 * 3, dtype=np.float32).reshape(20_000, 3)
    prefix = tfr.write_checkpoint(tmp_path / "p.ckpt", {"w": value}, "v2", partitions={"w": 3})
    assert np.array_equal(tfr.tf_read_checkpoint(prefix, ["w"])["w"], value)
    assert np.array_equal(read_checkpoint(prefix)["w"], value)


@pytest.mark.tensorflow
def test_multi_shard_v2(tmp_path: Path, tfr: ModuleType) -> None:
    values = {f"v{i}": np.full((100, i + 1), i, dtype=np.float32) for i in range(5)}
    prefix = tfr.write_checkpoint(tmp_path / "m.ckpt", values, "v2", devices=2)
    files = checkpoint_files(prefix)
    assert [f.name for f in files] == [
        "m.ckpt.index",
        "m.ckpt.data-00000-of-00002",
        "m.ckpt.data-00001-of-00002",
    ]
    assert all(f.stat().st_size > 0 for f in files)
    got = read_checkpoint(prefix)
    assert all(np.array_equal(got[name], value) for name, value in values.items())


@pytest.mark.tensorflow
def test_detect_format_accepts_every_way_of_naming_a_checkpoint(tmp_path: Path, tfr: ModuleType) -> None:
    values = {"x": np.ones(3, np.float32)}
    v1 = tfr.write_checkpoint(tmp_path / "one.ckpt", values, "v1")
    tfr.write_checkpoint(tmp_path / "two.ckpt", values, "v2")
    assert detect_format(v1) == "v1"
    for name in ("two.ckpt", "two.ckpt.index", "two.ckpt.data-00000-of-00001"):
        assert detect_format(tmp_path / name) == "v2"
        assert np.array_equal(read_checkpoint(tmp_path / name)["x"], values["x"])
    with pytest.raises(CheckpointError, match="is a directory"):
        detect_format(tmp_path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        detect_format(tmp_path / "missing.ckpt")
    (tmp_path / "notes.txt").write_text("not a checkpoint, but long enough to hold a table footer" * 2)
    with pytest.raises(CheckpointError, match="not a TensorFlow checkpoint"):
        detect_format(tmp_path / "notes.txt")
    with pytest.raises(CheckpointError, match="not a V1"):  # a V2 index read as a V1 file
        V1Reader(tmp_path / "two.ckpt.index")


# --- Corruption -------------------------------------------------------------------------------


Small = tuple[Path, np.ndarray]


@pytest.fixture
def small_v1(tmp_path: Path, tfr: ModuleType) -> Small:
    value = np.arange(4096, dtype=np.float32)
    return tfr.write_checkpoint(tmp_path / "v1" / "s.ckpt", {"w": value, "b": value[:7]}, "v1"), value


@pytest.fixture
def small_v2(tmp_path: Path, tfr: ModuleType) -> Small:
    value = np.arange(4096, dtype=np.float32)
    return tfr.write_checkpoint(tmp_path / "v2" / "s.ckpt", {"w": value, "b": value[:7]}, "v2"), value


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


@pytest.mark.tensorflow
def test_v1_flipped_data_byte_fails_its_block_checksum(small_v1: Small) -> None:
    path, value = small_v1
    flip_byte(path, path.read_bytes().index(value[1000:1010].tobytes()))
    with pytest.raises(CheckpointError, match="checksum mismatch in the block") as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)
    unchecked = read_checkpoint(path, verify_checksums=False)["w"]  # the flip really hit the data
    assert not np.array_equal(unchecked, value) and np.array_equal(unchecked[1010:], value[1010:])


@pytest.mark.tensorflow
@pytest.mark.parametrize("fmt", ["v1", "v2"])
def test_flipped_index_byte_is_refused(fmt: str, small_v1: Small, small_v2: Small) -> None:
    prefix = (small_v1 if fmt == "v1" else small_v2)[0]
    table = prefix if fmt == "v1" else prefix.with_name(prefix.name + ".index")
    size = table.stat().st_size
    flip_byte(table, size - FOOTER_SIZE - 6)  # the last byte of the index block
    with pytest.raises(CheckpointError, match="checksum mismatch") as info:
        read_checkpoint(prefix)
    assert str(table) in str(info.value)
    with pytest.raises(CheckpointError, match="corrupt block"):
        read_checkpoint(prefix, verify_checksums=False)  # the block's structure is checked too


@pytest.mark.tensorflow
@pytest.mark.parametrize("fmt", ["v1", "v2"])
def test_truncated_table_is_refused(fmt: str, small_v1: Small, small_v2: Small) -> None:
    prefix = (small_v1 if fmt == "v1" else small_v2)[0]
    table = prefix if fmt == "v1" else prefix.with_name(prefix.name + ".index")
    truncate(table, table.stat().st_size - 100)
    with pytest.raises(CheckpointError, match=r"truncated|not a TensorFlow") as info:
        read_checkpoint(prefix)
    assert str(table) in str(info.value)
    truncate(table, 10)
    with pytest.raises(CheckpointError, match=r"shorter than the footer|not a TensorFlow"):
        read_checkpoint(prefix)


@pytest.mark.tensorflow
def test_v2_flipped_data_byte_fails_the_tensor_checksum(small_v2: Small) -> None:
    prefix, value = small_v2
    shard = prefix.with_name(prefix.name + ".data-00000-of-00001")
    flip_byte(shard, shard.read_bytes().index(value[2000:2010].tobytes()))
    with pytest.raises(CheckpointError, match=r"checksum mismatch for variable 'w'") as info:
        read_checkpoint(prefix)
    assert str(shard) in str(info.value)
    assert np.array_equal(read_checkpoint(prefix, names=["b"])["b"], value[:7])  # others still read


@pytest.mark.tensorflow
def test_v2_truncated_or_missing_shard(small_v2: Small) -> None:
    prefix, _ = small_v2
    shard = prefix.with_name(prefix.name + ".data-00000-of-00001")
    truncate(shard, shard.stat().st_size - 1)
    with pytest.raises(CheckpointError, match=r"truncated: variable '\w' needs bytes") as info:
        read_checkpoint(prefix)
    assert str(shard) in str(info.value)
    shard.unlink()
    with pytest.raises(CheckpointError, match="data shard missing"):
        read_checkpoint(prefix)


@pytest.mark.tensorflow
def test_snappy_blocks_are_refused_clearly(small_v1: Small) -> None:
    path, _ = small_v1
    with Table(path) as table:
        first_block = table._index[0][1]
    data = bytearray(path.read_bytes())
    data[first_block.offset + first_block.size] = 1  # the type byte: snappy
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="snappy-compressed"):
        read_checkpoint(path)


# --- Memory ----------------------------------------------------------------------------------


@pytest.mark.tensorflow
@pytest.mark.parametrize("fmt", ["v1", "v2"])
def test_reading_needs_about_the_checkpoints_size_in_memory(
    fmt: str, tmp_path: Path, tfr: ModuleType
) -> None:
    value = np.random.default_rng(0).standard_normal((2048, 4096)).astype(np.float32)  # 32 MiB
    prefix = tfr.write_checkpoint(tmp_path / "big.ckpt", {"w": value}, fmt)
    gc.collect()
    tracemalloc.start()
    try:
        got = read_checkpoint(prefix)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(got["w"], value)
    assert peak < 1.25 * value.nbytes, f"peak {peak / value.nbytes:.2f}x the tensor"


def test_checkpoint_error_is_a_value_error() -> None:
    assert issubclass(CheckpointError, ValueError)  # the CLI reports it as one line, exit 1
