"""vggish.audio.resample against resampy 0.4.3's kaiser_best, the resampler Google's reference uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import resampy
import soundfile as sf
import soxr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vggish import params
from vggish.audio.resample import (
    StreamingResampler,
    _engine,
    _kaiser_best_table,
    resample,
)

# Our sums run in another order than resampy's; 1e-12 leaves room for that on any BLAS.
# (The task's bound is 1e-6; measured differences are below 1e-15.)
TOLERANCE = 1e-12
RATES = (8000, 11025, 22050, 32000, 44100, 48000, 96000)
# 44101 Hz has a period of 16000 outputs (weights computed per output); 13700 and 5940 Hz put
# some outputs on another table cell than their phase's (recomputed tap by tap).
ODD_RATES = (44101, 13700, 5940)
ALSA_DIR = Path("/usr/share/sounds/alsa")


def reference(x: np.ndarray, sr_in: int, sr_out: int = params.SAMPLE_RATE) -> np.ndarray:
    """What Google's reference computes."""
    return np.asarray(resampy.resample(x, sr_in, sr_out, filter="kaiser_best"))


def signals(sr: int, seconds: float = 1.3) -> dict[str, np.ndarray]:
    """White noise, a 1 kHz tone and tones near the input's and the output's Nyquist."""
    t = np.arange(round(sr * seconds)) / sr
    rng = np.random.default_rng(sr)
    return {
        "noise": rng.standard_normal(len(t)) * 0.1,
        "tone_1k": np.sin(2 * np.pi * 1000 * t),
        "near_input_nyquist": 0.9 * np.sin(2 * np.pi * 0.49 * sr * t + 0.3),
        "near_output_nyquist": 0.9 * np.sin(2 * np.pi * 7900 * t),
    }


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    """A recording as int16 / 32768, mixed to mono by the mean over channels (docs/vggish.md §1)."""
    data, sr = sf.read(path, dtype="int16", always_2d=True)
    return data.mean(axis=1) / 32768.0, int(sr)


def stream(x: np.ndarray, sr_in: int, cuts: list[int], method: str = "reference") -> np.ndarray:
    """Output of a StreamingResampler fed ``x`` cut into pieces of the given sizes (cycled)."""
    resampler = StreamingResampler(sr_in, method=method)  # type: ignore[arg-type]
    parts, i, k = [], 0, 0
    while i < len(x):
        size = cuts[k % len(cuts)]
        parts.append(resampler.process(x[i : i + size]))
        i, k = i + size, k + 1
    parts.append(resampler.flush())
    return np.concatenate(parts)


