"""``vggish index``: add folders and ``vggish extract`` outputs, search by file or by item, list and
delete, on a real SQLite store; scores checked against cosines of the library's own embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.app.service_helpers import clip
from tests.test_search_store import extract_folder
from vggish.cli import main

pytestmark = pytest.mark.slow  # each command loads the model
MODEL = ["--weights", "random", "--backend", "torch"]


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    for rel, seconds, seed in (("dogs/bark.wav", 2.5, 1), ("dogs/howl.wav", 4.0, 2), ("bell.wav", 1.5, 3)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(clip(seconds, seed=seed))
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_add_search_list_delete(
    clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], random_model
) -> None:  # type: ignore[no-untyped-def]
    store = ["--data-dir", str(tmp_path / "data")]
    status, out, _ = run(capsys, "index", "add", "sounds", str(clips), *store, *MODEL)
    assert status == 0 and "added 3 items to sounds: 3 items" in out
    embedded = {
        rel: random_model.embed_file(str(clips / rel), pad=True, postprocess=False)
        for rel in ("dogs/bark.wav", "dogs/howl.wav", "bell.wav")
    }
    query = clips / "dogs/howl.wav"
    status, out, _ = run(
        capsys, "index", "search", "sounds", str(query), "--json", "--k", "3", *store, *MODEL
    )
    results = json.loads(out)["results"]
    q = embedded["dogs/howl.wav"].embeddings
    want = sorted(embedded, key=lambda r: -float(unit(embedded[r].embeddings.mean(0)) @ unit(q.mean(0))))
    assert [r["id"] for r in results] == want
    np.testing.assert_allclose(
        [r["score"] for r in results],
        [float(unit(embedded[r].embeddings.mean(0)) @ unit(q.mean(0))) for r in want],
        atol=1e-5,
    )
    status, out, _ = run(
        capsys, "index", "search", "sounds", "dogs/bark.wav", "--id", "--level", "segment", *store
    )
    lines = out.strip().split("\n")
    assert status == 0 and len(lines) == 2 and "dogs/bark.wav" not in out and " ~ query " in lines[0]
    status, out, _ = run(capsys, "index", "list", *store)
    assert out.startswith("sounds\t3 items\t") and "weights random, hop 0.96 s, pad on" in out
    assert run(capsys, "index", "delete", "sounds", "--item", "bell.wav", *store)[0] == 0
    status, out, _ = run(capsys, "index", "list", *store)
    assert "\t2 items\t" in out
    assert run(capsys, "index", "delete", "sounds", *store)[:2] == (0, "deleted sounds\n")
    status, _, err = run(capsys, "index", "delete", "sounds", *store)
    assert status == 1 and "no collection named 'sounds'" in err


def test_other_settings_are_refused_unless_forced(
    clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--data-dir", str(tmp_path / "data")]
    assert run(capsys, "index", "add", "s", str(clips / "bell.wav"), *store, *MODEL)[0] == 0
    status, _, err = run(capsys, "index", "add", "s", str(clips / "dogs"), "--hop", "0.48", *store, *MODEL)
    assert status == 1 and "hop differs" in err and "--force" in err
    status, out, err = run(
        capsys, "index", "add", "s", str(clips / "dogs"), "--hop", "0.48", "--force", *store, *MODEL
    )
    assert status == 0 and "(forced)" in err and "3 items" in out


def test_failed_files_are_reported_and_the_others_added(
    clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.wav").write_bytes(clip(2.0))
    (folder / "broken.wav").write_bytes(b"RIFF not really audio")
    store = ["--data-dir", str(tmp_path / "data")]
    status, out, err = run(capsys, "index", "add", "m", str(folder), *store, *MODEL)
    assert status == 2 and "broken.wav" in err and "added 1 items" in out


@pytest.mark.parametrize("fmt", ["parquet", "npz"])
def test_add_from_an_extract_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    made = extract_folder(tmp_path / "features", fmt)
    store = ["--data-dir", str(tmp_path / "data")]
    status, out, _ = run(capsys, "index", "add", "ext", "--from", str(tmp_path / "features"), *store)
    assert status == 0 and "added 3 items" in out and "weights random, hop 0.96 s, pad off" in out
    first = sorted(made)[0]
    status, out, _ = run(capsys, "index", "search", "ext", first, "--id", "--json", "--k", "2", *store)
    results = json.loads(out)["results"]
    x = made[first][0]
    want = sorted(
        (i for i in made if i != first), key=lambda i: -float(unit(made[i][0].mean(0)) @ unit(x.mean(0)))
    )
    assert [r["id"] for r in results] == want
    status, _, err = run(
        capsys, "index", "add", "ext", str(tmp_path), "--from", str(tmp_path / "features"), *store
    )
    assert status == 1 and "not both" in err
