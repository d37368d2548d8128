"""ONNX export: the graph ONNX Runtime runs equals the PyTorch network, at any batch size."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import vggish
from vggish import cli
from vggish.network import onnx as onnx_export
from vggish.network import plans
from vggish.network.onnx import OnnxVGGish

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(onnx_cache: Path, random_model) -> Path:  # type: ignore[no-untyped-def]
    """The graph of the random weights, as ``load_model(backend="onnx")`` exports it into the run's
    cache (``export_onnx`` via ``onnx_session``; other tests may have exported it already)."""
    network, info = random_model.network, random_model.weights_info
    session = onnx_export.onnx_session(network, "random", onnx_cache, metadata=info)
    path = onnx_export.graph_path(onnx_cache, "random", plans.ONNX_DEFAULT.tag)
    assert session.weights_info["plan"] == plans.ONNX_DEFAULT.tag and path.is_file()
    return path


@pytest.mark.parametrize("batch", [1, 5, 33])
def test_onnx_matches_torch(exported: Path, random_model, reference, batch: int) -> None:  # type: ignore[no-untyped-def]
    """Real log-mel examples (the shared reference's) and random ones, at several batch sizes."""
    real = np.concatenate([reference["noise_examples"], reference["smoke_examples"]]).astype(np.float32)
    rng = np.random.default_rng(batch)
    x = np.concatenate([real, rng.standard_normal((batch, 96, 64)).astype(np.float32)])[:batch]
    with torch.inference_mode():
        expected = random_model(torch.from_numpy(x)).numpy()
    got = OnnxVGGish(exported)(x)
    assert got.shape == (batch, 128) and got.dtype == np.float32
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_metadata_and_input_checks(exported: Path, random_model) -> None:  # type: ignore[no-untyped-def]
    runner = OnnxVGGish(exported)
    assert runner.weights_info["sha256"] == random_model.weights_info["sha256"] == "random"
    assert runner(np.zeros((0, 96, 64), np.float32)).shape == (0, 128)
    assert runner(np.zeros((2, 1, 96, 64), np.float32)).shape == (2, 128)
    with pytest.raises(ValueError, match=r"\(N, 96, 64\)"):
        runner(np.zeros((2, 64, 96), np.float32))


def test_not_a_vggish_graph(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not an onnx file")
    with pytest.raises(RuntimeError, match="cannot load"):
        OnnxVGGish(bogus)


def test_cli_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli.main(["export-onnx", "--weights", "random", "--output", str(out)]) == 0
    assert "max |onnx - torch|" in capsys.readouterr().out
    assert out.stat().st_size > 250 * 2**20  # the weights are inside
    assert [p.name for p in tmp_path.iterdir()] == ["demo.onnx"]  # no temporary file left


def test_cli_export_to_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        status = cli.main(["export-onnx", "--weights", "random", "--output", str(tmp_path / "no" / "x.onnx")])
    assert status == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def _load(**kwargs):  # type: ignore[no-untyped-def]
    """Random weights; ONNX graphs go to the cache of the ``onnx_cache`` fixture (when active)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return vggish.load_model("random", cache_dir=os.environ.get("VGGISH_CACHE_DIR"), **kwargs)


def test_onnx_backend_embeds_like_torch(onnx_cache: Path, random_model, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """load_model(backend="onnx") exports once into the cache, and embed() agrees with PyTorch."""
    # The run's cache: another test (or test process) may have exported this graph already.
    graph = onnx_export.graph_path(onnx_cache, "random", plans.ONNX_DEFAULT.tag)
    model = _load(backend="onnx")
    assert model.backend == "onnx" and random_model.backend == "torch"
    assert model._backend.session.weights_info["plan"] == plans.ONNX_DEFAULT.tag  # type: ignore[attr-defined]
    exported = graph.stat()  # it is there
    rng = np.random.default_rng(7)
    wave = rng.standard_normal((44100 * 4, 2)) * 0.1
    ours, theirs = model.embed(wave, 44100), random_model.embed(wave, 44100)
    scale = max(1.0, float(np.abs(theirs.embeddings).max()))
    assert np.abs(ours.embeddings - theirs.embeddings).max() <= 1e-4 * scale
    np.testing.assert_array_equal(ours.timestamps, theirs.timestamps)
    # A second load reuses the cached graph: exporting again would fail here.
    monkeypatch.setattr(onnx_export, "export_onnx", lambda *a, **k: pytest.fail("exported twice"))
    assert _load(backend="onnx").backend == "onnx"
    assert (graph.stat().st_ino, graph.stat().st_mtime_ns) == (exported.st_ino, exported.st_mtime_ns)


def test_backend_choice(onnx_cache: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert _load(backend="auto").backend == "onnx"  # installed here, CPU
    monkeypatch.setattr(onnx_export, "available", lambda: False)
    assert _load(backend="auto").backend == "torch"
    with pytest.raises(ValueError, match="backend must be one of"):
        _load(backend="tensorrt")
    with pytest.raises(ValueError, match="runs on the CPU"):
        _load(backend="onnx", device="cuda")


def test_cli_embed_with_onnx_backend(onnx_cache: Path, tmp_path: Path) -> None:
    wav = tmp_path / "tone.wav"
    t = np.arange(16000 * 3) / 16000
    sf.write(wav, (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16), 16000)
    out = tmp_path / "tone.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        argv = ["embed", str(wav), "-o", str(out), "--weights", "random", "--backend", "onnx"]
        assert cli.main(argv) == 0
    expected = _load(backend="torch").embed_file(wav)
    with np.load(out) as got:
        assert np.abs(got["embedding"] - expected.embeddings).max() <= 1e-4 * max(
            1.0, float(np.abs(expected.embeddings).max())
        )


CONCURRENT_LOAD = """
import logging, sys
import numpy as np
from vggish.network import plans
from vggish.network.onnx import onnx_session
from vggish.weights import random_weights
from vggish.network.model import VGGish

logging.basicConfig(level=logging.WARNING, format="%(message)s")
network = VGGish()
network.load_state_dict(random_weights().state_dict)
sys.stdout.write("start\\n"); sys.stdout.flush()
sys.stdin.readline()  # both processes are ready: go
runner = onnx_session(network, "random", sys.argv[1], plan=plans.DIRECT)
print(float(runner(np.ones((2, 96, 64), np.float32)).sum()))
"""


def test_processes_starting_together_export_once(tmp_path: Path) -> None:
    """Service workers start together: the second waits for the first's export and loads it."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_LOAD, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for p in procs:  # released together, once both have imported and built the network
        assert p.stdout is not None and p.stdout.readline() == "start\n"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    exports = sum(err.count("exporting VGGish to ONNX") for _, err in results)
    assert exports == 1, results
    assert results[0][0] == results[1][0]  # the same graph's numbers
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 1


def test_a_damaged_cached_graph_is_exported_again(
    tmp_path: Path, random_model, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    graph = onnx_export.graph_path(tmp_path, "random", plans.DIRECT.tag)
    graph.parent.mkdir()
    graph.write_bytes(b"half a graph")  # not from this library's writer, which renames whole files
    with caplog.at_level("WARNING", logger="vggish.network.onnx"):
        runner = onnx_export.onnx_session(random_model.network, "random", tmp_path, plan=plans.DIRECT)
    assert "ignoring a damaged cached graph" in caplog.text and "exporting VGGish" in caplog.text
    assert runner.weights_info["plan"] == plans.DIRECT.tag and graph.stat().st_size > 250 * 2**20
    x = np.random.default_rng(3).standard_normal((2, 96, 64)).astype(np.float32)
    with torch.inference_mode():
        expected = random_model(torch.from_numpy(x)).numpy()
    assert np.abs(runner(x) - expected).max() <= 1e-4 * max(1.0, float(np.abs(expected).max()))
