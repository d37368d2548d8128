"""A head's file: safetensors float32 tensors and string metadata (JSON where structured); never
pickle. Reading checks the header's size, the metadata, each tensor's name, dtype and shape, then
their values; every malformed file is an :class:`~vggish.errors.InvalidInputError`.
"""

from __future__ import annotations

import json
import re
import struct
from typing import Any, get_args

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from vggish import params
from vggish.errors import InvalidInputError
from vggish.heads.head import (
    MAX_ABS_FEATURE,
    MAX_CLASSES,
    MAX_FOLDS,
    MAX_NUM_EXAMPLES,
    MLP_HIDDEN,
    STD_FLOOR,
    Head,
    HeadKind,
    HeadMetrics,
    check_label,
)
from vggish.heads.identity import UNKNOWN_FEATURES, FeatureSpec

FORMAT = "vggish-head"
FORMAT_VERSION = 1
# Limits of an imported file, checked before its tensors are read.
MAX_HEADER_BYTES = 8 << 20  # safetensors JSON header (1000 labels of 256 escaped characters fit)
MIN_STD = STD_FLOOR / 2  # trained stds are >= STD_FLOOR (float32 rounding takes a little off)
MAX_ABS_WEIGHT = 1e4  # trained weights stay far below (Adam moves each by < 0.04 a step)


def _expected_shapes(kind: str, num_classes: int) -> dict[str, tuple[int, ...]]:
    d = params.EMBEDDING_SIZE
    shapes: dict[str, tuple[int, ...]] = {"norm.mean": (d,), "norm.std": (d,)}
    width = d
    if kind == "mlp":
        shapes |= {"hidden.weight": (MLP_HIDDEN, d), "hidden.bias": (MLP_HIDDEN,)}
        width = MLP_HIDDEN
    return shapes | {"out.weight": (num_classes, width), "out.bias": (num_classes,)}


def to_safetensors(head: Head) -> bytes:
    """The head as safetensors bytes."""
    tensors = {"norm.mean": head.mean, "norm.std": head.std, **head.weights}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "kind": head.kind,
        "classes": json.dumps(list(head.classes)),
        "num_examples": str(head.num_examples),
        "metrics": json.dumps(None if head.metrics is None else head.metrics.__dict__),
        "features": json.dumps(head.features.to_dict()),
    }
    contiguous = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    return bytes(save_safetensors(contiguous, metadata=metadata))


def from_safetensors(data: bytes) -> Head:
    """Reads and validates a head file; every malformed one is an InvalidInputError, nothing else."""
    header = _read_header(data)
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise InvalidInputError("not a vggish head: its safetensors metadata is missing or not strings")
    if meta.get("format") != FORMAT:
        raise InvalidInputError(f"metadata 'format' must be {FORMAT!r}; got {_short(meta.get('format'))}")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise InvalidInputError(
            f"format_version {_short(meta.get('format_version'))} is not supported ({FORMAT_VERSION})"
        )
    kind = meta.get("kind", "")
    if kind not in get_args(HeadKind):
        raise InvalidInputError(f"metadata 'kind' must be one of {get_args(HeadKind)}; got {_short(kind)}")
    classes = _parse_classes(meta.get("classes", ""))
    num_examples = _parse_num_examples(meta.get("num_examples", "0"))
    metrics = _parse_metrics(meta.get("metrics"))
    features = _parse_features(meta.get("features"))
    shapes = _expected_shapes(kind, len(classes))
    _check_entries(header, shapes)
    try:
        arrays = load_safetensors(bytes(data))
    except (SafetensorError, ValueError, TypeError, KeyError) as e:  # its own parser's view of the file
        raise InvalidInputError(f"not a safetensors file ({e})") from e
    _check_tensors(arrays, shapes)
    weights = {k: v for k, v in arrays.items() if not k.startswith("norm.")}
    mean, std = arrays["norm.mean"], arrays["norm.std"]
    return Head(kind, classes, mean, std, weights, num_examples, metrics, features)  # type: ignore[arg-type]


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json(text: str, what: str) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, too many digits, too deep
        raise InvalidInputError(f"{what} is not valid JSON ({_short(str(e), 100)})") from e


def _read_header(data: bytes) -> dict[str, Any]:
    try:
        view = memoryview(data).cast("B")
    except TypeError as e:
        raise InvalidInputError(f"a head file is bytes; got {type(data).__name__}") from e
    if len(view) < 8:
        raise InvalidInputError(f"not a safetensors file: {len(view)} bytes")
    (length,) = struct.unpack("<Q", view[:8])
    if length > MAX_HEADER_BYTES or 8 + length > len(view):
        raise InvalidInputError(
            f"not a safetensors file, or a header over {MAX_HEADER_BYTES} bytes: "
            f"it declares {length} header bytes in a file of {len(view)}"
        )
    try:
        text = bytes(view[8 : 8 + length]).decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInputError("not a safetensors file: its header is not UTF-8") from e
    header = _json(text, "the safetensors header")
    if not isinstance(header, dict):
        raise InvalidInputError("not a safetensors file: its header is not a JSON object")
    return header