def test_table_equals_resampys_shipped_table() -> None:
    shipped = Path(resampy.__file__).parent / "data" / "kaiser_best.npz"
    with np.load(shipped) as data:
        half_window = data["half_window"]
        assert int(data["precision"]) == 2**13
    ours = _kaiser_best_table()
    assert ours.shape == half_window.shape == (50 * 2**13 + 1,)
    np.testing.assert_allclose(ours, half_window, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sr", RATES + ODD_RATES)
def test_matches_resampy_on_noise_and_tones(sr: int) -> None:
    for name, x in signals(sr).items():
        want = reference(x, sr)
        got = resample(x, sr)
        assert got.dtype == np.float64
        assert got.shape == want.shape == (int(len(x) * 16000 / sr),), name
        assert np.abs(got - want).max() <= TOLERANCE, name


def test_odd_rates_use_both_slow_paths() -> None:
    assert _engine(44101, 16000).polyphase is None
    assert _engine(13700, 16000).polyphase is not None


@pytest.mark.parametrize("sr_in", RATES)
def test_matches_resampy_on_recordings(sr_in: int) -> None:
    files = sorted(ALSA_DIR.glob("*.wav"))
    if not files:
        pytest.skip("alsa-utils recordings not installed")
    for path in files[:3]:
        x, native = read_mono(path)
        # The samples as if recorded at sr_in, and the recording converted to sr_in by resampy.
        converted = reference(x, native, sr_in)
        for signal in (x, converted):
            want = reference(signal, sr_in)
            assert np.abs(resample(signal, sr_in) - want).max() <= TOLERANCE, path.name


def test_matches_resampy_on_all_recordings_at_native_rate() -> None:
    files = sorted(ALSA_DIR.glob("*.wav"))
    if not files:
        pytest.skip("alsa-utils recordings not installed")
    for path in files:
        x, native = read_mono(path)
        assert np.abs(resample(x, native) - reference(x, native)).max() <= TOLERANCE


@pytest.mark.parametrize(
    ("sr_in", "sr_out"), [(16000, 44100), (48000, 44100), (22050, 8000), (96000, 12), (7, 16000)]
)
def test_matches_resampy_between_other_rates(sr_in: int, sr_out: int) -> None:
    x = signals(sr_in, 0.7)["noise"]
    assert np.abs(resample(x, sr_in, sr_out) - reference(x, sr_in, sr_out)).max() <= TOLERANCE


@pytest.mark.parametrize("sr", [*RATES, 44101])
def test_output_length_is_int_of_n_times_ratio(sr: int) -> None:
    x = np.random.default_rng(0).standard_normal(3 * sr + 7) * 0.1
    for n in (*range(0, 40), 441, 1000, sr - 1, sr, sr + 1, 3 * sr + 7):
        assert len(resample(x[:n], sr)) == int(n * 16000 / sr)


@pytest.mark.parametrize("sr", [8000, 44100, 96000])
@pytest.mark.parametrize("n", [0, 1, 2, 100])
def test_short_inputs_behave_like_resampy(sr: int, n: int) -> None:
    x = np.random.default_rng(n).standard_normal(n)
    got = resample(x, sr)
    assert len(got) == int(n * 16000 / sr)
    if len(got) == 0:
        # resampy refuses inputs too short for one output sample; we return an empty array.
        with pytest.raises(ValueError, match="too small"):
            reference(x, sr)
    else:
        assert np.abs(got - reference(x, sr)).max() <= TOLERANCE


def test_same_rate_returns_a_float64_copy() -> None:
    x = np.arange(10, dtype=np.float32) / 10
    y = resample(x, 16000)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, x)
    y[0] = 5.0
    assert x[0] == 0.0


def test_float32_and_strided_inputs_are_read_as_float64() -> None:
    x = signals(44100, 0.5)["noise"]
    want = resample(x.astype(np.float32).astype(np.float64), 44100)
    np.testing.assert_array_equal(resample(x.astype(np.float32), 44100), want)
    doubled = np.repeat(x, 2)
    np.testing.assert_array_equal(resample(doubled[::2], 44100), resample(x, 44100))


def test_integer_samples_are_taken_as_numbers() -> None:
    x = np.random.default_rng(1).integers(-3000, 3000, 4410).astype(np.int16)
    np.testing.assert_array_equal(resample(x, 44100), resample(x.astype(np.float64), 44100))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sr=st.sampled_from((8000, 11025, 44100, 48000, 96000, 44101, 13700)),
    seconds=st.floats(0.0, 1.6),
    cuts=st.lists(
        st.one_of(st.integers(0, 2), st.integers(3, 5000), st.integers(5000, 60000)),
        min_size=1,
        max_size=8,
    ).filter(any),
)
def test_stream_equals_one_shot_bitwise(sr: int, seconds: float, cuts: list[int]) -> None:
    x = np.random.default_rng(len(cuts)).standard_normal(round(seconds * sr)) * 0.1
    np.testing.assert_array_equal(stream(x, sr, cuts), resample(x, sr))


@pytest.mark.parametrize("sr", [44100, 48000, 8000, 44101, 13700])
@pytest.mark.parametrize("cuts", [[997], [1, 5000, 0, 30000], [8191, 3]])
def test_stream_over_many_blocks_equals_one_shot_bitwise(sr: int, cuts: list[int]) -> None:
    x = signals(sr, 2.5)["noise"]
    np.testing.assert_array_equal(stream(x, sr, cuts), resample(x, sr))


def test_stream_of_single_samples_and_empty_chunks() -> None:
    x = signals(44100, 0.5)["noise"]
    np.testing.assert_array_equal(stream(x, 44100, [1, 0, 1]), resample(x, 44100))


