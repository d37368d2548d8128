"""Thread counts chosen from the CPUs this process may use, the backend choice (``auto``), and the
fp16/bf16 precisions (run on the CPU here; the same casts a GPU does)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import vggish
from vggish.cli import main as cli_main
from vggish.cli import runtime_args
from vggish.network import cpus, loader
from vggish.network import onnx as onnx_graph
from vggish.pipeline import driver as pipeline


@pytest.fixture
def torch_threads() -> Iterator[int]:
    """Restores PyTorch's process-wide thread count after the test."""
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def _model(**kwargs: object) -> vggish.Runtime:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return vggish.load_model("random", **kwargs)  # type: ignore[arg-type]


# --- CPUs and threads ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "200000 100000\n"}, 2.0),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3.0),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu.max": "garbage"}, None),
        ({}, None),
    ],
)
def test_cgroup_quota_is_read_from_v2_and_v1_files(
    tmp_path: Path, files: dict[str, str], expected: float | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpus._cgroup_cpu_limit(tmp_path) == expected


def test_quota_is_read_from_this_process_cgroup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "sys" / "kubepods" / "pod1"
    own.mkdir(parents=True)
    (own / "cpu.max").write_text("300000 100000\n")
    (tmp_path / "sys" / "cpu.max").write_text("max 100000\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/kubepods/pod1\n")
    monkeypatch.setattr(cpus, "_CGROUP_ROOT", tmp_path / "sys")
    monkeypatch.setattr(cpus, "_PROC_CGROUP", proc)
    assert cpus._cgroup_cpu_limit() == 3.0
    proc.write_text("0::/elsewhere\n")  # no cpu.max there: the namespace's root
    assert cpus._cgroup_cpu_limit() is None


def test_available_cpus_honours_affinity_and_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    affinity = len(cpus.os.sched_getaffinity(0))
    monkeypatch.setattr(cpus, "_cgroup_cpu_limit", lambda: None)
    assert cpus.available_cpus() == affinity
    monkeypatch.setattr(cpus, "_cgroup_cpu_limit", lambda: 0.5)
    assert cpus.available_cpus() == 1  # a fractional quota still gets one thread
    monkeypatch.setattr(cpus, "_cgroup_cpu_limit", lambda: 1000.0)
    assert cpus.available_cpus() == affinity


def test_thread_count_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VGGISH_NUM_THREADS", "3")  # the library reads no environment
    assert cpus.intra_op_threads() == cpus.available_cpus()
    assert cpus.intra_op_threads(5) == 5
    for bad in (0, -1, True, 2.5, "x"):
        with pytest.raises(ValueError, match="positive integer"):
            cpus.validate_threads(bad)


def _cli_runtime(*argv: str) -> dict[str, object]:
    p = runtime_args.argparse.ArgumentParser()
    runtime_args.add_runtime_args(p)
    return runtime_args.settings_of(p.parse_args(list(argv))).load_kwargs()


def test_cli_reads_runtime_defaults_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's flags default to the one settings model's VGGISH_* variables; flags win."""
    for name in ("VGGISH_NUM_THREADS", "VGGISH_BACKEND", "VGGISH_PRECISION", "VGGISH_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    expected = {"device": "cpu", "backend": "auto", "precision": "fp32", "threads": None}
    assert _cli_runtime() == expected
    monkeypatch.setenv("VGGISH_NUM_THREADS", "3")
    monkeypatch.setenv("VGGISH_BACKEND", "TORCH")
    expected = {**expected, "backend": "torch", "threads": 3}
    assert _cli_runtime() == expected
    assert _cli_runtime("--threads", "5", "--backend", "onnx")["threads"] == 5  # flags win
    monkeypatch.setenv("VGGISH_NUM_THREADS", "many")
    with pytest.raises(ValueError, match=r"^VGGISH_NUM_THREADS: .*integer.*; got 'many'$"):
        _cli_runtime()
    monkeypatch.setenv("VGGISH_NUM_THREADS", "1")
    monkeypatch.setenv("VGGISH_BACKEND", "tensorflow")
    with pytest.raises(ValueError, match=r"^VGGISH_BACKEND: .*'auto', 'torch' or 'onnx'; got 'tensorflow'$"):
        _cli_runtime()


@pytest.mark.slow
def test_load_model_sets_torch_threads(monkeypatch: pytest.MonkeyPatch, torch_threads: int) -> None:
    _model(backend="torch", threads=1)
    assert torch.get_num_threads() == 1
    monkeypatch.setenv("VGGISH_NUM_THREADS", "2")  # ignored by the library: no request, no raise
    _model(backend="torch")
    assert torch.get_num_threads() == 1


def test_without_a_request_only_lowers_to_the_quota(
    monkeypatch: pytest.MonkeyPatch, torch_threads: int
) -> None:
    monkeypatch.setattr(cpus, "available_cpus", lambda: 1)
    torch.set_num_threads(2)
    assert cpus.configure_torch_threads() == 1  # a quota of one CPU: torch's 2 threads lowered
    monkeypatch.setattr(cpus, "available_cpus", lambda: 64)
    assert cpus.configure_torch_threads() == 1  # never raised behind the application's back


def test_cli_rejects_bad_thread_and_batch_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")
    for flag in ("--threads", "--batch-size"):
        with pytest.raises(SystemExit) as exc:
            cli_main(["embed", str(wav), "-o", str(tmp_path / "a.npz"), flag, "0"])
        assert exc.value.code == 2
        assert "must be a positive integer" in capsys.readouterr().err


# --- precision ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def speech_examples(alsa_recordings: list[Path]) -> np.ndarray:
    return np.concatenate([vggish.wavfile_to_examples(p) for p in alsa_recordings[:3]])


@pytest.mark.slow
@pytest.mark.parametrize(("precision", "bound"), [("fp16", 5e-3), ("bf16", 5e-2)])
def test_half_precisions_stay_near_fp32(
    random_model: vggish.Runtime, speech_examples: np.ndarray, precision: str, bound: float
) -> None:
    reference = random_model.infer(speech_examples)
    model = _model(backend="torch", precision=precision)
    assert model.precision == precision and model.network.pca_eigen_vectors.dtype == torch.float64
    out = model.infer(speech_examples)
    assert out.dtype == np.float32 and out.shape == reference.shape
    deviation = np.abs(out - reference).max() / np.abs(reference).max()
    assert 0 < deviation <= bound  # not bit-identical (it is really half precision), yet close
    np.testing.assert_array_equal(model.infer(torch.from_numpy(speech_examples)), out)  # tensors too


def test_precision_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        _model(precision="fp8")
    with pytest.raises(ValueError, match="onnx backend runs in fp32"):
        _model(backend="onnx", precision="fp16")
    with pytest.raises(ValueError, match="onnx backend runs on the CPU"):
        _model(backend="onnx", device="cuda")


def test_unusable_devices_are_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="unknown device 'banana'"):
        _model(device="banana")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"sees no CUDA GPU.*use device='cpu'"):
            _model(device="cuda")


def test_default_batch_size_follows_the_device(random_model: vggish.Runtime) -> None:
    from vggish.network.runtime import default_batch_size

    assert random_model.default_batch_size == 32
    assert default_batch_size("cuda:0") == 256
    assert pipeline.batch_size(random_model, vggish.EmbedOptions()) == 32
    assert pipeline.batch_size(random_model, vggish.EmbedOptions(batch_size=7)) == 7


# --- backend "auto" --------------------------------------------------------------------------------


@pytest.mark.slow
def test_auto_is_the_default_and_picks_onnx_on_the_cpu(
    random_model: vggish.Runtime, torch_threads: int
) -> None:
    model = _model()
    assert model.backend == "onnx"
    x = np.random.default_rng(0).standard_normal((3, 96, 64)).astype(np.float32)
    expected = random_model(torch.from_numpy(x)).detach().numpy()
    assert np.abs(model.infer(x) - expected).max() <= 1e-5 * np.abs(expected).max()
    assert _model(precision="bf16").backend == "torch"  # ONNX is fp32: auto falls back


@pytest.mark.slow
def test_auto_falls_back_to_torch_when_onnx_is_missing_or_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(loader, "onnx_installed", lambda: False)
    assert _model(backend="auto").backend == "torch"

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("ONNX Runtime cannot load the graph: boom")

    monkeypatch.setattr(loader, "onnx_installed", lambda: True)
    monkeypatch.setattr(onnx_graph.OnnxVGGish, "from_network", broken)
    with caplog.at_level(logging.WARNING, logger="vggish.network.loader"):
        assert _model(backend="auto").backend == "torch"
    assert "using PyTorch" in caplog.text and "boom" in caplog.text
    with pytest.raises(RuntimeError, match="boom"):
        _model(backend="onnx")  # asked for explicitly: the error is the user's to see


def test_library_ignores_the_backend_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VGGISH_BACKEND", "onnx")  # the CLI's and the service's, not the library's
    monkeypatch.setattr(loader, "onnx_installed", lambda: False)
    assert _model().backend == "torch"  # auto, with ONNX Runtime "missing"


@pytest.mark.slow
def test_onnx_session_gets_the_thread_count(torch_threads: int) -> None:
    model = _model(backend="onnx", threads=1)
    runner = model._backend  # type: ignore[attr-defined]
    assert isinstance(runner, onnx_graph.OnnxVGGish)
    assert runner.session.get_session_options().intra_op_num_threads == 1
