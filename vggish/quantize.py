"""int8 VGGish graphs for ONNX Runtime: static quantization calibrated on real audio.

An opt-in, lower-precision alternative to the float32 graph of :mod:`vggish.onnx_export` for CPUs
with 8-bit dot-product instructions (AVX512_VNNI / AVX_VNNI on x86, dot-product on ARM):
weights are quantized per output channel to int8, activations to uint8 with ranges measured on
calibration examples (``onnxruntime.quantization.quantize_static``, QDQ format, which ONNX
Runtime fuses into integer convolutions and matrix products). Embeddings then differ from float32
by about a percent of their scale; only float32 promises Google's numbers.

Needs the ``onnx`` extra (``pip install 'vggish[onnx]'``).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vggish import params

CALIBRATION_BATCH = 8  # examples per calibration run
# Convolutions, fully connected layers and pools run in 8 bits; ReLUs fuse into the convolutions
# and products; adds and slices (Winograd transforms) stay float32.
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul", "MaxPool"]
MIN_LOG_MEL = float(np.log(params.LOG_OFFSET))  # log(mel + 0.01) >= log(0.01): the front end's floor
QuantFormatName = Literal["qdq", "qoperator"]
CalibrationName = Literal["minmax", "entropy", "percentile"]
_INSTALL = "pip install 'vggish[onnx]'"


def quantize_onnx(
    fp32_onnx: str | os.PathLike[str],
    out: str | os.PathLike[str],
    calibration: np.ndarray,
    *,
    quant_format: QuantFormatName = "qdq",
    method: CalibrationName = "minmax",
) -> Path:
    """Writes an int8 copy of a float32 VGGish graph, atomically.

    Args:
        fp32_onnx: a float32 VGGish graph with one input (batch, 96, 64), e.g. from
            :func:`vggish.onnx_export.export_onnx`.
        out: the ``.onnx`` file to write; its folder must exist.
        calibration: (N, 96, 64) (or (N, 1, 96, 64)) float log-mel examples of real audio
            (:func:`vggish.wavfile_to_examples`), a few dozen or more: activation ranges are
            measured on them.
        quant_format: ``"qdq"`` (QuantizeLinear/DequantizeLinear pairs that ONNX Runtime fuses
            into integer kernels; the default, fastest on x86 with VNNI) or ``"qoperator"``
            (QLinearConv / QLinearMatMul nodes).
        method: how activation ranges are chosen from the calibration data: ``"minmax"`` (the
            default: the observed ranges, so louder audio than calibrated is not clipped),
            ``"percentile"`` (99.999 %: ~7 % lower deviation on held-out recordings, same speed)
            or ``"entropy"``.

    Returns:
        The path written. Its metadata repeats the float32 graph's ``vggish.*`` entries and adds
        ``vggish.precision = int8``.

    Raises:
        ValueError: calibration data that are not log-mel examples (shape, dtype, empty, not
            finite, below the front end's floor log(0.01), or constant).
        FileNotFoundError: ``fp32_onnx`` or the output's folder does not exist.
        RuntimeError: onnx/onnxruntime are not installed, or quantization failed.
    """
    examples = check_calibration(calibration)
    source, target = Path(fp32_onnx), Path(out)
    if not source.is_file():
        raise FileNotFoundError(f"no float32 graph at {source}")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"cannot write {target}: folder {target.parent} does not exist")
    onnx = _require("onnx")
    quantization = _require("onnxruntime.quantization")
    fmt = _enum(quantization.QuantFormat, quant_format)
    calibrate_method = _enum(quantization.CalibrationMethod, method)
    model = _load_vggish_graph(onnx, source)
    input_name = model.graph.input[0].name
    # Winograd products (MatMul with 3-D constant kernels) stay float32: QLinearMatMul takes no
    # per-channel scales over their batch axis, and the transformed tiles' ranges are wider.
    dims = {init.name: len(init.dims) for init in model.graph.initializer}
    winograd = [
        n.name for n in model.graph.node if n.op_type == "MatMul" and max(dims.get(i, 0) for i in n.input) > 2
    ]
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _quiet_quantizer():
            quantization.quantize_static(
                model,
                str(tmp),
                _reader(quantization.CalibrationDataReader, input_name, examples),
                quant_format=fmt,
                op_types_to_quantize=QUANTIZED_OPS,
                nodes_to_exclude=winograd,
                per_channel=True,
                reduce_range=False,  # VNNI accumulates u8 x s8 products without saturation
                activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
                calibrate_method=calibrate_method,
            )
        quantized = onnx.load(str(tmp))
        entries = {p.key: p.value for p in model.metadata_props if p.key.startswith("vggish.")}
        for key, value in {**entries, "vggish.precision": "int8"}.items():
            entry = quantized.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(quantized, str(tmp))
        os.replace(tmp, target)
    except Exception as e:
        raise RuntimeError(f"int8 quantization of {source} failed: {' '.join(str(e).split())[:500]}") from e
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _load_vggish_graph(onnx: Any, path: Path) -> Any:
    """The ONNX model at ``path``, checked to take (batch, 96, 64) examples."""
    try:
        model = onnx.load(str(path))
    except Exception as e:  # onnx raises protobuf's DecodeError and others
        raise RuntimeError(f"cannot read {path} as an ONNX model: {' '.join(str(e).split())[:300]}") from e
    inputs = model.graph.input
    dims = [d.dim_value or d.dim_param for d in inputs[0].type.tensor_type.shape.dim] if inputs else []
    if len(inputs) != 1 or len(dims) != 3 or dims[1:] != [params.NUM_FRAMES, params.NUM_BANDS]:
        raise RuntimeError(f"{path} is not a VGGish graph: its input is {dims}, not (batch, 96, 64)")
    return model


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime.quantization advises pre-processing through the root logger at WARNING (the
    exported graphs need none: measured, same deviations and speed) and its histogram
    calibrators print progress to stdout; the library does neither."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def check_calibration(calibration: object) -> np.ndarray:
    """``calibration`` as (N, 96, 64) float32 log-mel examples, or ValueError saying what is wrong."""
    expected = (params.NUM_FRAMES, params.NUM_BANDS)
    if not isinstance(calibration, np.ndarray) or calibration.dtype.kind != "f":
        kind = getattr(calibration, "dtype", type(calibration).__name__)
        raise ValueError(
            f"calibration must be a float NumPy array of log-mel examples (N, 96, 64); got {kind}"
        )
    x = calibration[:, 0] if calibration.ndim == 4 and calibration.shape[1] == 1 else calibration
    if x.ndim != 3 or x.shape[1:] != expected or x.shape[0] == 0:
        raise ValueError(
            f"calibration must be log-mel examples shaped (N, 96, 64) with N >= 1; got {calibration.shape} "
            "(make them with vggish.wavfile_to_examples)"
        )
    if not np.isfinite(x).all():
        raise ValueError("calibration examples contain NaN or infinite values")
    if x.min() < MIN_LOG_MEL - 1e-3:
        raise ValueError(
            f"calibration values go down to {x.min():.3g}, below log(0.01) = {MIN_LOG_MEL:.3f}, the floor "
            "of VGGish's log-mel front end: these are not log-mel examples (raw audio? normalised?)"
        )
    if float(np.ptp(x)) == 0.0:
        raise ValueError("calibration examples are constant (silence?): activation ranges cannot be measured")
    return np.ascontiguousarray(x, dtype=np.float32)


def _reader(base: type, input_name: str, examples: np.ndarray) -> Any:
    """An ``onnxruntime.quantization.CalibrationDataReader`` yielding batches of ``examples``."""

    class Reader(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            # Equal batches (histogram calibrators need them): the last one wraps around.
            size = min(CALIBRATION_BATCH, len(examples))
            order = np.arange(-(-len(examples) // size) * size) % len(examples)
            self._batches: Iterator[np.ndarray] = iter(examples[order].reshape(-1, size, *examples.shape[1:]))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: np.ascontiguousarray(batch)}

    return Reader()


def _enum(enum: Any, name: str) -> Any:
    """The member of an onnxruntime enum spelled ``name`` in any case (``qdq`` -> ``QDQ``)."""
    members = {m.name.lower(): m for m in enum}
    if name not in members:
        raise ValueError(f"expected one of {sorted(members)}; got {name!r}")
    return members[name]


def _require(module: str) -> Any:
    """Imports ``module`` or raises ``RuntimeError`` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise RuntimeError(f"int8 quantization needs the {module.split('.')[0]!r} package: {_INSTALL}") from e
