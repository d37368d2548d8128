"""Per-machine tuning: stored once per key, reused, redone on request, ignored when damaged, off
on request, and never choosing an inaccurate algorithm. Timings are real but tiny (a batch of 2,
one round), so what is asserted is the bookkeeping and the rules, never a speed."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import vggish
from vggish import cpus, plans, tuning
from vggish.cli import main
from vggish.version import __version__


@pytest.fixture
def tiny_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seconds instead of tens: 2 examples per layer timing, one round, batch sizes 2 and 4."""
    monkeypatch.setattr(tuning, "TUNING_BATCH", 2)
    monkeypatch.setattr(tuning, "ROUNDS", 1)
    monkeypatch.setattr(tuning, "BATCH_SIZES", (2, 4))
    monkeypatch.setattr(tuning, "BATCH_EXAMPLES", 4)


@pytest.fixture
def measurements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each call of tuning.measure (by backend), letting it run."""
    calls: list[str] = []
    real: Callable[..., tuning.Tuning] = tuning.measure

    def counted(backend: str, *args: Any, **kwargs: Any) -> tuning.Tuning:
        calls.append(backend)
        return real(backend, *args, **kwargs)

    monkeypatch.setattr(tuning, "measure", counted)
    return calls


def load(cache: Path, tune: object, **kwargs: Any) -> vggish.Runtime:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights
        return vggish.load_model("random", backend="torch", cache_dir=cache, tune=tune, threads=1, **kwargs)  # type: ignore[arg-type]


def stored(cache: Path) -> list[Path]:
    return sorted((cache / tuning.SUBDIR).glob("*.json"))


@pytest.mark.slow
@pytest.mark.usefixtures("tiny_budget")
def test_auto_measures_once_stores_by_key_and_reuses(tmp_path: Path, measurements: list[str]) -> None:
    first = load(tmp_path, "auto")
    assert measurements == ["torch"] and first.tuning is not None and first.tuning.source == "measured"
    [path] = stored(tmp_path)
    assert path.name.startswith("torch-fp32-1t-")
    key = json.loads(path.read_text())["key"]
    assert key == {
        "backend": "torch",
        "precision": "fp32",
        "threads": 1,
        "cpu": cpus.cpu_identity(),
        "vggish": __version__,
        "torch": torch.__version__,
        "onnxruntime": tuning._ort_version(),
        "revision": tuning.REVISION,
    }
    # What was measured is what runs: the backend's plan and the model's default batch size.
    assert first._torch.plan == first.tuning.plan
    assert first.default_batch_size == first.tuning.batch_size in tuning.BATCH_SIZES
    measured_layers = {t.layer for t in first.tuning.timings}
    assert measured_layers == {*plans.CONV_NAMES, tuning.FC_ROW}

    again = load(tmp_path, "auto")
    assert measurements == ["torch"]  # not measured again
    assert again.tuning is not None and again.tuning.source == "stored"
    assert (again.tuning.plan, again.tuning.batch_size) == (first.tuning.plan, first.tuning.batch_size)
    assert again._torch.plan == first.tuning.plan


@pytest.mark.slow
@pytest.mark.usefixtures("tiny_budget")
def test_another_key_or_tune_true_measures_again(
    tmp_path: Path, measurements: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    load(tmp_path, "auto")
    load(tmp_path, True)
    assert measurements == ["torch", "torch"] and len(stored(tmp_path)) == 1  # rewritten in place
    load(tmp_path, "auto", precision="bf16")
    assert len(measurements) == 3 and any(p.name.startswith("torch-bf16-1t-") for p in stored(tmp_path))
    monkeypatch.setattr(cpus, "cpu_identity", lambda: "Another CPU (x86_64, 6/85/7, flags 000000000000)")
    load(tmp_path, "auto")
    assert len(measurements) == 4 and len(stored(tmp_path)) == 3  # another CPU: its own file
    monkeypatch.setattr(tuning, "__version__", "0.0.0-other")
    load(tmp_path, "auto")
    assert len(measurements) == 5 and len(stored(tmp_path)) == 4  # another version of vggish too


@pytest.mark.slow
@pytest.mark.usefixtures("tiny_budget")
def test_a_damaged_file_is_ignored_with_a_warning_and_rewritten(
    tmp_path: Path, measurements: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    load(tmp_path, "auto")
    [path] = stored(tmp_path)
    for damage in (
        "{not json",
        json.dumps({"backend": "torch"}),
        json.dumps({**json.loads(path.read_text()), "plan": {"conv1": "fft"}}),
    ):
        path.write_text(damage)
        with caplog.at_level(logging.WARNING, logger="vggish.tuning"):
            model = load(tmp_path, "auto")
        assert "ignoring a damaged tuning file" in caplog.text and str(path) in caplog.text
        assert model.tuning is not None and model.tuning.source == "measured"
        assert tuning.Tuning.from_json(path.read_text()).plan == model.tuning.plan  # rewritten whole
        caplog.clear()
    assert len(measurements) == 4


@pytest.mark.slow
@pytest.mark.usefixtures("tiny_budget")
def test_a_cache_that_cannot_be_written_measures_with_a_warning(
    tmp_path: Path, measurements: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="vggish.tuning"):
        model = load(blocked, "auto")
    assert measurements == ["torch"] and model.tuning is not None and model.tuning.source == "measured"
    assert "cannot keep a tuning" in caplog.text and "VGGISH_TUNE=off" in caplog.text
    assert model._torch.plan == model.tuning.plan  # used for this process all the same


@pytest.mark.slow
def test_tune_false_takes_the_defaults_without_measuring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tune=False must not measure")

    monkeypatch.setattr(tuning, "measure", refuse)
    model = load(tmp_path, False)
    assert model.tuning is not None and model.tuning.source == "default"
    assert model._torch.plan == plans.TORCH_DEFAULT and model.default_batch_size == tuning.DEFAULT_BATCH_SIZE
    assert not (tmp_path / tuning.SUBDIR).exists()
    bf16 = load(tmp_path, False, precision="bf16")
    assert bf16.tuning is not None and bf16.tuning.plan == tuning.default_plan("torch", "bf16")
    with pytest.raises(ValueError, match="tune must be 'auto', True or False"):
        load(tmp_path, "sometimes")


@pytest.mark.slow
@pytest.mark.usefixtures("tiny_budget")
def test_a_candidate_failing_the_accuracy_bound_is_never_chosen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # F(4x4) is the default from conv2 on and the fastest there on most CPUs; make its kernels
    # 1 % off, as a wrong transform would be: tuning must measure the error and drop it.
    real = plans.transform_kernel

    def off_by_a_percent(weight: torch.Tensor, algo: plans.ConvAlgorithm) -> torch.Tensor:
        kernels = real(weight, algo)
        return kernels * 1.01 if algo == "winograd4" else kernels

    monkeypatch.setattr(plans, "transform_kernel", off_by_a_percent)
    model = load(tmp_path, True)
    assert model.tuning is not None and "winograd4" not in model.tuning.plan.conv
    inaccurate = [t for t in model.tuning.timings if t.algorithm == "winograd4"]
    assert len(inaccurate) == len(plans.CONV_NAMES) and all(
        t.ms is None and t.error is not None for t in inaccurate
    )
    assert all(t.error > tuning.ACCURACY_BOUND for t in inaccurate if t.error is not None)
    assert "failed accuracy" in model.tuning.table()
    accurate = [t for t in model.tuning.timings if t.algorithm == "winograd2" and t.error is not None]
    assert accurate and all(t.error <= tuning.ACCURACY_BOUND for t in accurate)  # the check measures


def test_choose_needs_the_margin_and_skips_failed_candidates() -> None:
    default = plans.TORCH_DEFAULT
    timings = (
        tuning.Timing("conv2", "winograd4", 10.0),
        tuning.Timing("conv2", "direct", 9.6),  # 4 % faster: under the margin, the default stays
        tuning.Timing("conv3_1", "winograd4", 10.0),
        tuning.Timing("conv3_1", "winograd2", 9.0),  # 10 % faster: chosen
        tuning.Timing("conv4_1", "winograd4", 10.0),
        tuning.Timing("conv4_1", "direct", None, error=1.0),  # failed accuracy: never chosen
    )
    plan = tuning.choose(default, timings)
    assert plan == default.replace("conv3_1", "winograd2")
    assert tuning.choose_batch(((16, 100.0), (32, 103.0), (64, 110.0))) == 64
    assert tuning.choose_batch(((16, 100.0), (32, 103.0), (64, 106.0))) == 32


@pytest.mark.slow
@pytest.mark.usefixtures("tiny_budget")
def test_vggish_tune_prints_the_table_and_where_it_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VGGISH_CACHE_DIR", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        status = main(["tune", "--weights", "random", "--backend", "torch", "--threads", "1"])
    out = capsys.readouterr().out
    assert status == 0
    [path] = stored(tmp_path)
    assert f"stored in {path}" in out
    for layer in (*plans.CONV_NAMES, tuning.FC_ROW):
        assert f"| {layer} |" in out
    record = tuning.Tuning.from_json(path.read_text())
    assert f"chosen: torch: {record.plan}; batch {record.batch_size} (measured" in out


def test_vggish_tune_help_teaches_and_gpus_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["tune", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for words in ("--backend", "--precision", "--threads", "VGGISH_TUNE=off", "Winograd", "cache"):
        assert words in text
    assert main(["tune", "--weights", "random", "--device", "cuda"]) == 1
    assert "tuning is for the CPU" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.usefixtures("tiny_budget")
def test_the_onnx_backend_runs_the_graph_of_its_tuned_plan(tmp_path: Path, measurements: list[str]) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = vggish.load_model("random", backend="onnx", cache_dir=tmp_path, tune="auto", threads=1)
    assert measurements == ["onnx"] and model.tuning is not None and model.tuning.backend == "onnx"
    [path] = stored(tmp_path)
    assert path.name.startswith("onnx-fp32-1t-")
    assert {t.layer for t in model.tuning.timings} == set(plans.CONV_NAMES[1:])  # conv1 is always a Conv
    assert all(t.error is not None and t.error <= tuning.ACCURACY_BOUND for t in model.tuning.timings)
    info = model._backend.session.weights_info  # type: ignore[attr-defined]
    assert info["plan"] == model.tuning.plan.tag  # the graph loaded is the tuned plan's
    assert model.default_batch_size == model.tuning.batch_size
    x = np.random.default_rng(0).standard_normal((3, 96, 64)).astype(np.float32)
    expected = model(torch.from_numpy(x)).detach().numpy()
    assert np.abs(model.infer(x) - expected).max() <= 1e-4 * np.abs(expected).max()  # fp32 numbers
