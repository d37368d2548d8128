"""Google's VGGish smoke test (docs/vggish.md §6): do these weights give the official figures?

A 1 kHz sine, 3 s at 16 kHz. Tolerances: 10% relative, but the raw mean (a near-cancellation) is
judged absolutely at 1% of the expected std: wider than float32 differences, narrower than the
stale final ReLU's mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import astuple, dataclass

import numpy as np
import torch

from vggish import params
from vggish.network.runtime import Runtime
from vggish.pipeline.source import waveform_to_examples

SMOKE_FREQUENCY_HZ = 1000.0  # the test tone
SMOKE_SECONDS = 3.0  # 48000 samples at 16 kHz -> 3 examples
RELATIVE_TOLERANCE = 0.10  # on the standard deviations and the postprocessed mean
EMBEDDING_MEAN_TOLERANCE_OF_STD = 0.01  # the raw mean's absolute tolerance, as a fraction of its std

EXAMPLES = "examples"
EMBEDDING_MEAN = "embedding mean"
EMBEDDING_STD = "embedding std"
POSTPROCESSED_MEAN = "postprocessed mean"
POSTPROCESSED_STD = "postprocessed std"


@dataclass(frozen=True)
class SmokeFigures:
    """The smoke test's statistics: examples made from the tone; mean and (population) std of all
    raw embedding values, and of the uint8 features (None without PCA)."""

    num_examples: int
    embedding_mean: float
    embedding_std: float
    postprocessed_mean: float | None
    postprocessed_std: float | None


# Google's figures (docs/vggish.md §6).
EXPECTED_NUM_EXAMPLES = 3
EXPECTED_EMBEDDING_MEAN = 0.000657
EXPECTED_EMBEDDING_STD = 0.343
EXPECTED_POSTPROCESSED_MEAN = 126.0
EXPECTED_POSTPROCESSED_STD = 89.3
EXPECTED = SmokeFigures(
    EXPECTED_NUM_EXAMPLES, EXPECTED_EMBEDDING_MEAN, EXPECTED_EMBEDDING_STD, EXPECTED_POSTPROCESSED_MEAN,
    EXPECTED_POSTPROCESSED_STD,
)  # fmt: skip
EMBEDDING_MEAN_TOLERANCE = EMBEDDING_MEAN_TOLERANCE_OF_STD * EXPECTED_EMBEDDING_STD  # 0.00343


@dataclass(frozen=True)
class Check:
    """One comparison: passed is None when the check was skipped (no PCA parameters)."""

    name: str
    measured: float | None
    expected: float
    tolerance: float  # largest allowed |measured - expected|
    passed: bool | None


def _check(name: str, measured: float | None, expected: float, tolerance: float) -> Check:
    passed = None if measured is None else math.isfinite(measured) and abs(measured - expected) <= tolerance
    return Check(name, measured, expected, tolerance, passed)


def evaluate(measured: SmokeFigures) -> tuple[Check, ...]:
    """Compares measured figures with Google's; postprocessed checks are skipped without figures."""
    rel = RELATIVE_TOLERANCE
    names = (EXAMPLES, EMBEDDING_MEAN, EMBEDDING_STD, POSTPROCESSED_MEAN, POSTPROCESSED_STD)
    tolerances = (
        0.0,
        max(EMBEDDING_MEAN_TOLERANCE, rel * abs(EXPECTED_EMBEDDING_MEAN)),
        rel * EXPECTED_EMBEDDING_STD,
        rel * EXPECTED_POSTPROCESSED_MEAN,
        rel * EXPECTED_POSTPROCESSED_STD,
    )
    columns = zip(names, astuple(measured), astuple(EXPECTED), tolerances, strict=True)
    return tuple(_check(*column) for column in columns)


@dataclass(frozen=True)
class SmokeResult:
    """The smoke test's figures, the expected ones, and each check's verdict."""

    measured: SmokeFigures
    expected: SmokeFigures
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when every check that ran passed."""
        return all(c.passed is not False for c in self.checks)

    @property
    def passed(self) -> Mapping[str, bool | None]:
        """Each check's verdict by name; None for a skipped check."""
        return {c.name: c.passed for c in self.checks}

    def failures(self) -> str:
        """The failed checks on one line (empty when none failed)."""
        return "; ".join(
            f"{c.name} {c.measured:.6g} (expected {c.expected:.6g} ± {c.tolerance:.3g})"
            for c in self.checks
            if c.passed is False
        )

    def format(self) -> str:
        """A table of measured and expected figures with each check's verdict."""
        lines = [
            f"Google's VGGish smoke test: {SMOKE_FREQUENCY_HZ:.0f} Hz sine, amplitude 1, "
            f"{SMOKE_SECONDS:.0f} s at {params.SAMPLE_RATE} Hz",
            f"{'check':<20}{'measured':>12}{'expected':>12}{'tolerance':>12}  result",
        ]
        for c in self.checks:
            measured = "-" if c.measured is None else f"{c.measured:.6g}"
            verdict = {True: "pass", False: "FAIL", None: "skipped"}[c.passed]
            tolerance = f"±{c.tolerance:.3g}"
            lines.append(f"{c.name:<20}{measured:>12}{c.expected:>12.6g}{tolerance:>12}  {verdict}")
        if any(c.passed is None for c in self.checks):
            lines.append("postprocessed checks skipped: these weights carry no PCA parameters")
        lines.append("result: " + ("PASS" if self.ok else "FAIL"))
        return "\n".join(lines)


def smoke_waveform() -> np.ndarray:
    """The test input: (48000,) float64 ``sin(2 pi 1000 t)``."""
    t = np.arange(0, SMOKE_SECONDS, 1 / params.SAMPLE_RATE)
    wave: np.ndarray = np.sin(2 * np.pi * SMOKE_FREQUENCY_HZ * t)
    return wave


def measure(model: Runtime) -> SmokeFigures:
    """Runs the model on :func:`smoke_waveform` and returns its statistics (float64)."""
    examples = waveform_to_examples(smoke_waveform(), params.SAMPLE_RATE)
    with torch.inference_mode():
        embeddings = model(torch.from_numpy(examples).to(model.device))
        post = model.postprocess(embeddings).cpu().numpy() if model.has_pca else None
    emb = embeddings.cpu().numpy().astype(np.float64)
    return SmokeFigures(
        num_examples=int(examples.shape[0]),
        embedding_mean=float(emb.mean()),
        embedding_std=float(emb.std()),
        postprocessed_mean=None if post is None else float(post.astype(np.float64).mean()),
        postprocessed_std=None if post is None else float(post.astype(np.float64).std()),
    )


def smoke_test(model: Runtime) -> SmokeResult:
    """Google's smoke test on ``model`` (``result.ok``: the weights behave like Google's)."""
    measured = measure(model)
    return SmokeResult(measured, EXPECTED, evaluate(measured))
