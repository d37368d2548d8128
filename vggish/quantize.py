"""int8 VGGish graphs for ONNX Runtime: static quantization calibrated on real audio.

An opt-in, lower-precision alternative to the float32 graph of :mod:`vggish.onnx_export` for CPUs
with 8-bit dot-product instructions (AVX512_VNNI / AVX_VNNI on x86, dot-product on ARM):
weights are quantized per output channel to int8, activations to uint8 with ranges measured on
calibration examples (``onnxruntime.quantization.quantize_static``, QDQ format, which ONNX
Runtime fuses into integer convolutions and matrix products). Embeddings then differ from float32
by about a percent of their scale; only float32 promises Google's numbers.

:func:`int8_session` is what ``load_model(precision="int8")`` runs: the all-direct float32 graph
(int8 Winograd products cannot be quantized per channel), quantized once per weights file into the
cache, calibrated on :func:`calibration_examples` (a synthetic recording the package makes
offline). Needs the ``onnx`` extra (``pip install 'vggish[onnx]'``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from vggish import params, plans

if TYPE_CHECKING:
    from vggish.model import VGGish
    from vggish.onnx_export import OnnxVGGish

logger = logging.getLogger(__name__)

CALIBRATION_BATCH = 8  # examples per calibration run
# Convolutions, fully connected layers and pools run in 8 bits; ReLUs fuse into the convolutions
# and products; adds and slices (Winograd transforms) stay float32.
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul", "MaxPool"]
MIN_LOG_MEL = float(np.log(params.LOG_OFFSET))  # log(mel + 0.01) >= log(0.01): the front end's floor
QuantFormatName = Literal["qdq", "qoperator"]
CalibrationName = Literal["minmax", "entropy", "percentile"]
CALIBRATION_RATE = 16_000  # Hz: the calibration recording is made at the model's rate
CALIBRATION_HOP_SECONDS = 0.48  # two examples per second of it
CALIBRATION_REVISION = "c1"  # bumped when calibration_waveform changes: cached int8 graphs redo


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
    from vggish.onnx_export import require

    onnx = require("onnx", "int8 quantization")
    quantization = require("onnxruntime.quantization", "int8 quantization")
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


def int8_session(
    network: VGGish,
    weights_sha256: str,
    cache_dir: str | os.PathLike[str],
    *,
    metadata: dict[str, str] | None = None,
    threads: int | None = None,
) -> OnnxVGGish:
    """An ONNX Runtime session of the int8 graph of ``network``, quantized on first use and cached.

    The float32 all-direct graph is exported (:func:`vggish.onnx_export.onnx_session`), then
    quantized with :func:`quantize_onnx` on :func:`calibration_examples` into
    ``cache_dir/onnx``, under a name carrying the weights' SHA-256 and the calibration revision.

    Raises:
        RuntimeError: onnx/onnxruntime/onnxscript missing, or the export or quantization failed.
    """
    from vggish import onnx_export

    variant = f"int8{CALIBRATION_REVISION}-{plans.DIRECT.tag}"
    path = onnx_export.graph_path(cache_dir, weights_sha256, variant)

    def quantize() -> None:
        onnx_export.onnx_session(
            network, weights_sha256, cache_dir, metadata=metadata, threads=threads, plan=plans.DIRECT
        )
        logger.warning("quantizing VGGish to int8 (once per weights file): %s", path)
        source = onnx_export.graph_path(cache_dir, weights_sha256, plans.DIRECT.tag)
        quantize_onnx(source, path, calibration_examples())

    return onnx_export.cached_or_built(path, threads, quantize, sha256=weights_sha256, precision="int8")


def calibration_examples() -> np.ndarray:
    """Log-mel examples of :func:`calibration_waveform` (hop 0.48 s): (N, 96, 64) float32."""
    from vggish.examples import waveform_to_examples

    return waveform_to_examples(calibration_waveform(), CALIBRATION_RATE, hop_seconds=CALIBRATION_HOP_SECONDS)


def calibration_waveform(seed: int = 0) -> np.ndarray:
    """A deterministic 24 s recording at 16 kHz that spans what VGGish's activations see.

    Made offline from simple sound models, at levels from -45 to -1 dBFS, 2 s each: voiced
    vowels (a glottal pulse train through formant resonances, gliding pitch, male and female
    ranges, syllable-rate envelopes), fricative noise bursts, a harmonic chord sequence with
    decaying notes, a sine sweep 60 Hz - 7.5 kHz, pink noise quiet and loud, and near silence
    with clicks. ``seed`` varies the noise, pitches and formants (other seeds give held-out audio).

    Returns:
        (384000,) float64 in [-1, 1].
    """
    rng = np.random.default_rng(seed)
    segments = [
        _vowels(rng, 100 + 30 * rng.random(), 0.5),
        _vowels(rng, 190 + 50 * rng.random(), 0.3),
        _fricatives(rng, 0.2),
        _chords(rng, 0.6),
        _sweep(0.9),
        _pink(rng, 0.006),
        _pink(rng, 0.5),
        _vowels(rng, 140 + 40 * rng.random(), 0.9),
        _chords(rng, 0.05),
        _fricatives(rng, 0.7),
        _clicks(rng, 0.3),
        _vowels(rng, 220 + 60 * rng.random(), 0.08),
    ]
    return np.concatenate(segments)


_SEGMENT = 2 * CALIBRATION_RATE  # samples per segment


def _time() -> np.ndarray:
    return np.arange(_SEGMENT) / CALIBRATION_RATE


def _peak(x: np.ndarray, level: float) -> np.ndarray:
    return np.asarray(level * x / max(float(np.abs(x).max()), 1e-12))


def _vowels(rng: np.random.Generator, f0: float, level: float) -> np.ndarray:
    """Voiced speech: harmonics of a gliding pitch, shaped by three formants that move per syllable."""
    t = _time()
    pitch = f0 * (1 + 0.15 * np.sin(2 * np.pi * 0.7 * t + rng.random() * 6))
    phase = 2 * np.pi * np.cumsum(pitch) / CALIBRATION_RATE
    syllables = 4 + rng.integers(0, 3)
    formants = rng.uniform((300, 900, 2300), (800, 2000, 3200), size=(syllables, 3))
    which = np.minimum((t * syllables / t[-1]).astype(int), syllables - 1)
    x = np.zeros_like(t)
    for k in range(1, int(4000 // f0) + 1):
        freq = k * pitch
        gain = sum(np.exp(-(((freq - formants[which, i]) / (80 + 40 * i)) ** 2)) for i in range(3))
        x += gain * np.sin(k * phase) / k**0.5
    envelope = np.sin(np.pi * (t * syllables / t[-1] % 1)) ** 2
    return _peak(x * envelope, level)


def _fricatives(rng: np.random.Generator, level: float) -> np.ndarray:
    """Bursts of high-passed noise (s, sh, f) with short gaps."""
    t = _time()
    noise = np.diff(rng.standard_normal(_SEGMENT + 1))
    gate = (np.sin(2 * np.pi * 3 * t) > -0.2).astype(float)
    return _peak(noise * gate, level)


def _chords(rng: np.random.Generator, level: float) -> np.ndarray:
    """Notes of a few harmonics every 0.25 s, decaying, chords of three."""
    t = _time()
    x = np.zeros_like(t)
    for start in np.arange(0, 2, 0.25):
        for semitone in rng.choice(np.arange(-12, 24), size=3, replace=False):
            freq = 220 * 2 ** (semitone / 12)
            local = np.clip(t - start, 0, None)
            note = sum(np.sin(2 * np.pi * h * freq * local) / h for h in range(1, 6))
            x += (t >= start) * np.exp(-4 * local) * note
    return _peak(x, level)


def _sweep(level: float) -> np.ndarray:
    """An exponential sine sweep from 60 Hz to 7.5 kHz."""
    t = _time()
    ratio = np.log(7500 / 60)
    phase = 2 * np.pi * 60 * 2 * (np.exp(ratio * t / 2) - 1) / ratio
    return _peak(np.sin(phase), level)


def _pink(rng: np.random.Generator, level: float) -> np.ndarray:
    """Noise with a 1/f power spectrum."""
    spectrum = np.fft.rfft(rng.standard_normal(_SEGMENT))
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1))
    return _peak(np.fft.irfft(spectrum, _SEGMENT), level)


def _clicks(rng: np.random.Generator, level: float) -> np.ndarray:
    """Near silence (-80 dBFS noise) with a few decaying clicks."""
    x = 1e-4 * rng.standard_normal(_SEGMENT)
    for at in rng.integers(0, _SEGMENT - 800, size=6):
        x[at : at + 800] += np.exp(-np.arange(800) / 80) * rng.standard_normal(800)
    return _peak(x, level)
