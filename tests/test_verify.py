"""Google's smoke test: the check logic with figures in and out of tolerance, real models, the CLI."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import vggish
from vggish import weights as W
from vggish.cli import main
from vggish.network.postprocess import postprocess
from vggish.weights import verify as V

ALL_CHECKS = (V.EXAMPLES, V.EMBEDDING_MEAN, V.EMBEDDING_STD, V.POSTPROCESSED_MEAN, V.POSTPROCESSED_STD)


def figures(**changes: float | int | None) -> V.SmokeFigures:
    return dataclasses.replace(V.EXPECTED, **changes)  # type: ignore[arg-type]


def smoke_embeddings(model: vggish.Runtime) -> np.ndarray:
    """The model's raw embeddings of the smoke-test tone, float64 (3, 128)."""
    examples = vggish.waveform_to_examples(V.smoke_waveform(), 16000)
    with torch.inference_mode():
        emb: np.ndarray = model(torch.from_numpy(examples)).numpy().astype(np.float64)
    return emb


def _fit_pca(embeddings: np.ndarray) -> tuple[float, float]:
    """A scale and shift for PCA = scale * (e - shift) whose 8-bit output has Google's figures."""
    best = (math.inf, 1.0, 0.0)
    for scale in np.geomspace(0.5, 50.0, 60):
        for shift in np.linspace(-0.3, 0.3, 61):
            q = postprocess(embeddings, scale * np.eye(128), np.full(128, shift)).astype(np.float64)
            error = abs(q.mean() / 126.0 - 1) + abs(q.std() / 89.3 - 1)
            best = min(best, (error, float(scale), float(shift)))
    assert best[0] < 0.04, best
    return best[1], best[2]


@pytest.fixture(scope="module")
def google_like(tmp_path_factory: pytest.TempPathFactory, random_model: vggish.Runtime) -> dict[str, Path]:
    """Weights tuned so the smoke tone gives Google's figures: fc2 rescaled, PCA = scaled identity."""
    emb = smoke_embeddings(random_model)
    a = V.EXPECTED_EMBEDDING_STD / emb.std()
    b = V.EXPECTED_EMBEDDING_MEAN - a * emb.mean()
    state = dict(W.random_weights().state_dict)
    state["fc2.weight"] = state["fc2.weight"] * a
    state["fc2.bias"] = state["fc2.bias"] * a + b
    scale, shift = _fit_pca(a * emb + b)
    pca = W.PCAParams(scale * np.eye(128), np.full(128, shift))
    folder = tmp_path_factory.mktemp("tuned")
    meta = {"source": "test: tuned to the smoke figures"}
    return {
        "pca": W.save_weights(folder / "with_pca.safetensors", state, pca, meta),
        "no_pca": W.save_weights(folder / "no_pca.safetensors", state, None, meta),
    }


# --- evaluate(): pure check logic --------------------------------------------------------------


def test_expected_figures_pass() -> None:
    checks = V.evaluate(V.EXPECTED)
    assert [c.name for c in checks] == list(ALL_CHECKS)
    assert all(c.passed is True for c in checks)


def test_tolerances_are_documented_values() -> None:
    tolerance = {c.name: c.tolerance for c in V.evaluate(V.EXPECTED)}
    assert tolerance[V.EXAMPLES] == 0
    assert tolerance[V.EMBEDDING_MEAN] == pytest.approx(0.00343)
    assert tolerance[V.EMBEDDING_STD] == pytest.approx(0.0343)
    assert tolerance[V.POSTPROCESSED_MEAN] == pytest.approx(12.6)
    assert tolerance[V.POSTPROCESSED_STD] == pytest.approx(8.93)


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ({"embedding_mean": 0.000657 + 0.0034}, None),
        ({"embedding_mean": 0.000657 - 0.0034}, None),
        ({"embedding_mean": 0.0}, None),  # a relative bound (6.6e-5) would fail this; ours does not
        ({"embedding_mean": 0.000657 + 0.0035}, V.EMBEDDING_MEAN),
        ({"embedding_mean": -0.003}, V.EMBEDDING_MEAN),
        ({"embedding_mean": 0.131}, V.EMBEDDING_MEAN),  # what the stale final ReLU gives
        ({"embedding_std": 0.343 * 1.09}, None),
        ({"embedding_std": 0.343 * 0.91}, None),
        ({"embedding_std": 0.343 * 1.11}, V.EMBEDDING_STD),
        ({"embedding_std": 0.343 * 0.89}, V.EMBEDDING_STD),
        ({"postprocessed_mean": 126.0 * 1.09}, None),
        ({"postprocessed_mean": 126.0 * 0.89}, V.POSTPROCESSED_MEAN),
        ({"postprocessed_std": 89.3 * 0.91}, None),
        ({"postprocessed_std": 89.3 * 1.11}, V.POSTPROCESSED_STD),
        ({"num_examples": 2}, V.EXAMPLES),
        ({"embedding_std": math.nan}, V.EMBEDDING_STD),
        ({"embedding_mean": math.inf}, V.EMBEDDING_MEAN),
    ],
)
def test_each_check_in_and_out_of_tolerance(change: dict[str, float], failing: str | None) -> None:
    result = V.SmokeResult(figures(**change), V.EXPECTED, V.evaluate(figures(**change)))
    assert result.passed == {name: name != failing for name in ALL_CHECKS}
    assert result.ok is (failing is None)
    assert (failing or "") in result.failures() and ("FAIL" in result.format()) is (failing is not None)


