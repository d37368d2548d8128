"""The log-mel front end against Google's reference arrays and a plain NumPy version written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vggish
from vggish import params
from vggish.features import logmel as features

# ---------------------------------------------------------------------------------------------
# An independent, deliberately naive front end (loops, the formulas of docs/vggish.md §2-§3 as written).


def naive_mel_matrix() -> np.ndarray:
    def mel(f: float) -> float:
        return 1127.0 * math.log(1.0 + f / 700.0)

    lo, hi = mel(125.0), mel(7500.0)
    edges = [lo + (hi - lo) * i / 65 for i in range(66)]
    out = np.zeros((257, 64))
    for k in range(1, 257):  # row 0 (DC) stays zero
        m = mel(k * 8000.0 / 256)
        for i in range(64):
            lower, center, upper = edges[i], edges[i + 1], edges[i + 2]
            out[k, i] = max(0.0, min((m - lower) / (center - lower), (upper - m) / (upper - center)))
    return out


def naive_log_mel(x: np.ndarray) -> np.ndarray:
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * k / 400) for k in range(400)])
    mel = naive_mel_matrix()
    rows = []
    start = 0
    while start + 400 <= len(x):
        frame = np.zeros(512)
        frame[:400] = x[start : start + 400] * window  # zero-padded at the end
        rows.append(np.log(np.abs(np.fft.rfft(frame)) @ mel + 0.01))
        start += 160
    return np.array(rows).reshape(-1, 64)


def naive_examples(x: np.ndarray, hop_frames: int = 96) -> np.ndarray:
    frames = naive_log_mel(x)
    out = []
    k = 0
    while k * hop_frames + 96 <= len(frames):
        out.append(frames[k * hop_frames : k * hop_frames + 96])
        k += 1
    return np.array(out).reshape(-1, 96, 64)


# ---------------------------------------------------------------------------------------------


def test_mel_matrix_matches_reference(reference: dict[str, np.ndarray]) -> None:
    assert features.mel_matrix().shape == (257, 64)
    assert np.abs(features.mel_matrix() - reference["mel_matrix"]).max() <= 1e-10
    assert np.abs(features.mel_matrix() - naive_mel_matrix()).max() <= 1e-12
    assert not features.mel_matrix()[0].any()


@pytest.mark.parametrize("name", ["smoke", "noise"])
def test_examples_match_reference_at_16k(reference: dict[str, np.ndarray], name: str) -> None:
    ours = vggish.waveform_to_examples(reference[f"{name}_x"], 16000)
    expected = reference[f"{name}_examples"]
    assert ours.dtype == np.float32 and ours.shape == expected.shape
    assert np.abs(ours - expected).max() <= 1e-4


def test_examples_match_reference_through_resampling(reference: dict[str, np.ndarray]) -> None:
    ours = vggish.waveform_to_examples(reference["noise44k_x"], 44100)
    expected = reference["noise44k_examples"]
    assert ours.shape == expected.shape == (5, 96, 64)
    assert np.abs(ours - expected).max() <= 1e-4


def test_smoke_silence_is_log_offset() -> None:
    examples = vggish.waveform_to_examples(np.zeros(16000), 16000)
    assert examples.shape == (1, 96, 64)
    assert np.allclose(examples, math.log(0.01))


def test_matches_naive_front_end_on_a_chirp() -> None:
    t = np.arange(40000) / 16000
    x = 0.5 * np.sin(2 * np.pi * (200 + 3000 * t) * t)
    assert np.abs(features.log_mel(x) - naive_log_mel(x)).max() <= 1e-9
    assert (
        np.abs(vggish.waveform_to_examples(x, 16000, hop_seconds=0.25) - naive_examples(x, 25)).max() <= 1e-5
    )


def test_stereo_is_mean_over_channels(reference: dict[str, np.ndarray]) -> None:
    x = reference["noise_x"]
    stereo = np.stack([x + 0.05, x - 0.05], axis=1)
    assert np.array_equal(vggish.waveform_to_examples(stereo, 16000), vggish.waveform_to_examples(x, 16000))


def test_int16_is_scaled_by_32768() -> None:
    ints = (np.random.default_rng(1).standard_normal(20000) * 3000).astype(np.int16)
    as_float = ints.astype(np.float64) / 32768.0
    assert np.array_equal(
        vggish.waveform_to_examples(ints, 16000), vggish.waveform_to_examples(as_float, 16000)
    )


@pytest.mark.parametrize("n", [0, 1, 239, 240, 399, 400, 15599])
def test_short_clips_give_no_example_or_one_padded(n: int) -> None:
    x = np.full(n, 0.1)
    assert vggish.waveform_to_examples(x, 16000).shape == (0, 96, 64)
    padded = vggish.waveform_to_examples(x, 16000, pad=True)
    assert padded.shape == (1, 96, 64)
    expected = naive_examples(np.concatenate([x, np.zeros(15600 - n)]))
    assert np.abs(padded - expected).max() <= 1e-5


def test_pad_leaves_longer_clips_alone(reference: dict[str, np.ndarray]) -> None:
    x = reference["noise_x"][:20000]
    assert np.array_equal(
        vggish.waveform_to_examples(x, 16000, pad=True), vggish.waveform_to_examples(x, 16000)
    )


@pytest.mark.parametrize("hop", [0, -0.96, 0.005, 0.015, 0.961, float("nan"), float("inf"), "x"])
def test_bad_hops_are_rejected(hop: object) -> None:
    with pytest.raises(ValueError, match=r"multiple of 0\.01|number of seconds"):
        vggish.waveform_to_examples(np.zeros(16000), 16000, hop_seconds=hop)  # type: ignore[arg-type]


@given(
    n=st.integers(min_value=0, max_value=120_000),
    hop_frames=st.integers(min_value=1, max_value=250),
    pad=st.booleans(),
    chunk=st.integers(min_value=1, max_value=50_000),
)
@pytest.mark.slow
@settings(max_examples=60, deadline=None)
def test_example_counts_timestamps_and_chunking(n: int, hop_frames: int, pad: bool, chunk: int) -> None:
    hop = hop_frames / 100
    x = np.random.default_rng(n).standard_normal(n) * 0.1
    stream = features.FrameStream(hop, pad)
    parts = [stream.push(x[i : i + chunk]) for i in range(0, n, chunk)] + [stream.finish()]
    chunked = np.concatenate(parts)
    frames = 0 if n < 400 else 1 + (n - 400) // 160
    expected = (frames - 96) // hop_frames + 1 if frames >= 96 else int(pad)
    assert chunked.shape == (expected, 96, 64)
    assert features.num_examples(n, hop, pad) == expected
    whole = vggish.waveform_to_examples(x, 16000, hop_seconds=hop, pad=pad)
    assert np.array_equal(chunked, whole)
    stamps = vggish.example_timestamps(expected, hop)
    assert stamps.shape == (expected, 2)
    assert np.allclose(stamps[:, 0], np.arange(expected) * hop_frames * 0.01, atol=1e-12)
    assert np.allclose(stamps[:, 1] - stamps[:, 0], 0.975, atol=1e-12)
    if expected and not (pad and n < 15600):
        assert stamps[-1, 1] <= n / 16000 + 1e-12  # every example lies inside the audio


@given(n=st.integers(min_value=0, max_value=400_000))
@settings(max_examples=200, deadline=None)
def test_default_hop_count_formula(n: int) -> None:
    expected = 0 if n < 15600 else (n - 15600) // 15360 + 1
    assert features.num_examples(n) == expected


@given(
    seconds=st.floats(min_value=0.0, max_value=4.0),
    rate=st.sampled_from([8000, 11025, 22050, 32000, 44100, 48000, 96000, 12345]),
    hop_frames=st.sampled_from([1, 7, 48, 96, 100]),
)
@settings(max_examples=25, deadline=None)
def test_counts_at_other_rates_follow_resampled_length(seconds: float, rate: int, hop_frames: int) -> None:
    n = int(seconds * rate)
    x = np.random.default_rng(n).standard_normal(n) * 0.1
    examples = vggish.waveform_to_examples(x, rate, hop_seconds=hop_frames / 100)
    assert examples.shape[0] == features.num_examples(int(n * 16000 / rate), hop_frames / 100)


def test_params_derive_reference_sizes() -> None:
    assert (params.STFT_WINDOW_SAMPLES, params.STFT_HOP_SAMPLES, params.FFT_LENGTH) == (400, 160, 512)
    assert (params.NUM_FRAMES, params.EXAMPLE_SPAN_SAMPLES) == (96, 15600)


def test_real_recordings_match_naive_front_end_with_resampy(alsa_recordings: list) -> None:  # type: ignore[type-arg]
    """Debian's speech recordings (48 kHz): our decode + resample + log-mel vs resampy + naive NumPy."""
    import resampy
    import soundfile as sf

    for path in alsa_recordings[:3]:
        ints, rate = sf.read(path, dtype="int16", always_2d=True)
        mono = ints.astype(np.float64).mean(axis=1) / 32768.0
        expected = naive_examples(resampy.resample(mono, rate, 16000, filter="kaiser_best"))
        ours = vggish.wavfile_to_examples(path)
        assert ours.shape == expected.shape and ours.shape[0] >= 1, path
        assert np.abs(ours - expected).max() <= 1e-4, path
