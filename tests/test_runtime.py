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
from vggish import onnx_export, runtime
from vggish.cli import main as cli_main


@pytest.fixture
def torch_threads() -> Iterator[int]:
    """Restores PyTorch's process-wide thread count after the test."""
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def _model(**kwargs: object) -> vggish.VGGish:
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
    assert runtime._cgroup_cpu_limit(tmp_path) == expected


def test_quota_is_read_from_this_process_cgroup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "sys" / "kubepods" / "pod1"
    own.mkdir(parents=True)
    (own / "cpu.max").write_text("300000 100000\n")
    (tmp_path / "sys" / "cpu.max").write_text("max 100000\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/kubepods/pod1\n")
    monkeypatch.setattr(runtime, "_CGROUP_ROOT", tmp_path / "sys")
    monkeypatch.setattr(runtime, "_PROC_CGROUP", proc)
    assert runtime._cgroup_cpu_limit() == 3.0
    proc.write_text("0::/elsewhere\n")  # no cpu.max there: the namespace's root
    assert runtime._cgroup_cpu_limit() is None


def test_available_cpus_honours_affinity_and_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    affinity = len(runtime.os.sched_getaffinity(0))
    monkeypatch.setattr(runtime, "_cgroup_cpu_limit", lambda: None)
    assert runtime.available_cpus() == affinity
    monkeypatch.setattr(runtime, "_cgroup_cpu_limit", lambda: 0.5)
    assert runtime.available_cpus() == 1  # a fractional quota still gets one thread
    monkeypatch.setattr(runtime, "_cgroup_cpu_limit", lambda: 1000.0)
    assert runtime.available_cpus() == affinity


def test_thread_count_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(runtime.THREADS_ENV, raising=False)
    assert runtime.intra_op_threads() == runtime.available_cpus()
    monkeypatch.setenv(runtime.THREADS_ENV, "3")
    assert runtime.intra_op_threads() == 3
    assert runtime.intra_op_threads(5) == 5
    monkeypatch.setenv(runtime.THREADS_ENV, "many")
    with pytest.raises(ValueError, match="VGGISH_NUM_THREADS must be a positive integer"):
        runtime.intra_op_threads()
    for bad in (0, -1, True, 2.5, "x"):
        with pytest.raises(ValueError, match="positive integer"):
            runtime.validate_threads(bad)


def test_load_model_sets_torch_threads(monkeypatch: pytest.MonkeyPatch, torch_threads: int) -> None:
    monkeypatch.delenv(runtime.THREADS_ENV, raising=False)
    _model(backend="torch", threads=1)
    assert torch.get_num_threads() == 1
    monkeypatch.setenv(runtime.THREADS_ENV, "2")
    _model(backend="torch")
    assert torch.get_num_threads() == 2


def test_without_a_request_only_lowers_to_the_quota(
    monkeypatch: pytest.MonkeyPatch, torch_threads: int
) -> None:
    monkeypatch.delenv(runtime.THREADS_ENV, raising=False)
    monkeypatch.setattr(runtime, "available_cpus", lambda: 1)
    torch.set_num_threads(2)
    assert runtime.configure_torch_threads() == 1  # a quota of one CPU: torch's 2 threads lowered
    monkeypatch.setattr(runtime, "available_cpus", lambda: 64)
    assert runtime.configure_torch_threads() == 1  # never raised behind the application's back


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


@pytest.mark.parametrize(("precision", "bound"), [("fp16", 5e-3), ("bf16", 5e-2)])
def test_half_precisions_stay_near_fp32(
    random_model: vggish.VGGish, speech_examples: np.ndarray, precision: str, bound: float
) -> None:
    reference = random_model.infer(speech_examples)
    model = _model(backend="torch", precision=precision)
    assert model.precision == precision and model.pca_eigen_vectors.dtype == torch.float64
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


def test_default_batch_size_follows_the_device(random_model: vggish.VGGish) -> None:
    from vggish.model import default_batch_size

    assert random_model.default_batch_size == 32
    assert default_batch_size("cuda:0") == 256
    assert vggish.EmbedOptions().batch_size_for(random_model) == 32
    assert vggish.EmbedOptions(batch_size=7).batch_size_for(random_model) == 7


# --- backend "auto" --------------------------------------------------------------------------------


def test_auto_is_the_default_and_picks_onnx_on_the_cpu(
    onnx_cache: Path, monkeypatch: pytest.MonkeyPatch, random_model: vggish.VGGish, torch_threads: int
) -> None:
    monkeypatch.delenv("VGGISH_BACKEND")
    model = _model()
    assert model.backend == "onnx"
    x = np.random.default_rng(0).standard_normal((3, 96, 64)).astype(np.float32)
    expected = random_model(torch.from_numpy(x)).detach().numpy()
    assert np.abs(model.infer(x) - expected).max() <= 1e-4
    assert _model(precision="bf16").backend == "torch"  # ONNX runs fp32 only: auto falls back


def test_auto_falls_back_to_torch_when_onnx_is_missing_or_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(onnx_export, "available", lambda: False)
    assert _model(backend="auto").backend == "torch"

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("ONNX export failed: boom")

    monkeypatch.setattr(onnx_export, "available", lambda: True)
    monkeypatch.setattr(onnx_export, "onnx_runner", broken)
    with caplog.at_level(logging.WARNING, logger="vggish.weights"):
        assert _model(backend="auto").backend == "torch"
    assert "using PyTorch" in caplog.text and "boom" in caplog.text
    with pytest.raises(RuntimeError, match="boom"):
        _model(backend="onnx")  # asked for explicitly: the error is the user's to see


def test_backend_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VGGISH_BACKEND", "torch")
    assert _model().backend == "torch"
    monkeypatch.setenv("VGGISH_BACKEND", "tensorflow")
    with pytest.raises(ValueError, match="backend must be one of"):
        _model()


def test_onnx_session_gets_the_thread_count(onnx_cache: Path, torch_threads: int) -> None:
    model = _model(backend="onnx", threads=1)
    runner = model._onnx
    assert isinstance(runner, onnx_export.OnnxVGGish)
    assert runner.session.get_session_options().intra_op_num_threads == 1