def _parse_classes(text: str) -> tuple[str, ...]:
    classes = _json(text, "metadata 'classes'")
    if not isinstance(classes, list):
        raise InvalidInputError("metadata 'classes' must be a JSON list of labels")
    if not 2 <= len(classes) <= MAX_CLASSES:
        raise InvalidInputError(
            f"metadata 'classes' must name 2 to {MAX_CLASSES} classes; got {len(classes)}"
        )
    try:
        labels = tuple(check_label(c) for c in classes)
    except InvalidInputError as e:
        raise InvalidInputError(f"metadata 'classes': {e}") from e
    if len(set(labels)) != len(labels):
        raise InvalidInputError("metadata 'classes' must be distinct")
    return labels


def _parse_num_examples(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,19}", text) or int(text) > MAX_NUM_EXAMPLES:
        raise InvalidInputError(
            f"metadata 'num_examples' must be an integer from 0 to {MAX_NUM_EXAMPLES}; got {_short(text)}"
        )
    return int(text)


def _accuracy(raw: dict[str, Any], key: str) -> float:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise InvalidInputError(f"metadata 'metrics': {key} must be a number in [0, 1]; got {_short(value)}")
    return float(value)  # NaN fails the range test above; 1e400 parses as inf, also outside it


def _parse_metrics(text: str | None) -> HeadMetrics | None:
    if text is None:
        return None
    raw = _json(text, "metadata 'metrics'")
    if raw is None:
        return None
    keys = {"cv_accuracy", "train_accuracy", "folds"}
    if not isinstance(raw, dict) or raw.keys() != keys:
        raise InvalidInputError(f"metadata 'metrics' must be null or a JSON object of {sorted(keys)}")
    folds = raw["folds"]
    if isinstance(folds, bool) or not isinstance(folds, int) or folds == 1 or not 0 <= folds <= MAX_FOLDS:
        raise InvalidInputError(
            f"metadata 'metrics': folds must be 0 or 2 to {MAX_FOLDS}; got {_short(folds)}"
        )
    cv = None if raw["cv_accuracy"] is None else _accuracy(raw, "cv_accuracy")
    if (cv is None) != (folds == 0):
        raise InvalidInputError("metadata 'metrics': cv_accuracy is null exactly when folds is 0")
    return HeadMetrics(cv, _accuracy(raw, "train_accuracy"), folds)


def _parse_features(text: str | None) -> FeatureSpec:
    if text is None:
        return UNKNOWN_FEATURES
    raw = _json(text, "metadata 'features'")
    try:
        return FeatureSpec.from_dict(raw)
    except InvalidInputError as e:
        raise InvalidInputError(f"metadata 'features': {e}") from e


def _check_entries(header: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> None:
    missing, extra = sorted(shapes.keys() - header.keys()), sorted(header.keys() - shapes.keys())
    if missing or extra:
        raise InvalidInputError(f"tensors missing: {missing}, unexpected: {[_short(k) for k in extra][:10]}")
    for name, shape in shapes.items():
        entry = header[name]
        if not isinstance(entry, dict) or entry.get("dtype") != "F32":
            dtype = entry.get("dtype") if isinstance(entry, dict) else entry
            raise InvalidInputError(f"tensor {name!r} must be float32 (F32); got {_short(dtype)}")
        if entry.get("shape") != list(shape):
            raise InvalidInputError(
                f"tensor {name!r} must have shape {shape}; got {_short(entry.get('shape'))}"
            )


def _check_tensors(arrays: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> None:
    """Finite values within bounds that keep every intermediate value far below float32's range."""
    if arrays.keys() != shapes.keys():
        raise InvalidInputError(f"tensors {sorted(arrays)} are not {sorted(shapes)}")
    for name, shape in shapes.items():
        array = arrays[name]
        if array.dtype != np.float32 or array.shape != shape:
            raise InvalidInputError(
                f"tensor {name!r} must be float32 {shape}; got {array.dtype} {array.shape}"
            )
        if not np.isfinite(array).all():
            raise InvalidInputError(f"tensor {name!r} holds NaN or infinite values")
        bound = MAX_ABS_FEATURE if name.startswith("norm.") else MAX_ABS_WEIGHT
        if np.abs(array).max() > (2 * bound if name == "norm.std" else bound):
            raise InvalidInputError(f"tensor {name!r} holds values beyond ±{bound:g}")
    if (arrays["norm.std"] < MIN_STD).any():
        raise InvalidInputError(f"tensor 'norm.std' must be at least {MIN_STD:g}")
