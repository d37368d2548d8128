"""Legacy V1 checkpoints: one table file of "tensor slices" (Google's ``vggish_model.ckpt``).

Every value is a ``SavedTensorSlices`` message (``saved_tensor_slice.proto``): the metadata of
every tensor under the empty key, and each slice's ``TensorProto`` under its slice key.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vggish.weights.tf_checkpoint import protobuf as pb
from vggish.weights.tf_checkpoint.base import CheckpointError, CheckpointReader, VariableInfo
from vggish.weights.tf_checkpoint.slices import Extents, assemble, slice_key, slice_shape
from vggish.weights.tf_checkpoint.table import Table
from vggish.weights.tf_checkpoint.tensors import (
    DType,
    lookup_dtype,
    parse_shape,
    parse_slice,
    result_dtype,
    tensor_proto_values,
)

META_KEY = b""
# SavedTensorSlices / SavedTensorSliceMeta / SavedSliceMeta / SavedSlice field numbers.
SLICES_META, SLICES_DATA = 1, 2
META_TENSOR = 1
SLICE_META_NAME, SLICE_META_SHAPE, SLICE_META_TYPE, SLICE_META_SLICE = 1, 2, 3, 4
SAVED_SLICE_NAME, SAVED_SLICE_SLICE, SAVED_SLICE_DATA = 1, 2, 3


class V1Reader(CheckpointReader):
    """A V1 checkpoint file, opened: variables are listed from its metadata entry."""

    def __init__(self, path: Path, *, verify_checksums: bool = True) -> None:
        super().__init__(path)
        self._table = Table(path, verify_checksums=verify_checksums)
        self._slices: dict[str, tuple[Extents, ...]] = {}
        try:
            self._load_meta()
        except BaseException:
            self._table.close()
            raise

    def close(self) -> None:
        self._table.close()

    def _load_meta(self) -> None:
        value = self._table.get(META_KEY)
        try:
            meta = pb.get_bytes(pb.parse(value), SLICES_META) if value is not None else None
            if meta is None:
                raise pb.DecodeError("no SavedTensorSliceMeta under the empty key")
            for tensor in pb.get_all_bytes(pb.parse(meta), META_TENSOR):
                fields = pb.parse(tensor)
                name = bytes(pb.get_bytes(fields, SLICE_META_NAME) or b"").decode()
                shape = parse_shape(pb.get_bytes(fields, SLICE_META_SHAPE))
                self.variables[name] = VariableInfo(name, shape, pb.get_int(fields, SLICE_META_TYPE))
                self._slices[name] = tuple(parse_slice(s) for s in pb.get_all_bytes(fields, SLICE_META_SLICE))
        except (pb.DecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(
                f"{self.path}: not a V1 (tensor-slice) checkpoint: its metadata entry is unreadable ({e})"
            ) from e

    def _read(self, info: VariableInfo) -> np.ndarray:
        dtype = lookup_dtype(info.dtype_enum)
        pieces = []
        for extents in self._slices[info.name]:
            count = int(np.prod(slice_shape(extents, info.shape), dtype=np.int64))
            pieces.append((extents, self._slice_values(info.name, extents, count, dtype)))
        return assemble(info.shape, result_dtype(dtype), pieces)

    def _slice_values(self, name: str, extents: Extents, count: int, dtype: DType) -> np.ndarray:
        value = self._table.get(slice_key(name, extents))
        if value is None:
            if count == 0:
                return np.empty(0, dtype=result_dtype(dtype))
            raise pb.DecodeError(f"no data saved for slice {extents}")
        data = pb.get_bytes(pb.parse(value), SLICES_DATA)
        if data is None:
            raise pb.DecodeError(f"slice {extents} has no SavedSlice")
        saved = pb.parse(data)
        if bytes(pb.get_bytes(saved, SAVED_SLICE_NAME) or b"") != name.encode():
            raise pb.DecodeError(f"the data entry for slice {extents} belongs to another tensor")
        tensor = pb.get_bytes(saved, SAVED_SLICE_DATA)
        if tensor is None:
            raise pb.DecodeError(f"slice {extents} has no TensorProto")
        return tensor_proto_values(tensor, dtype, count)
