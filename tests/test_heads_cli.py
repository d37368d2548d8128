"""``vggish heads``: train on a folder per label, classify files, list, delete; one-line errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import heads_corpus
import numpy as np
import pytest
import soundfile as sf

from vggish.cli import main
from vggish.heads_store import HeadStore

pytestmark = pytest.mark.skipif(not heads_corpus.available(), reason="alsa sounds missing")


@pytest.fixture(scope="module")
def clips_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clips/speech (real recordings), clips/tone and clips/noise (made), 3 files each."""
    root = tmp_path_factory.mktemp("clips")
    for label in ("speech", "tone", "noise"):
        (root / label).mkdir()
    for name in heads_corpus.SPEECH_TRAIN[:3]:
        (root / "speech" / f"{name}.wav").write_bytes((heads_corpus.ALSA_DIR / f"{name}.wav").read_bytes())
    for pitch in (220, 440, 880):
        (root / "tone" / f"t{pitch}.wav").write_bytes(heads_corpus._tone(pitch).wav())
    for seed in range(3):
        (root / "noise" / f"n{seed}.wav").write_bytes(heads_corpus._noise(seed).wav())
    return root


def run(*argv: str) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights warn
        return main(list(argv))


def test_train_then_classify(clips_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    assert (
        run("heads", "train", "--name", "kinds", "--data-dir", data, "--weights", "random", str(clips_dir))
        == 0
    )
    out = capsys.readouterr().out
    assert "trained kinds v1 (linear) on 9 clips, classes noise, speech, tone" in out
    record = HeadStore(data).get("kinds")
    assert record.metrics is not None and record.metrics.folds == 3

    tone = tmp_path / "tone.wav"
    sf.write(tone, heads_corpus._tone(300).samples, 16000)
    speech = heads_corpus.ALSA_DIR / "Side_Right.wav"
    argv = ["heads", "classify", "--name", "kinds", "--data-dir", data, "--weights", "random"]
    assert run(*argv, str(tone), str(speech), "--top-k", "2") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, path, expected in zip(lines, (tone, speech), ("tone", "speech"), strict=True):
        name, _, rest = line.partition(": ")
        pairs = [p.rsplit(" ", 1) for p in rest.split(", ")]
        assert name == str(path) and len(pairs) == 2
        assert pairs[0][0] == expected
        scores = [float(s) for _, s in pairs]
        assert scores == sorted(scores, reverse=True) and 0 <= scores[1] <= scores[0] <= 1

    assert run("heads", "list", "--data-dir", data) == 0
    assert capsys.readouterr().out.startswith("kinds\tv1\tlinear\t9 clips\tnoise,speech,tone")
    assert run("heads", "delete", "--name", "kinds", "--data-dir", data) == 0
    assert HeadStore(data).list() == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["heads", "classify", "--name", "absent", "x.wav"], "no head named 'absent'"),
        (["heads", "train", "--name", "bad name", "."], "head name"),
        (["heads", "train", "--name", "ok", "/no/such/dir"], "no such directory"),
        (["heads", "delete", "--name", "absent"], "no head named 'absent'"),
    ],
)
def test_errors_are_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run(*argv, "--data-dir", str(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("vggish: error:") and message in err and "\n" not in err


def test_one_class_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "only").mkdir()
    sf.write(tmp_path / "only" / "a.wav", np.zeros(16000), 16000)
    sf.write(tmp_path / "only" / "b.wav", np.ones(16000) * 0.1, 16000)
    argv = ["heads", "train", "--name", "one", "--weights", "random", "--data-dir", str(tmp_path / "d")]
    assert run(*argv, str(tmp_path)) == 1
    assert "at least 2 classes" in capsys.readouterr().err
