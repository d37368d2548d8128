"""``vggish fad`` end to end against independent references written here: files read with
soundfile/SciPy, a naive NumPy log-mel (tests/test_features.py), TensorFlow's forward pass of a
checkpoint TensorFlow wrote (tests/tf_reference.py), NumPy statistics, and the distance by
eigenvalues. Both modes agree within 1e-4 relative.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile as sf
import tf_reference
from test_fad import ref_fad
from test_features import naive_examples, naive_log_mel

from vggish.cli import main
from vggish.weights.convert import convert_checkpoint

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]
pytest.importorskip("scipy")


@pytest.fixture(scope="module")
def tfr() -> ModuleType:
    pytest.importorskip("tensorflow")
    return tf_reference


@pytest.fixture(scope="module")
def checkpoint(
    tmp_path_factory: pytest.TempPathFactory, tfr: ModuleType
) -> tuple[dict[str, np.ndarray], str]:
    """Random TensorFlow variables, saved by TensorFlow and converted into our weights file."""
    variables = tfr.random_vggish_variables(seed=5)
    folder = tmp_path_factory.mktemp("ckpt")
    prefix = tfr.write_checkpoint(folder / "model.ckpt", variables, "v1")
    return variables, str(convert_checkpoint(prefix, folder / "vggish.safetensors"))


def _tone(seconds: float, rate: int, freq: float, noise: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    return 0.4 * np.sin(2 * np.pi * freq * t * (1 + 0.05 * t)) + noise * rng.standard_normal(t.size)


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two sets of 16 kHz mono WAV (int16, float32, one clip under 1 s), and a set of mixed formats."""
    root = tmp_path_factory.mktemp("sets")
    for name in ("bg", "ev", "mixed"):
        (root / name).mkdir()
    for i in range(3):
        sf.write(root / "bg" / f"{i}.wav", _tone(6.3, 16000, 220 * (i + 1), 0.01, i), 16000, subtype="PCM_16")
        sf.write(
            root / "ev" / f"{i}.wav", _tone(5.1, 16000, 300 * (i + 1), 0.1, 10 + i), 16000, subtype="PCM_16"
        )
    sf.write(root / "ev" / "f.wav", 0.05 * _tone(4.0, 16000, 500, 0.2, 20), 16000, subtype="FLOAT")
    sf.write(root / "ev" / "short.wav", _tone(0.7, 16000, 440, 0.0, 21), 16000, subtype="PCM_16")
    stereo = np.stack([_tone(4.2, 44100, 350, 0.05, 30), _tone(4.2, 44100, 700, 0.05, 31)], 1)
    sf.write(root / "mixed" / "st.wav", stereo, 44100, subtype="PCM_16")
    sf.write(root / "mixed" / "m.flac", _tone(3.5, 22050, 900, 0.1, 32), 22050, subtype="PCM_16")
    shutil.copy(root / "ev" / "0.wav", root / "mixed" / "0.wav")
    return {name: root / name for name in ("bg", "ev", "mixed")}


# ---------------------------------------------------------------------------------------------
# The references.


def default_examples(path: Path) -> np.ndarray:
    """Decode as int16 / 32768, mean over channels, resampy kaiser_best, 0.96 s examples."""
    import resampy

    ints, rate = sf.read(path, dtype="int16", always_2d=True)
    mono = ints.astype(np.float64).mean(axis=1) / 32768.0
    if rate != 16000:
        mono = resampy.resample(mono, rate, 16000, filter="kaiser_best")
    return naive_examples(mono)


def google_examples(path: Path) -> np.ndarray:
    """Google's create_embeddings: scipy read, float32 values, / max(0.1, max x), 1 s windows
    every 0.5 s, each window's own log-mel cut to 96 frames."""
    from scipy.io import wavfile

    _, data = wavfile.read(path)
    x = data.astype(np.float32).astype(np.float64)
    x = x / max(0.1, x.max()) if x.size else x
    windows = [naive_log_mel(x[i : i + 16000])[:96] for i in range(0, len(x) - 16000 + 1, 8000)]
    return np.array(windows).reshape(-1, 96, 64)


