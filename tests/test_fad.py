"""FAD's statistics, distance, files and Google's reader, against plain NumPy written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vggish.errors import ConflictError
from vggish.fad import (
    SetStats,
    Sums,
    check_same_origin,
    contributions,
    fad,
    fad_infinity,
    frechet_distance,
    google,
    load_stats,
    save_stats,
)

pytest.importorskip("scipy")

# ---------------------------------------------------------------------------------------------
# Independent references: the moments by np.mean / np.cov, the distance by eigenvalues.


def ref_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = x.astype(np.float64)
    return x.mean(axis=0), np.cov(x, rowvar=False)


def ref_fad(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """tr sqrtm(S1 S2) = sum of sqrt of the eigenvalues of A S2 A, A the symmetric root of S1."""
    w, v = np.linalg.eigh(s1)
    a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    eig = np.linalg.eigvalsh(a @ s2 @ a)
    d = mu1 - mu2
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(eig, 0, None)).sum())


def embeddings(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((128, 128)) / 8
    return (rng.standard_normal((n, 128)) @ mix + shift).astype(np.float32)


def stats_of(x: np.ndarray, mode: str = "default", sha: str = "random", chunks: int = 3) -> SetStats:
    sums = Sums()
    for part in np.array_split(x, chunks):
        sums.add(part)
    return SetStats.from_sums(sums, 1, sha, mode)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------


def test_streaming_sums_give_numpy_mean_and_unbiased_cov() -> None:
    x = embeddings(700, 0, shift=0.7)
    stats = stats_of(x, chunks=7)
    mu, cov = ref_stats(x)
    assert stats.count == 700
    np.testing.assert_allclose(stats.mean, mu, rtol=0, atol=1e-12)
    np.testing.assert_allclose(stats.cov, cov, rtol=0, atol=1e-12)


def test_google_mode_rounds_mean_and_cov_to_float32() -> None:
    x = embeddings(300, 1)
    stats = stats_of(x, mode="google")
    mu, cov = ref_stats(x)
    assert np.array_equal(stats.mean, mu.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(stats.cov, cov.astype(np.float32), rtol=1e-6, atol=1e-7)
    assert np.array_equal(stats.cov, stats.cov.astype(np.float32).astype(np.float64))


@pytest.mark.parametrize(("n_a", "n_b"), [(400, 300), (110, 55)])  # full rank, and rank-deficient
def test_frechet_distance_matches_eigenvalue_reference(n_a: int, n_b: int) -> None:
    a, b = embeddings(n_a, 2), embeddings(n_b, 3, shift=0.3)
    expected = ref_fad(*ref_stats(a), *ref_stats(b))
    got = frechet_distance(stats_of(a), stats_of(b))
    assert got == pytest.approx(expected, rel=1e-6)
    assert expected > 1.0


def test_a_set_against_itself_is_zero() -> None:
    s = stats_of(embeddings(500, 4))
    assert abs(frechet_distance(s, s)) < 1e-8 * np.trace(s.cov)


def test_singular_product_falls_back_to_googles_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-finite root is taken again of (S1 + 1e-7 I)(S2 + 1e-7 I)."""
    import scipy.linalg

    calls: list[np.ndarray] = []
    real = scipy.linalg.sqrtm

    def fake(m: np.ndarray) -> np.ndarray:
        calls.append(m)
        return np.full_like(m, np.nan) if len(calls) == 1 else real(m)

    monkeypatch.setattr(scipy.linalg, "sqrtm", fake)
    a, b = stats_of(embeddings(300, 5)), stats_of(embeddings(300, 6))
    frechet_distance(a, b)
    eps = np.eye(128) * 1e-7
    assert len(calls) == 2
    np.testing.assert_array_equal(calls[1], (a.cov + eps) @ (b.cov + eps))


def test_large_imaginary_root_raises_value_error() -> None:
    a = stats_of(embeddings(300, 7))
    bad = SetStats(a.mean, -a.cov, a.count, 1, "random", "default")  # negative definite: imaginary root
    with pytest.raises(ValueError, match="complex"):
        frechet_distance(a, bad)


def test_sets_of_other_weights_or_modes_are_refused_unless_forced() -> None:
    x = embeddings(200, 8)
    a, other_weights, other_mode = stats_of(x), stats_of(x, sha="f" * 64), stats_of(x, mode="google")
    for b in (other_weights, other_mode):
        with pytest.raises(ConflictError, match="--force"):
            fad(a, b)
        assert "forced" in (check_same_origin(a, b, force=True) or "")
        assert fad(a, b, force=True) == pytest.approx(frechet_distance(a, b))


