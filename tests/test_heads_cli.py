"""``vggish heads``: train on a folder per label, classify files (text or JSON lines, going on past
files that fail: exit 2), export and import, list, delete; each head records the weights and
front-end settings it was trained on and is refused on other weights (exit 1) unless --force, while
another hop, pad or resampler is no refusal (a resampler warns); short clips
are padded by default; one-line errors. Store commands run on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import heads_corpus
import numpy as np
import pytest
import soundfile as sf
from safetensors.numpy import load as load_safetensors

from vggish import heads
from vggish import weights as W
from vggish.cli import main
from vggish.heads.store import BaseHeadStore, HeadStore, open_store
from vggish.network.runtime import Runtime

pytestmark = [  # each test runs the CLI in subprocesses: seconds each
    pytest.mark.skipif(not heads_corpus.available(), reason="alsa sounds missing"),
    pytest.mark.slow,
]
RANDOM = ["--weights", "random"]


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


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The random weights saved as a file: the same numbers, another identity (the file's SHA-256)."""
    loaded = W.random_weights()
    return W.save_weights(tmp_path_factory.mktemp("w") / "other.safetensors", loaded.state_dict, loaded.pca)


@pytest.fixture(params=["sqlite", "postgres"])
def store_args(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """Where the commands keep heads: a data directory, or a PostgreSQL database."""
    if request.param == "sqlite":
        return ["--data-dir", str(tmp_path / "data")]
    return ["--database-url", request.getfixturevalue("postgres_url")]


def store_of(store_args: list[str]) -> BaseHeadStore:
    return open_store(store_args[1])


def run(*argv: str) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights warn
        return main(list(argv))


def train_kinds(clips_dir: Path, store_args: list[str], *extra: str) -> None:
    assert run("heads", "train", "--name", "kinds", *store_args, *RANDOM, *extra, str(clips_dir)) == 0


def tone_file(folder: Path, seconds: float = 1.0, pitch: float = 300) -> Path:
    path = folder / f"tone-{seconds:g}.wav"
    t = np.arange(round(seconds * 16000)) / 16000
    sf.write(path, 0.3 * np.sin(2 * np.pi * pitch * t), 16000)
    return path


def test_train_then_classify(
    clips_dir: Path, tmp_path: Path, store_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    train_kinds(clips_dir, store_args)
    out = capsys.readouterr().out
    assert "trained kinds v1 (linear) on 9 clips, classes noise, speech, tone" in out
    assert "features: weights random, hop 0.96 s, pad on, resampler reference" in out
    record = store_of(store_args).get("kinds")
    assert record.metrics is not None and record.metrics.folds == 3
    assert record.features == heads.FeatureSpec("random", 0.96, True, "reference")

    tone = tone_file(tmp_path)
    speech = heads_corpus.ALSA_DIR / "Side_Right.wav"
    argv = ["heads", "classify", "--name", "kinds", *store_args, *RANDOM]
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

    assert run("heads", "list", *store_args) == 0
    listed = capsys.readouterr().out
    assert listed.startswith("kinds\tv1\tlinear\t9 clips\tnoise,speech,tone\tweights random, hop 0.96 s")
    assert run("heads", "delete", "--name", "kinds", *store_args) == 0
    assert store_of(store_args).list() == []


def test_classify_json_lines_go_on_past_failures(
    clips_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], random_model: Runtime
) -> None:
    store = ["--data-dir", str(tmp_path / "data")]
    train_kinds(clips_dir, store)
    capsys.readouterr()
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF" + b"\0" * 60)
    chime = tone_file(tmp_path, seconds=0.5, pitch=880)  # shorter than one example: padded
    long = tone_file(tmp_path, seconds=2.5)
    files = [long, tmp_path / "missing.wav", garbage, chime, heads_corpus.ALSA_DIR / "Side_Right.wav"]
    argv = ["heads", "classify", "--name", "kinds", *store, *RANDOM, "--json", "--frames", "--top-k", "2"]
    assert run(*argv, *map(str, files)) == 2
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [line["file"] for line in lines] == list(map(str, files))  # every file, in order
    assert "No such audio file" in lines[1]["error"] and "cannot decode" in lines[2]["error"]
    assert captured.err.count("vggish: error: ") == 2 and "vggish: 2 of 5 files failed" in captured.err
    head = HeadStore(tmp_path / "data").load("kinds")[1]
    for index in (0, 3, 4):
        line = lines[index]
        result = random_model.embed_file(str(files[index]), pad=True, postprocess=False)
        expected = head.scores(result.embeddings.mean(axis=0, dtype=np.float64).astype(np.float32)[None])[0]
        assert [s["label"] for s in line["labels"]] == [head.classes[c] for c in np.argsort(-expected)[:2]]
        np.testing.assert_allclose(
            [s["score"] for s in line["labels"]], np.sort(expected)[::-1][:2], atol=1e-5
        )
        assert len(line["frames"]) == result.embeddings.shape[0]
        assert line["duration"] == pytest.approx(result.duration)
    assert len(lines[0]["frames"]) == 2 and lines[0]["frames"][1]["start"] == pytest.approx(0.96)
    assert lines[3]["frames"] == [{"start": 0.0, "end": 0.975, "labels": lines[3]["frames"][0]["labels"]}]


def test_without_padding_a_short_clip_fails_alone(
    clips_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--data-dir", str(tmp_path / "data")]
    train_kinds(clips_dir, store, "--no-pad")
    assert "pad off" in capsys.readouterr().out
    chime, long = tone_file(tmp_path, seconds=0.5), tone_file(tmp_path, seconds=1.5)
    argv = ["heads", "classify", "--name", "kinds", *store, *RANDOM, "--no-pad", "--frames"]
    assert run(*argv, str(chime), str(long)) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{long}: tone ") and "\n  0.00-0.97 s: " in captured.out
    assert f"vggish: error: {chime}: 0.500 s is shorter than one example" in captured.err
    assert "drop --no-pad" in captured.err


def test_other_weights_are_refused_unless_forced(
    clips_dir: Path, tmp_path: Path, other_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--data-dir", str(tmp_path / "data")]
    train_kinds(clips_dir, store)
    tone = str(tone_file(tmp_path))
    classify = ["heads", "classify", "--name", "kinds", *store, tone]
    capsys.readouterr()
    sha = W.sha256_file(other_weights)
    assert run(*classify, "--weights", str(other_weights)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("vggish: error: head 'kinds' was trained on embeddings of weights random")
    assert f"but these are of weights {sha[:12]}" in err and "--force" in err and "\n" not in err
    assert run(*classify, "--weights", str(other_weights), "--force") == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{tone}: tone ") and "vggish: warning: " in captured.err
    assert "(forced)" in captured.err
    assert run(*classify, *RANDOM, "--hop", "0.48", "--no-pad") == 0  # hop and pad: never refused
    assert capsys.readouterr().err == ""


def test_train_records_hop_resampler_and_pad(
    clips_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--data-dir", str(tmp_path / "data")]
    train_kinds(clips_dir, store, "--hop", "0.48", "--resampler", "fast", "--no-pad")
    assert "features: weights random, hop 0.48 s, pad off, resampler fast" in capsys.readouterr().out
    assert HeadStore(tmp_path / "data").get("kinds").features == heads.FeatureSpec(
        "random", 0.48, False, "fast"
    )
    tone = str(tone_file(tmp_path, seconds=2.0))
    classify = ["heads", "classify", "--name", "kinds", *store, *RANDOM, tone, "--json", "--frames"]
    assert run(*classify, "--hop", "0.48", "--resampler", "fast", "--no-pad") == 0
    line = json.loads(capsys.readouterr().out)
    assert [f["start"] for f in line["frames"]] == [0.0, 0.48, 0.96]
    assert run(*classify) == 0  # the defaults: hop 0.96, pad on, resampler reference
    captured = capsys.readouterr()
    assert [f["start"] for f in json.loads(captured.out)["frames"]] == [0.0, 0.96]
    assert "vggish: warning: head 'kinds' was trained on audio resampled by the 'fast'" in captured.err


def test_export_then_import(
    clips_dir: Path,
    tmp_path: Path,
    store_args: list[str],
    other_weights: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    train_kinds(clips_dir, store_args)
    capsys.readouterr()
    exported = tmp_path / "kinds.safetensors"
    assert run("heads", "export", "--name", "kinds", *store_args, "-o", str(exported)) == 0
    assert capsys.readouterr().out.startswith(f"wrote {exported}: head kinds v1 (linear, 3 classes;")
    data = exported.read_bytes()
    assert data == store_of(store_args).export("kinds")  # the stored file itself
    imported = ["heads", "import", "--name", "copy", *store_args, str(exported)]
    assert run(*imported, "--weights", str(other_weights)) == 1  # trained on other weights
    assert "was trained on embeddings of weights random" in capsys.readouterr().err
    assert run(*imported, *RANDOM) == 0
    assert "imported head copy v1" in capsys.readouterr().out
    assert run(*imported, *RANDOM) == 1
    assert "exists; replace it with --replace" in capsys.readouterr().err
    assert run(*imported, "--weights", str(other_weights), "--force", "--replace") == 0
    assert "(forced)" in capsys.readouterr().err
    store = store_of(store_args)
    assert store.get("copy").version == 2
    again, original = load_safetensors(store.export("copy")), load_safetensors(data)
    assert again.keys() == original.keys()
    for key, value in original.items():
        np.testing.assert_array_equal(again[key], value)  # bit for bit


def test_the_environment_names_the_database(
    clips_dir: Path,
    tmp_path: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("VGGISH_DATABASE_URL", postgres_url)
    monkeypatch.chdir(tmp_path)
    assert run("heads", "train", "--name", "kinds", *RANDOM, str(clips_dir)) == 0
    assert [r.name for r in open_store(postgres_url).list()] == ["kinds"]
    assert not (tmp_path / "data").exists()
    capsys.readouterr()
    assert run("heads", "list", "--data-dir", str(tmp_path / "elsewhere")) == 0  # a flag beats it
    assert capsys.readouterr().err.startswith("no heads in ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["heads", "classify", "--name", "absent", "x.wav"], "no head named 'absent'"),
        (["heads", "train", "--name", "bad name", "."], "head name"),
        (["heads", "train", "--name", "ok", "/no/such/dir"], "no such directory"),
        (["heads", "delete", "--name", "absent"], "no head named 'absent'"),
        (["heads", "export", "--name", "absent", "-o", "x.safetensors"], "no head named 'absent'"),
        (["heads", "import", "--name", "x", "/no/such.safetensors"], "No such file"),
        (["heads", "classify", "--name", "x", "a.wav", "--top-k", "0"], "--top-k must be at least 1"),
    ],
)
def test_errors_are_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run(*argv, "--data-dir", str(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("vggish: error:") and message in err and "\n" not in err


def test_a_malformed_head_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"definitely not safetensors")
    assert run("heads", "import", "--name", "x", "--data-dir", str(tmp_path), *RANDOM, str(bad)) == 1
    assert "not a safetensors file" in capsys.readouterr().err
    assert HeadStore(tmp_path).list() == []


def test_one_class_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "only").mkdir()
    sf.write(tmp_path / "only" / "a.wav", np.zeros(16000), 16000)
    sf.write(tmp_path / "only" / "b.wav", np.ones(16000) * 0.1, 16000)
    argv = ["heads", "train", "--name", "one", *RANDOM, "--data-dir", str(tmp_path / "d")]
    assert run(*argv, str(tmp_path)) == 1
    assert "at least 2 classes" in capsys.readouterr().err


def test_a_file_that_fails_stops_training_naming_it(
    clips_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clips = tmp_path / "clips"
    for label in ("tone", "noise"):
        (clips / label).mkdir(parents=True)
        for f in sorted((clips_dir / label).iterdir()):
            (clips / label / f.name).write_bytes(f.read_bytes())
    (clips / "tone" / "broken.wav").write_bytes(b"RIFF" + b"\0" * 60)
    argv = ["heads", "train", "--name", "k", *RANDOM, "--data-dir", str(tmp_path / "d"), str(clips)]
    assert run(*argv) == 1
    err = capsys.readouterr().err
    assert "1 of 7 clips failed: " in err and "broken.wav" in err
    assert not (tmp_path / "d" / "heads.sqlite3").exists()