def google_stats(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ComputeMeanAndCovariance's one-pass formula, then the float32 of the stats file."""
    x = e.astype(np.float64)
    n = len(x)
    mu = x.sum(axis=0) / n
    sigma = (x.T @ x) / (n - 1) - np.outer(mu, mu) * n / (n - 1)
    return mu.astype(np.float32).astype(np.float64), sigma.astype(np.float32).astype(np.float64)


def reference_fad(tfr: ModuleType, variables: dict[str, np.ndarray], bg: Path, ev: Path, mode: str) -> float:
    stats = []
    for folder in (bg, ev):
        files = sorted(p for p in folder.iterdir() if p.suffix in (".wav", ".flac"))
        make = google_examples if mode == "google" else default_examples
        examples = np.concatenate([make(p) for p in files]).astype(np.float32)
        e = tfr.tf_embeddings(variables, examples)
        if mode == "google":
            stats.append(google_stats(e))
        else:
            stats.append((e.astype(np.float64).mean(axis=0), np.cov(e.astype(np.float64), rowvar=False)))
    return ref_fad(*stats[0], *stats[1])


def run_fad(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object] | None, str]:
    status = main(["fad", *argv, "--json", "--backend", "torch"])
    captured = capsys.readouterr()
    return status, (json.loads(captured.out) if captured.out.strip() else None), captured.err


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["default", "google"])
def test_fad_matches_the_independent_reference(
    mode: str,
    tfr: ModuleType,
    checkpoint: tuple[dict[str, np.ndarray], str],
    sets: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    variables, weights = checkpoint
    ev = sets["ev"] if mode == "google" else sets["mixed"]
    compat = ["--compat", "google"] if mode == "google" else []
    status, out, err = run_fad(capsys, str(sets["bg"]), str(ev), "--weights", weights, *compat)
    assert status == 0, err
    assert out is not None
    expected = reference_fad(tfr, variables, sets["bg"], ev, mode)
    assert out["fad"] == pytest.approx(expected, rel=1e-4)
    assert out["mode"] == mode
    counts = {"google": (33, 34), "default": (18, 12)}[mode]  # e.g. 6.3 s: 11 windows or 6 examples
    assert (out["background"]["count"], out["eval"]["count"]) == counts  # type: ignore[index]


def test_saved_statistics_give_the_same_fad_and_are_bound_to_weights(
    tmp_path: Path,
    checkpoint: tuple[dict[str, np.ndarray], str],
    sets: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, weights = checkpoint
    bg, ev, saved = str(sets["bg"]), str(sets["ev"]), str(tmp_path / "bg.npz")
    status, audio, _ = run_fad(capsys, bg, ev, "--weights", weights, "--save-stats-background", saved)
    assert status == 0 and audio is not None
    status, from_stats, _ = run_fad(capsys, saved, ev, "--weights", weights)
    assert status == 0 and from_stats is not None
    assert from_stats["fad"] == audio["fad"]
    status, same, _ = run_fad(capsys, saved, saved)
    assert status == 0 and same is not None and abs(same["fad"]) < 1e-6 * audio["fad"]  # type: ignore[operator]
    status, _, err = run_fad(capsys, saved, ev, "--weights", "random")
    assert status == 1 and "weights" in err and "--force" in err
    status, forced, err = run_fad(capsys, saved, ev, "--weights", "random", "--force")
    assert status == 0 and forced is not None and "(forced)" in err
    status, _, err = run_fad(capsys, saved, ev, "--weights", weights, "--compat", "google")
    assert status == 1 and "mode default" in err


def test_failed_files_are_listed_and_the_rest_goes_on(
    tmp_path: Path,
    checkpoint: tuple[dict[str, np.ndarray], str],
    sets: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, weights = checkpoint
    ev = tmp_path / "ev"
    shutil.copytree(sets["ev"], ev)
    status, clean, _ = run_fad(capsys, str(sets["bg"]), str(ev), "--weights", weights)
    assert status == 0 and clean is not None
    (ev / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    status, out, err = run_fad(capsys, str(sets["bg"]), str(ev), "--weights", weights)
    assert status == 2 and out is not None
    assert "broken.wav" in err and "1 of 9 inputs failed" in err
    assert [f["file"] for f in out["eval"]["failed"]] == [str(ev / "broken.wav")]  # type: ignore[index]
    assert out["fad"] == pytest.approx(clean["fad"], rel=1e-9)
    assert out["eval"]["no_examples"] == [str(ev / "short.wav")]  # type: ignore[index]


def test_google_mode_refuses_files_it_would_misread(
    checkpoint: tuple[dict[str, np.ndarray], str], sets: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, weights = checkpoint
    status, out, _ = run_fad(
        capsys, str(sets["bg"]), str(sets["mixed"]), "--weights", weights, "--compat", "google"
    )
    assert status == 2 and out is not None
    failed = {Path(f["file"]).name: f["error"] for f in out["eval"]["failed"]}  # type: ignore[index]
    assert "2 channels" in failed["st.wav"] and "not a WAV" in failed["m.flac"]
    assert out["eval"]["count"] == 9  # type: ignore[index]  # 0.wav alone: 5.1 s -> 9 windows


def test_workers_give_the_same_fad(
    checkpoint: tuple[dict[str, np.ndarray], str], sets: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, weights = checkpoint
    args = (str(sets["bg"]), str(sets["mixed"]), "--weights", weights, "--contributions", "3")
    status, one, _ = run_fad(capsys, *args)
    assert status == 0 and one is not None
    status, two, _ = run_fad(capsys, *args, "--workers", "2")
    assert status == 0 and two is not None
    assert two["fad"] == pytest.approx(one["fad"], rel=1e-6)
    assert [c["file"] for c in two["contributions"]] == [c["file"] for c in one["contributions"]]  # type: ignore[index]
