"""vggish.pipeline.source: a Waveform is read in place (memory of the caller's array, not a float64 copy)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from vggish import params
from vggish.pipeline.options import EmbedOptions
from vggish.pipeline.source import ExampleSource, Waveform

SECONDS = 600


@pytest.mark.slow
def test_a_long_float32_waveform_is_converted_chunk_by_chunk() -> None:
    x = np.random.default_rng(0).uniform(-0.5, 0.5, SECONDS * params.SAMPLE_RATE).astype(np.float32)
    stereo = np.repeat(x[:, None], 2, axis=1)
    for samples in (x, stereo):
        tracemalloc.start()
        try:
            source = ExampleSource(Waveform(samples, params.SAMPLE_RATE), EmbedOptions())
            count = sum(len(chunk) for chunk in source)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert count == (SECONDS * params.SAMPLE_RATE - 15600) // 15360 + 1
        # a float64 mono copy alone would be 77 MB; the array itself is 38 (mono) or 77 MB
        assert peak < 0.5 * x.nbytes, f"peak {peak / 1e6:.1f} MB reading a {x.nbytes / 1e6:.0f} MB array"