@pytest.mark.parametrize("n", [0, 1])
def test_a_set_of_fewer_than_two_examples_is_refused(n: int) -> None:
    sums = Sums()
    sums.add(embeddings(n, 9))
    with pytest.raises(ValueError, match="covariance is undefined"):
        SetStats.from_sums(sums, 1, "random", "default")


def test_non_finite_embeddings_are_refused() -> None:
    x = embeddings(10, 10)
    x[3, 5] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        Sums().add(x)


# ---------------------------------------------------------------------------------------------
# Statistics files.


def test_saved_statistics_round_trip_exactly(tmp_path: Path) -> None:
    s = stats_of(embeddings(300, 11), mode="google", sha="a" * 64)
    path = tmp_path / "bg.npz"
    save_stats(path, s)
    back = load_stats(path)
    assert (back.count, back.files, back.weights_sha256, back.mode) == (300, 1, "a" * 64, "google")
    assert np.array_equal(back.mean, s.mean) and np.array_equal(back.cov, s.cov)
    assert [p.name for p in tmp_path.iterdir()] == ["bg.npz"]  # no temporary left


def _write_npz(path: Path, **arrays: object) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def test_malformed_or_foreign_statistics_are_refused(tmp_path: Path) -> None:
    good = stats_of(embeddings(300, 12))
    save_stats(tmp_path / "good.npz", good)
    with np.load(tmp_path / "good.npz") as data:
        fields = {k: data[k] for k in data.files}
    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    cases = {
        text: "not an .npz",
        _write_npz(
            tmp_path / "embed.npz", embedding=np.zeros((3, 128)), timestamps=np.zeros((3, 2))
        ): "missing",
        _write_npz(tmp_path / "shape.npz", **{**fields, "mean": np.zeros(64)}): "expected float",
        _write_npz(tmp_path / "nan.npz", **{**fields, "cov": np.full((128, 128), np.nan)}): "non-finite",
        _write_npz(tmp_path / "one.npz", **{**fields, "count": np.array(1)}): "at least 2",
        _write_npz(tmp_path / "version.npz", **{**fields, "version": np.array(99)}): "version",
        _write_npz(tmp_path / "foreign.npz", **{**fields, "format": np.array("other")}): "format",
        _write_npz(tmp_path / "mode.npz", **{**fields, "mode": np.array("fadtk")}): "mode",
    }
    for path, words in cases.items():
        with pytest.raises(ValueError, match=words):
            load_stats(path)
    with pytest.raises(FileNotFoundError):
        load_stats(tmp_path / "absent.npz")


# ---------------------------------------------------------------------------------------------
# Contributions and FAD-infinity.


def test_contributions_equal_leave_one_out_fads() -> None:
    background = stats_of(embeddings(400, 13))
    files = [embeddings(40, 20 + i, shift=0.5 * (i == 2)) for i in range(6)]
    total, per_file = Sums(), []
    for i, x in enumerate(files):
        part = Sums()
        part.add(x)
        total.merge(part)
        per_file.append((f"f{i}.wav", part))
    got = {c.name: c for c in contributions(background, total, per_file)}
    mu_b, s_b = background.mean, background.cov
    whole = ref_fad(mu_b, s_b, *ref_stats(np.concatenate(files)))
    for i in range(6):
        rest = np.concatenate([x for j, x in enumerate(files) if j != i])
        expected = whole - ref_fad(mu_b, s_b, *ref_stats(rest))
        assert got[f"f{i}.wav"].delta == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert next(iter(got)) == "f2.wav"  # the shifted file raises the score most


def test_fad_infinity_is_the_intercept_of_fad_against_one_over_n() -> None:
    background = stats_of(embeddings(900, 14))
    x = embeddings(1500, 15, shift=0.2)
    result = fad_infinity(background, x, seed=3, steps=6)
    rng = np.random.default_rng(3)
    sizes = [int(n) for n in np.linspace(500, 1500, 6)]
    points = []
    for n in sizes:
        draw = x[rng.integers(0, len(x), n)]
        points.append(ref_fad(background.mean, background.cov, *ref_stats(draw)))
    slope, intercept = np.polyfit(1 / np.array(sizes, dtype=float), points, 1)
    assert [n for n, _ in result.points] == sizes
    assert result.value == pytest.approx(intercept, rel=1e-6)
    assert result.slope == pytest.approx(slope, rel=1e-6)
    assert 0 <= result.r2 <= 1


# ---------------------------------------------------------------------------------------------
# Google's reader.


