"""Resampling to 16 kHz: resampy 0.4.3's ``kaiser_best`` filter (the reference's), reproduced.

``"reference"`` computes resampy's table from its formula (bit for bit) and walks it as resampy
does, in float64, by blocks of outputs: where the rate ratio has a short period a block is a few
dense polyphase matrix products (each phase's weights and table differences, so each output's own
interpolation factor is applied exactly; outputs landing on another table cell are recomputed tap
by tap), else weights per output. ``"fast"`` is soxr's VHQ, a different filter. Both give
``int(n * sr_out / sr_in)`` samples.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

import numpy as np
import numpy.typing as npt
import soxr

from vggish import params

ResamplerName = Literal["reference", "fast"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# --- resampy 0.4.3 ``kaiser_best`` (the table is the right half of a symmetric filter) -----------
KAISER_BEST_ZERO_CROSSINGS = 50
KAISER_BEST_TABLE_PER_CROSSING = 2**13  # table entries between zero crossings
KAISER_BEST_ROLLOFF = 0.9173473712608761  # cut-off as a fraction of the Nyquist frequency
KAISER_BEST_BETA = 12.984585247040012  # Kaiser window shape; resampy's docs round it to 12.9846

MAX_SAMPLE_RATE = 768_000  # Hz: anything above is taken for a mistake
_BLOCK_OUTPUTS = 8192  # output samples per block (0.51 s at 16 kHz): the stream's granularity
_ROW_OUTPUTS = 128  # polyphase rows hold whole periods, at least this many outputs
_GROUP_OUTPUTS = 16  # outputs per matrix product: short windows keep the weight matrices dense
# Rows per matrix product: products this small stay on one OpenBLAS thread, whose other threads
# would only contend with the work already holding the cores. Speed depends on it, results do not.
_GEMM_ROWS = 16
_MAX_POLYPHASE_BYTES = 32 * 2**20  # above this the weights are computed per output instead
_DIRECT_TAPS = 2**18  # outputs x taps per batch on the tap-by-tap path (bounds its temporaries)
_CACHED_ENGINES = 8  # rate pairs whose weights stay in memory (a few MB each, 32 MB at most)


@functools.cache
def _kaiser_best_table() -> FloatArray:
    """The right wing of resampy's ``kaiser_best`` filter: (50 * 8192 + 1,) float64, read-only,
    ``rolloff * sinc(rolloff * u) * kaiser(u)`` at ``u = 0, 1/8192, ..., 50`` zero crossings."""
    n = KAISER_BEST_ZERO_CROSSINGS * KAISER_BEST_TABLE_PER_CROSSING
    crossings = np.linspace(0, KAISER_BEST_ZERO_CROSSINGS, num=n + 1, endpoint=True)
    sinc = KAISER_BEST_ROLLOFF * np.sinc(KAISER_BEST_ROLLOFF * crossings)
    # The right half of np.kaiser(2 n + 1, beta), with the same operations: i0 is slow.
    half = (np.arange(n, 2 * n + 1) - float(n)) / float(n)
    taper = np.i0(KAISER_BEST_BETA * np.sqrt(1 - half**2.0)) / np.i0(float(KAISER_BEST_BETA))
    table = taper * sinc
    table.setflags(write=False)
    return table


@dataclass(frozen=True, eq=False)
class _Filter:
    """The table walk for one pair of rates, with the constants resampy derives from them."""

    sr_in: int
    sr_out: int
    time_increment: float  # input samples per output sample, as resampy rounds it
    scale: float  # min(1, sr_out / sr_in): stretches the filter when downsampling
    step: int  # table entries between neighbouring taps
    wing_taps: int  # most taps on either side: centre - wing_taps + 1 ... centre + wing_taps
    table_rows: FloatArray  # (step + 1, wing_taps): row c holds the wing that starts at cell c
    delta_rows: FloatArray  # the same for the table's differences

    @property
    def taps(self) -> int:
        return 2 * self.wing_taps


def _wing_rows(table: FloatArray, step: int, taps: int) -> tuple[FloatArray, FloatArray]:
    """``(weights, deltas)``, each (step + 1, taps): row ``c`` holds ``table[c + i * step]`` and its
    difference to the next entry; entries resampy never reads are zero."""
    used = len(table) - step + 1
    padded = np.zeros((2, step * (taps + 1)))
    padded[0, :used] = table[:used]
    padded[1, :used] = np.diff(table, append=table[-1])[:used]
    index = np.arange(step + 1)[:, None] + step * np.arange(taps)
    weights, deltas = padded[0][index], padded[1][index]
    for a in (weights, deltas):
        a.setflags(write=False)
    return weights, deltas


def _make_filter(sr_in: int, sr_out: int) -> _Filter:
    ratio = float(sr_out) / sr_in
    table = _kaiser_best_table()
    if ratio < 1:
        table = ratio * table
    scale = min(1.0, ratio)
    step = int(scale * KAISER_BEST_TABLE_PER_CROSSING)
    taps = len(table) // step
    weights, deltas = _wing_rows(table, step, taps)
    return _Filter(sr_in, sr_out, 1.0 / ratio, scale, step, taps, weights, deltas)


class _Position(NamedTuple):
    """Where each output sample falls: centre sample and table cell of either wing (whole numbers
    held as float64, exact below 2**53)."""

    centre: FloatArray  # index of the input sample at or before the output time
    cell_left: FloatArray  # table index of the first left tap
    frac_left: FloatArray  # linear interpolation factor in [0, 1) within that cell
    cell_right: FloatArray
    frac_right: FloatArray

    def select(self, index: slice | IntArray) -> _Position:
        return _Position(*(field[index] for field in self))


def _positions(f: _Filter, t: IntArray) -> _Position:
    """Table positions of the (k,) int64 output indices ``t``, in float64 exactly as resampy does."""
    time = t * f.time_increment
    centre = np.floor(time)
    frac = f.scale * (time - centre)
    index_left = frac * KAISER_BEST_TABLE_PER_CROSSING
    index_right = (f.scale - frac) * KAISER_BEST_TABLE_PER_CROSSING
    cell_left, cell_right = np.floor(index_left), np.floor(index_right)
    index_left -= cell_left
    index_right -= cell_right
    return _Position(centre, cell_left, index_left, cell_right, index_right)


def _wing(f: _Filter, cell: FloatArray, frac: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``(weights, deltas)`` of one wing's taps, nearest first, each (k, f.wing_taps)."""
    rows = cell.astype(np.int64)
    deltas = f.delta_rows[rows]
    weights = deltas * frac[:, None]
    weights += f.table_rows[rows]
    return weights, deltas