@given(st.floats(-0.999, 0.999), st.floats(-0.999, 0.999), st.floats(-0.999, 0.999))
def test_any_deviation_inside_the_bounds_passes(d_std: float, d_post: float, d_mean: float) -> None:
    measured = figures(
        embedding_mean=V.EXPECTED_EMBEDDING_MEAN + d_mean * V.EMBEDDING_MEAN_TOLERANCE,
        embedding_std=V.EXPECTED_EMBEDDING_STD * (1 + 0.1 * d_std),
        postprocessed_mean=V.EXPECTED_POSTPROCESSED_MEAN * (1 + 0.1 * d_post),
        postprocessed_std=V.EXPECTED_POSTPROCESSED_STD * (1 - 0.1 * d_post),
    )
    assert all(c.passed for c in V.evaluate(measured))


def test_missing_postprocessed_figures_are_skipped_not_failed() -> None:
    measured = figures(postprocessed_mean=None, postprocessed_std=None)
    result = V.SmokeResult(measured, V.EXPECTED, V.evaluate(measured))
    assert result.passed[V.POSTPROCESSED_MEAN] is None and result.passed[V.POSTPROCESSED_STD] is None
    assert result.ok and result.failures() == ""
    assert "skipped" in result.format() and "no PCA parameters" in result.format()


# --- smoke_test() on real models ---------------------------------------------------------------


def test_smoke_waveform_is_the_reference_input(reference: dict[str, np.ndarray]) -> None:
    assert np.array_equal(V.smoke_waveform(), reference["smoke_x"])


def test_random_weights_fail_with_consistent_flags(random_model: vggish.Runtime) -> None:
    result = V.smoke_test(random_model)
    emb = smoke_embeddings(random_model)
    q = random_model.postprocess(emb).numpy().astype(np.float64)
    assert result.measured.num_examples == 3
    assert result.measured.embedding_mean == pytest.approx(emb.mean(), rel=1e-9)
    assert result.measured.embedding_std == pytest.approx(emb.std(), rel=1e-9)
    assert result.measured.postprocessed_mean == pytest.approx(q.mean())
    assert result.measured.postprocessed_std == pytest.approx(q.std())
    assert result.ok is False
    # Random He-initialised weights spread the embedding far wider than Google's 0.343.
    assert result.passed[V.EXAMPLES] is True and result.passed[V.EMBEDDING_STD] is False
    for check in result.checks:
        assert check.measured is not None
        assert check.passed is (abs(check.measured - check.expected) <= check.tolerance)
    assert "result: FAIL" in result.format() and V.EMBEDDING_STD in result.failures()


def test_weights_tuned_to_google_figures_pass(google_like: dict[str, Path]) -> None:
    model = vggish.load_model(google_like["pca"], backend="torch")
    result = V.smoke_test(model)
    assert result.ok, result.format()
    assert all(c.passed is True for c in result.checks)
    assert "result: PASS" in result.format()


def test_weights_without_pca_skip_postprocessed_checks(google_like: dict[str, Path]) -> None:
    model = vggish.load_model(google_like["no_pca"], backend="torch")
    assert not model.has_pca
    result = V.smoke_test(model)
    assert result.measured.postprocessed_mean is None
    assert result.passed[V.POSTPROCESSED_STD] is None and result.passed[V.EMBEDDING_STD] is True
    assert result.ok


# --- vggish verify -------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_random_weights_print_table_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["verify", "--weights", "random"]) == 1
    out = capsys.readouterr().out
    assert "Google's VGGish smoke test" in out and "result: FAIL" in out
    for name in ALL_CHECKS:
        assert name in out


def test_cli_google_like_weights_exit_0(
    capsys: pytest.CaptureFixture[str], google_like: dict[str, Path]
) -> None:
    assert main(["verify", "--weights", str(google_like["pca"])]) == 0
    out = capsys.readouterr().out
    assert "result: PASS" in out and str(google_like["pca"]) in out


@pytest.mark.slow
def test_cli_missing_weights_is_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.safetensors"
    proc = subprocess.run(
        [sys.executable, "-m", "vggish", "verify", "--weights", str(missing)], capture_output=True, text=True
    )
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vggish: error: ") and str(missing) in lines[0]
