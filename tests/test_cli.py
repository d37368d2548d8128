"""``vggish embed``: outputs, one-line errors, no partial files."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import vggish
from vggish import weights as W
from vggish.cli import main


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    loaded = W.random_weights()
    return W.save_weights(
        tmp_path_factory.mktemp("w") / "vggish.safetensors", loaded.state_dict, loaded.pca, {"source": "test"}
    )


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "clip.wav"
    rng = np.random.default_rng(5)
    sf.write(path, (rng.standard_normal((22050 * 4, 2)) * 3000).astype(np.int16), 22050, subtype="PCM_16")
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vggish", *args], capture_output=True, text=True)


@pytest.mark.slow
def test_embed_writes_npz_equal_to_library(tmp_path: Path, clip: Path, weights_file: Path) -> None:
    out = tmp_path / "clip.npz"
    assert main(["embed", str(clip), "--output", str(out), "--weights", str(weights_file)]) == 0
    with np.load(out) as data:
        assert set(data.files) == {"embedding", "timestamps", "postprocessed"}
        emb, stamps, post = data["embedding"], data["timestamps"], data["postprocessed"]
    assert emb.dtype == np.float32 and stamps.dtype == np.float64 and post.dtype == np.uint8
    expected = vggish.load_model(weights_file, backend="torch").embed_file(clip)
    assert emb.shape == (4, 128) and np.array_equal(emb, expected.embeddings)
    assert np.array_equal(stamps, expected.timestamps) and np.array_equal(post, expected.postprocessed)


def test_embed_options(tmp_path: Path, clip: Path, weights_file: Path) -> None:
    out = tmp_path / "opts.npz"
    args = [
        "embed",
        str(clip),
        "-o",
        str(out),
        "--weights",
        str(weights_file),
        "--hop",
        "0.48",
        "--no-postprocess",
        "--resampler",
        "fast",
        "--batch-size",
        "3",
    ]
    assert main(args) == 0
    with np.load(out) as data:
        assert set(data.files) == {"embedding", "timestamps"}
        assert data["embedding"].shape == (7, 128)
        assert np.allclose(data["timestamps"][:, 0], np.arange(7) * 0.48)


def test_pad_gives_one_example_for_a_short_clip(tmp_path: Path, weights_file: Path) -> None:
    short = tmp_path / "short.wav"
    sf.write(short, np.full(8000, 1000, dtype=np.int16), 16000, subtype="PCM_16")
    for extra, count in (([], 0), (["--pad"], 1)):
        out = tmp_path / f"short{count}.npz"
        assert main(["embed", str(short), "-o", str(out), "--weights", str(weights_file), *extra]) == 0
        with np.load(out) as data:
            assert data["embedding"].shape == (count, 128)


@pytest.mark.slow
def test_random_weights_demo_warns(tmp_path: Path, clip: Path) -> None:
    with pytest.warns(UserWarning, match="RANDOM"):
        assert main(["embed", str(clip), "-o", str(tmp_path / "r.npz"), "--weights", "random"]) == 0


@pytest.mark.slow
def test_random_weights_warning_is_one_line_without_a_source_path(tmp_path: Path, clip: Path) -> None:
    argv = ["embed", str(clip), "-o", str(tmp_path / "r.npz"), "--weights", "random"]
    done = subprocess.run(
        [sys.executable, "-m", "vggish", *argv], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "vggish: warning: VGGish is using RANDOM weights: embeddings are meaningless (demos and tests only)"
    ]


@pytest.mark.parametrize(
    ("make_input", "extra", "message"),
    [
        (lambda d: d / "missing.wav", [], "no such input file"),
        (lambda d: _write(d / "text.wav", b"hello, this is not audio\n" * 40), [], "clip|decode|audio"),
        (lambda d: _write(d / "empty.wav", b""), [], "empty|decode|audio"),
        (lambda d: d / "clip.wav", ["--hop", "0.333"], "multiple of 0.01"),
        (lambda d: d / "clip.wav", ["--weights", "/nonexistent/w.safetensors"], "vggish download"),
    ],
)
@pytest.mark.slow
def test_errors_are_one_line_and_leave_no_output(
    tmp_path: Path, clip: Path, weights_file: Path, make_input, extra: list[str], message: str
) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "clip.wav").write_bytes(clip.read_bytes())
    source = make_input(tmp_path)
    out = tmp_path / "out.npz"
    weights = [] if "--weights" in extra else ["--weights", str(weights_file)]
    proc = run_cli("embed", str(source), "-o", str(out), *weights, *extra)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vggish: error: "), proc.stderr
    assert re.search(message, lines[0], flags=re.IGNORECASE)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.npz")] == []


def test_output_must_be_npz_in_an_existing_folder(
    tmp_path: Path, clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["embed", str(clip), "-o", str(tmp_path / "out.txt"), "--weights", "random"]) == 1
    assert "must name an .npz file" in capsys.readouterr().err
    assert main(["embed", str(clip), "-o", str(tmp_path / "nope" / "out.npz"), "--weights", "random"]) == 1
    assert "does not exist; create it first" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_help_teaches() -> None:
    proc = run_cli("embed", "--help")
    assert proc.returncode == 0
    for text in ("--hop", "--pad", "--resampler", "postprocessed", "examples:"):
        assert text in proc.stdout
    assert run_cli().returncode == 1


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