def _direct(f: _Filter, segment: FloatArray, start: int, t: IntArray) -> FloatArray:
    """Output samples ``t`` ((k,) int64) computed tap by tap, as (k,) float64, from ``segment``:
    input samples from index ``start`` on (zeros outside the signal included), covering every tap."""
    out = np.empty(len(t))
    batch = max(1, _DIRECT_TAPS // f.taps)
    ahead = np.lib.stride_tricks.sliding_window_view(segment, f.wing_taps)  # x[i], x[i + 1]...
    behind = np.lib.stride_tricks.sliding_window_view(segment[::-1], f.wing_taps)  # x[i], x[i - 1]
    for lo in range(0, len(t), batch):
        pos = _positions(f, t[lo : lo + batch])
        centre = pos.centre.astype(np.int64) - start
        left, _ = _wing(f, pos.cell_left, pos.frac_left)
        right, _ = _wing(f, pos.cell_right, pos.frac_right)
        y = np.einsum("ij,ij->i", left, behind[len(segment) - 1 - centre])
        y += np.einsum("ij,ij->i", right, ahead[centre + 1])
        out[lo : lo + batch] = y
    return out


@dataclass(frozen=True, eq=False)
class _Group:
    """One matrix product: _GROUP_OUTPUTS consecutive outputs of a row and the inputs they read."""

    columns: slice  # within the row's input window
    weights: FloatArray  # (columns, 2 * _GROUP_OUTPUTS): canonical weights, then derivatives


@dataclass(frozen=True, eq=False)
class _Polyphase:
    """Rows of whole periods: ``row_outputs`` outputs read ``row_inputs`` new input samples."""

    row_outputs: int
    row_inputs: int
    block_rows: int
    gemm_rows: int  # rows per matrix product (block_rows is a multiple)
    window_start: int  # first input a row reads, relative to the row's first centre sample
    window: int  # inputs a row reads
    strided: bool  # each group reads at most row_inputs columns: BLAS can read rows in place
    exact_below: int  # outputs before this one sit exactly at their canonical positions
    groups: tuple[_Group, ...]
    canonical: _Position  # positions of block 0's outputs; other blocks repeat them


def _make_group(f: _Filter, row: _Position, lo: int, hi: int, window_start: int) -> _Group:
    pos = row.select(slice(lo, hi))
    left, left_deltas = _wing(f, pos.cell_left, pos.frac_left)
    right, right_deltas = _wing(f, pos.cell_right, pos.frac_right)
    # Taps in input order; the right factor is scale - the left one, to within rounding.
    weights = np.concatenate([left[:, ::-1], right], axis=1)
    deltas = np.concatenate([left_deltas[:, ::-1], -right_deltas], axis=1)
    first = int(pos.centre[0]) - f.wing_taps + 1 - window_start
    last = int(pos.centre[-1]) + f.wing_taps - window_start
    rows = pos.centre.astype(np.int64)[:, None] - int(pos.centre[0]) + np.arange(f.taps)
    dense = np.zeros((last + 1 - first, 2 * (hi - lo)))
    cols = np.arange(hi - lo)[:, None]
    dense[rows, cols] = weights
    dense[rows, cols + hi - lo] = deltas
    return _Group(slice(first, last + 1), dense)


def _exact_below(f: _Filter, period_in: int, period_out: int) -> int:
    """How many outputs have exactly periodic float positions: with ``period_out = 2**k``,
    ``t * time_increment`` is exact while ``t * period_in < 2**53``; else 0."""
    if period_out & (period_out - 1) or f.time_increment != period_in / period_out:
        return 0
    return 2**53 // period_in


def _make_polyphase(f: _Filter) -> _Polyphase | None:
    """The polyphase layout, or ``None`` when the period is too long to tabulate."""
    common = math.gcd(f.sr_in, f.sr_out)
    span = math.ceil(_GROUP_OUTPUTS * f.sr_in / f.sr_out) + f.taps + 1  # inputs a group reads
    periods = max(-(-_ROW_OUTPUTS * common // f.sr_out), -(-span * common // f.sr_in))  # ceil
    whole_groups = _GROUP_OUTPUTS // math.gcd(_GROUP_OUTPUTS, f.sr_out // common)
    periods = -(-periods // whole_groups) * whole_groups  # rows hold whole groups
    row_outputs, row_inputs = periods * f.sr_out // common, periods * f.sr_in // common
    if row_outputs * span * 16 > _MAX_POLYPHASE_BYTES or row_outputs > _BLOCK_OUTPUTS:
        return None
    row = _positions(f, np.arange(row_outputs, dtype=np.int64))
    start = 1 - f.wing_taps
    window = int(row.centre[-1]) + f.wing_taps + 1 - start
    groups = tuple(
        _make_group(f, row, lo, lo + _GROUP_OUTPUTS, start) for lo in range(0, row_outputs, _GROUP_OUTPUTS)
    )
    gemm_rows = min(_GEMM_ROWS, _BLOCK_OUTPUTS // row_outputs)
    block_rows = _BLOCK_OUTPUTS // row_outputs // gemm_rows * gemm_rows
    block = row.select(np.tile(np.arange(row_outputs), block_rows))
    block.centre[:] += np.repeat(np.arange(block_rows) * row_inputs, row_outputs)
    strided = max(g.weights.shape[0] for g in groups) <= row_inputs
    exact_below = _exact_below(f, f.sr_in // common, f.sr_out // common)
    return _Polyphase(
        row_outputs, row_inputs, block_rows, gemm_rows, start, window, strided, exact_below, groups, block
    )


def _products(pp: _Polyphase, x: FloatArray, shift: FloatArray | None) -> FloatArray:
    """Each output's weighted sum of the (products, gemm_rows, window) input rows ``x``, moved from
    its canonical position by ``shift``, (outputs,) each output's interpolation factor minus its
    phase's (None where all are zero, as from 48 kHz to 16 kHz). Returns (outputs,) float64."""
    g, groups = _GROUP_OUTPUTS, len(pp.groups)
    if shift is None:
        sums = np.empty((*x.shape[:2], pp.row_outputs))
        for i, group in enumerate(pp.groups):
            np.matmul(x[:, :, group.columns], group.weights[:, :g], out=sums[:, :, i * g : i * g + g])
        return sums.ravel()
    both = np.empty((*x.shape[:2], groups, 2 * g))  # sums, then derivatives, per group
    for i, group in enumerate(pp.groups):
        np.matmul(x[:, :, group.columns], group.weights, out=both[:, :, i])
    out = shift.reshape(*x.shape[:2], groups, g) * both[..., g:]
    out += both[..., :g]
    return out.ravel()


def _input_rows(pp: _Polyphase, segment: FloatArray, origin: int) -> FloatArray:
    """(products, pp.gemm_rows, pp.window) rows of input from ``segment[origin]`` on."""
    windows = np.lib.stride_tricks.sliding_window_view(segment[origin:], pp.window)
    x = windows[: pp.block_rows * pp.row_inputs : pp.row_inputs]  # overlapping rows, no copy
    if not pp.strided:
        x = np.ascontiguousarray(x)
    return x.reshape(pp.block_rows // pp.gemm_rows, pp.gemm_rows, pp.window)


def _polyphase_block(f: _Filter, pp: _Polyphase, segment: FloatArray, start: int, block: int) -> FloatArray:
    """Block ``block`` of outputs ((n,) float64, n = block_rows * row_outputs) by matrix products
    over rows of input, then odd outputs tap by tap; ``segment`` as for :func:`_direct`."""
    n = len(pp.canonical.centre)
    first_input = block * pp.block_rows * pp.row_inputs
    x = _input_rows(pp, segment, first_input + pp.window_start - start)
    if (block + 1) * n <= pp.exact_below:  # every output sits at its canonical position
        return _products(pp, x, None)
    t = block * n + np.arange(n, dtype=np.int64)
    pos, canon = _positions(f, t), pp.canonical
    shift = pos.frac_left - canon.frac_left
    out = _products(pp, x, shift if shift.any() else None)
    odd = (pos.centre - first_input != canon.centre) | (pos.cell_left != canon.cell_left)
    odd = np.flatnonzero(odd | (pos.cell_right != canon.cell_right))
    if len(odd):
        out[odd] = _direct(f, segment, start, t[odd])
    return out


class _Engine:
    """Fixed blocks of output, each computed from the same inputs whether the signal comes whole
    or in chunks: streams equal the one-shot result bit for bit."""

    def __init__(self, sr_in: int, sr_out: int) -> None:
        self.filter = _make_filter(sr_in, sr_out)
        self.polyphase = _make_polyphase(self.filter)
        pp = self.polyphase
        direct = min(_BLOCK_OUTPUTS, max(1, _DIRECT_TAPS // self.filter.taps))  # one batch
        self.block_outputs = direct if pp is None else pp.block_rows * pp.row_outputs

    def inputs(self, block: int) -> tuple[int, int]:
        """Input range ``[lo, hi)`` that ``block`` reads (indices < 0 or >= n are zeros)."""
        n = self.block_outputs
        ends = np.array([block * n, block * n + n - 1], dtype=np.int64)
        centre = _positions(self.filter, ends).centre
        return int(centre[0]) - self.filter.wing_taps, int(centre[1]) + self.filter.wing_taps + 2

    def compute(self, block: int, segment: FloatArray, start: int) -> FloatArray:
        """The ``block_outputs`` samples of ``block``, given the input from index ``start``."""
        if self.polyphase is not None:
            return _polyphase_block(self.filter, self.polyphase, segment, start, block)
        t = block * self.block_outputs + np.arange(self.block_outputs, dtype=np.int64)
        return _direct(self.filter, segment, start, t)


_engine = functools.lru_cache(maxsize=_CACHED_ENGINES)(_Engine)


def _padded(data: FloatArray, start: int, lo: int, hi: int) -> tuple[FloatArray, int]:
    """Input samples ``[lo, hi)`` from ``data`` (indices ``start`` on), zeros outside; no copy
    when ``data`` covers them."""
    if lo >= start and hi <= start + len(data):
        return data, start
    segment = np.zeros(hi - lo)
    a, b = max(lo, start), min(hi, start + len(data))
    if b > a:
        segment[a - lo : b - lo] = data[a - start : b - start]
    return segment, lo


def _output_length(n: int, sr_in: int, sr_out: int) -> int:
    """As resampy computes it, in float64."""
    return int(n * float(sr_out) / float(sr_in))


def _resample_reference(x: FloatArray, sr_in: int, sr_out: int) -> FloatArray:
    """One-shot ``"reference"`` resampling: every block straight from ``x`` (zeros outside)."""
    engine = _engine(sr_in, sr_out)
    n_out = _output_length(len(x), sr_in, sr_out)
    blocks = -(-n_out // engine.block_outputs)
    out = np.empty(blocks * engine.block_outputs)
    for b in range(blocks):
        segment, start = _padded(x, 0, *engine.inputs(b))
        out[b * engine.block_outputs : (b + 1) * engine.block_outputs] = engine.compute(b, segment, start)
    return out[:n_out]


class _History:
    """The input samples a stream still needs, in an array that doubles when full."""

    def __init__(self) -> None:
        self.start = 0  # input index of the first sample held
        self._data = np.empty(1024)
        self._head = 0  # live samples are self._data[self._head : self._tail]
        self._tail = 0

    @property
    def samples(self) -> FloatArray:
        """The samples held, from index ``start`` (a view, valid until the next change)."""
        return self._data[self._head : self._tail]

    def append(self, x: FloatArray) -> None:
        if self._tail + len(x) > len(self._data):
            live = self._tail - self._head
            data = np.empty(max(1024, 2 * (live + len(x))))
            data[:live] = self._data[self._head : self._tail]
            self._data, self._head, self._tail = data, 0, live
        self._data[self._tail : self._tail + len(x)] = x
        self._tail += len(x)

    def drop_before(self, index: int) -> None:
        k = min(max(0, index - self.start), self._tail - self._head)
        self._head += k
        self.start += k


def _whole_number(value: object) -> int | None:
    """``value`` as an int if it is a whole number (int, or a float without a fraction)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (float, np.floating)):
        return int(value) if float(value).is_integer() else None
    return int(value) if isinstance(value, (int, np.integer)) else None


def _check_rate(sr: object, name: str) -> int:
    rate = _whole_number(sr)
    if rate is None:
        raise ValueError(f"{name} must be a whole number of Hz such as 44100; got {sr!r}")
    if not 0 < rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"{name} must be between 1 and {MAX_SAMPLE_RATE} Hz; got {rate}")
    return rate


def _check_rates(sr_in: object, sr_out: object) -> tuple[int, int]:
    """Both rates as ints; raises ``ValueError`` for bad rates or a ratio the table cannot walk."""
    rate_in, rate_out = _check_rate(sr_in, "sr_in"), _check_rate(sr_out, "sr_out")
    if rate_in > rate_out * KAISER_BEST_TABLE_PER_CROSSING:
        raise ValueError(
            f"cannot downsample {rate_in} Hz to {rate_out} Hz: the kaiser_best table allows at "
            f"most {KAISER_BEST_TABLE_PER_CROSSING}x; resample in two steps"
        )
    return rate_in, rate_out


def _check_method(method: object) -> ResamplerName:
    if method in ("reference", "fast"):
        return method  # type: ignore[return-value]
    raise ValueError(f"method must be one of {get_args(ResamplerName)}; got {method!r}")


def _check_signal(x: object, name: str) -> FloatArray:
    """Returns ``x`` as a 1-D float64 array of finite samples, or raises ``ValueError``."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (samples,); got shape {a.shape}. "
            "Mix multi-channel audio to mono first (mean over the channel axis)."
        )
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers (float or int); got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite samples; remove or clip them first")
    return a


def _fix_length(y: FloatArray, n_out: int) -> FloatArray:
    """``y`` cut or zero-padded to ``n_out`` samples."""
    return y[:n_out] if len(y) >= n_out else np.concatenate([y, np.zeros(n_out - len(y))])


def resample(
    x: npt.ArrayLike, sr_in: int, sr_out: int = params.SAMPLE_RATE, method: ResamplerName = "reference"
) -> FloatArray:
    """Resamples (n,) finite samples from ``sr_in`` Hz (a whole number, 1 to 768000) to ``sr_out``
    as Google's reference does (``"reference"``) or with soxr VHQ (``"fast"``).

    Returns:
        (int(n * sr_out / sr_in),) float64 (empty where resampy refuses a too short signal).

    Raises:
        ValueError: ``x`` is not 1-D, real and finite; a rate is out of range, or ``sr_in`` is
            over 8192 times ``sr_out``; ``method`` is unknown.
    """
    sr_in, sr_out = _check_rates(sr_in, sr_out)
    method = _check_method(method)
    a = _check_signal(x, "x")
    if sr_in == sr_out:
        return a.copy()
    n_out = _output_length(len(a), sr_in, sr_out)
    if method == "fast":
        return _fix_length(soxr.resample(a, sr_in, sr_out, quality="VHQ"), n_out)
    return _resample_reference(a, sr_in, sr_out)


class StreamingResampler:
    """Resamples a signal that arrives in chunks, keeping only the input its filter still needs.

    The outputs of ``process`` and then ``flush`` equal ``resample(whole_signal)`` bit for bit
    (``"fast"``: one-shot soxr), however the signal is cut.
    """

    def __init__(
        self, sr_in: int, sr_out: int = params.SAMPLE_RATE, method: ResamplerName = "reference"
    ) -> None:
        self.sr_in, self.sr_out = _check_rates(sr_in, sr_out)
        self.method = _check_method(method)
        self._received = 0
        self._emitted = 0
        self._closed = False
        self._next_block = 0
        self._history = _History()
        same = self.sr_in == self.sr_out
        self._engine = None if same or self.method == "fast" else _engine(self.sr_in, self.sr_out)
        self._next_inputs = (0, 0) if self._engine is None else self._engine.inputs(0)
        self._soxr = None
        if not same and self.method == "fast":
            self._soxr = soxr.ResampleStream(self.sr_in, self.sr_out, 1, dtype="float64", quality="VHQ")

    def process(self, chunk: npt.ArrayLike) -> FloatArray:
        """(k,) finite samples in -> (m,) float64 output samples they completed (often none).

        Raises:
            ValueError: bad samples (as in ``resample``), or the stream was already flushed.
        """
        x = self._accept(chunk)
        if self._soxr is not None:
            y = np.asarray(self._soxr.resample_chunk(x), dtype=np.float64)
        elif self._engine is None:
            y = x.copy()
        else:
            self._history.append(x)
            y = self._run_blocks(self._engine, self._received)
        self._emitted += len(y)
        return y

    def flush(self) -> FloatArray:
        """Ends the stream: the remaining (m,) float64 output samples (ValueError if flushed)."""
        self._accept(np.zeros(0))
        self._closed = True
        n_out = _output_length(self._received, self.sr_in, self.sr_out)
        if self._soxr is not None:
            rest = np.asarray(self._soxr.resample_chunk(np.zeros(0), last=True), np.float64)
            return _fix_length(rest, max(0, n_out - self._emitted))
        if self._engine is None:
            return np.zeros(0)
        blocks = -(-n_out // self._engine.block_outputs)
        rest = self._run_blocks(self._engine, None, stop=blocks)
        self._history = _History()  # release the input
        return rest[: n_out - self._emitted]

    def _accept(self, chunk: npt.ArrayLike) -> FloatArray:
        if self._closed:
            raise ValueError("this stream was flushed already; start a new StreamingResampler")
        x = _check_signal(chunk, "chunk")
        self._received += len(x)
        return x

    def _run_blocks(self, engine: _Engine, end: int | None, stop: int | None = None) -> FloatArray:
        """The new output samples of the blocks whose input is complete: ``end`` samples received
        so far, or None at the end of the signal (then every block before ``stop``)."""
        out = []
        while stop is None or self._next_block < stop:
            lo, hi = self._next_inputs
            if end is not None and hi > end:
                break
            segment, start = _padded(self._history.samples, self._history.start, lo, hi)
            out.append(engine.compute(self._next_block, segment, start))
            self._next_block += 1
            self._next_inputs = engine.inputs(self._next_block)
            self._history.drop_before(self._next_inputs[0])
        return np.concatenate(out) if out else np.zeros(0)