def test_stream_emits_output_before_flush_and_keeps_little_history() -> None:
    sr, chunk = 44100, 4410
    resampler = StreamingResampler(sr)
    x = np.random.default_rng(3).standard_normal(20 * sr) * 0.1
    emitted, held, allocated = 0, [], []
    for i in range(0, len(x), chunk):
        emitted += len(resampler.process(x[i : i + chunk]))
        held.append(len(resampler._history.samples))
        allocated.append(len(resampler._history._data))
    assert emitted > int(len(x) * 16000 / sr) - 16000  # all but the last second or so
    assert max(held) < sr  # bounded: one block's input (~0.5 s) plus a chunk
    assert max(allocated) < 2 * sr
    assert emitted + len(resampler.flush()) == int(len(x) * 16000 / sr)


def test_flushed_stream_refuses_more_input() -> None:
    resampler = StreamingResampler(44100)
    resampler.flush()
    with pytest.raises(ValueError, match="new StreamingResampler"):
        resampler.process(np.zeros(10))
    with pytest.raises(ValueError, match="new StreamingResampler"):
        resampler.flush()


def test_same_rate_stream_passes_samples_through() -> None:
    x = np.random.default_rng(4).standard_normal(1000)
    np.testing.assert_array_equal(stream(x, 16000, [7, 0, 300]), x)


@pytest.mark.parametrize("sr", [44100, 48000, 8000])
def test_fast_is_soxr_vhq_at_the_reference_length(sr: int) -> None:
    x = signals(sr)["noise"]
    fast = resample(x, sr, method="fast")
    n_out = int(len(x) * 16000 / sr)
    assert fast.dtype == np.float64 and fast.shape == (n_out,)
    vhq = soxr.resample(x, sr, 16000, quality="VHQ")
    common = min(n_out, len(vhq))
    np.testing.assert_array_equal(fast[:common], vhq[:common])
    # A different filter: close to the reference but not equal (see the module docstring).
    deviation = np.abs(fast - reference(x, sr)).max()
    assert 1e-3 < deviation < 0.1


@pytest.mark.parametrize("cuts", [[1000], [1, 0, 5000], [60000]])
def test_fast_stream_equals_fast_one_shot(cuts: list[int]) -> None:
    x = signals(44100)["noise"]
    np.testing.assert_array_equal(stream(x, 44100, cuts, "fast"), resample(x, 44100, method="fast"))


@pytest.mark.parametrize(
    ("x", "sr_in", "sr_out", "method", "match"),
    [
        (np.zeros(10), 0, 16000, "reference", "between 1 and"),
        (np.zeros(10), -44100, 16000, "reference", "between 1 and"),
        (np.zeros(10), 44100, 0, "reference", "between 1 and"),
        (np.zeros(10), 44100.5, 16000, "reference", "whole number"),
        (np.zeros(10), float("nan"), 16000, "reference", "whole number"),
        (np.zeros(10), "44100", 16000, "reference", "whole number"),
        (np.zeros(10), True, 16000, "reference", "whole number"),
        (np.zeros(10), 800_000, 16000, "reference", "between 1 and"),
        (np.zeros(10), 44100, 10**9, "reference", "between 1 and"),
        (np.zeros(10), 768000, 90, "reference", "two steps"),
        (np.zeros((10, 2)), 44100, 16000, "reference", "mono"),
        (np.zeros(()), 44100, 16000, "reference", "1-D"),
        (np.array([0.0, np.nan]), 44100, 16000, "reference", "NaN or infinite"),
        (np.array([0.0, np.inf]), 44100, 16000, "fast", "NaN or infinite"),
        (np.array(["a", "b"]), 44100, 16000, "reference", "real numbers"),
        (np.zeros(3, dtype=complex), 44100, 16000, "reference", "real numbers"),
        (np.zeros(10), 44100, 16000, "scipy", "method must be one of"),
    ],
)
def test_bad_parameters_raise_value_error(
    x: np.ndarray, sr_in: object, sr_out: object, method: object, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        resample(x, sr_in, sr_out, method)  # type: ignore[arg-type]


def test_bad_stream_parameters_raise_value_error() -> None:
    with pytest.raises(ValueError, match="whole number"):
        StreamingResampler(22050.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method must be one of"):
        StreamingResampler(22050, method="linear")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mono"):
        StreamingResampler(22050).process(np.zeros((4, 2)))