def _wav(path: Path, x: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> str:
    sf.write(path, x, rate, subtype=subtype)
    return str(path)


def test_google_reader_refuses_what_googles_tool_would_misread(tmp_path: Path) -> None:
    x = np.sin(np.arange(20000) / 10) * 0.5
    cases = {
        _wav(tmp_path / "a.flac", x, subtype="PCM_16"): "not a WAV",
        _wav(tmp_path / "stereo.wav", np.stack([x, x], 1)): "2 channels",
        _wav(tmp_path / "rate.wav", x, rate=44100): "44100 Hz",
        _wav(tmp_path / "ulaw.wav", x, subtype="ULAW"): "not a WAV",
    }
    for path, words in cases.items():
        with pytest.raises(ValueError, match=words):
            google.read_wav(path)


@pytest.mark.parametrize(
    ("samples", "subtype", "expected_peak"),
    [
        (np.array([-30000, 1000, 20000, -5], dtype=np.int16), "PCM_16", 20000.0),  # the signed max, raw scale
        (np.array([-0.9, 0.05, 0.02], dtype=np.float32), "FLOAT", 0.1),  # floor: at most +20 dB
        (np.array([-0.9, 0.5, 0.25], dtype=np.float64), "DOUBLE", 0.5),
    ],
)
def test_google_peak_is_the_signed_max_with_a_floor(
    samples: np.ndarray, subtype: str, expected_peak: float
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        wav = google.read_wav(_wav(Path(folder) / "x.wav", samples, subtype=subtype))
        assert wav.peak == expected_peak


@pytest.mark.parametrize(
    ("samples", "windows"), [(0, 0), (15999, 0), (16000, 1), (23999, 1), (24000, 2), (40000, 4)]
)
def test_google_window_count(samples: int, windows: int) -> None:
    assert google.num_windows(samples) == windows


def test_google_examples_equal_per_window_log_mel(tmp_path: Path) -> None:
    """Each example is the first 96 frames of its own 1 s window's log-mel (naive NumPy here)."""
    from test_features import naive_log_mel

    from vggish.pipeline.source import ExampleSource

    rng = np.random.default_rng(16)
    x = (rng.standard_normal(16000 * 3 + 4321) * 2000).astype(np.int16)
    path = _wav(tmp_path / "x.wav", x)
    signal = x.astype(np.float64) / max(0.1, float(x.max()))
    expected = np.array(
        [naive_log_mel(signal[i : i + 16000])[:96] for i in range(0, len(x) - 16000 + 1, 8000)]
    )
    wav = google.read_wav(path)
    for windows_per_segment in (240, 2):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(google, "SEGMENT_WINDOWS", windows_per_segment)
            got = np.concatenate(
                [ExampleSource(s, google.OPTIONS).collect().examples for s in wav.segments()]
            )
        assert got.shape == expected.shape == (5, 96, 64)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# The command line on saved statistics (no model needed).


def test_cli_on_two_saved_statistics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vggish.cli import main

    a, b = stats_of(embeddings(300, 17)), stats_of(embeddings(200, 18, shift=0.1))
    save_stats(tmp_path / "a.npz", a)
    save_stats(tmp_path / "b.npz", b)
    assert main(["fad", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fad"] == pytest.approx(ref_fad(a.mean, a.cov, b.mean, b.cov), rel=1e-6)
    assert (out["background"]["count"], out["eval"]["count"], out["mode"]) == (300, 200, "default")
    save_stats(tmp_path / "g.npz", stats_of(embeddings(200, 18), mode="google"))
    assert main(["fad", str(tmp_path / "a.npz"), str(tmp_path / "g.npz")]) == 1
    assert "mode default" in capsys.readouterr().err
    assert main(["fad", str(tmp_path / "a.npz"), str(tmp_path / "g.npz"), "--force"]) == 0
    assert "(forced)" in capsys.readouterr().err
    assert main(["fad", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--compat", "google"]) == 1


def test_cli_refuses_contradictory_flags_before_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vggish.cli import main

    save_stats(tmp_path / "a.npz", stats_of(embeddings(300, 19)))
    a = str(tmp_path / "a.npz")
    cases = [
        (["fad", a, a, "--save-stats-eval", str(tmp_path / "x.npz")], "already statistics"),
        (
            ["fad", str(tmp_path), a, "--save-stats-background", str(tmp_path / "no" / "x.npz")],
            "no such folder",
        ),
        (["fad", str(tmp_path), a, "--inf"], "need EVAL as audio"),
        (["fad", str(tmp_path), a, "--precision", "fp16"], "fp32"),
        (["fad", str(tmp_path / "text.npz"), a], "no such statistics file"),
    ]
    for argv, words in cases:
        assert main(argv) == 1
        assert words in capsys.readouterr().err


@pytest.mark.slow
def test_fad_help_starts_without_pytorch_or_scipy() -> None:
    import subprocess
    import sys

    code = (
        "import sys\nfrom vggish.cli import main\n"
        "try:\n    main(['fad', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print(sorted({'torch', 'onnxruntime', 'scipy'} & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "--compat" in done.stdout and done.stdout.strip().splitlines()[-1] == "[]"
