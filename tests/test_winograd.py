"""Winograd F(m x m, 3 x 3) convolutions against independent references.

References: exact rational arithmetic for the 1-D algorithms, ``torch.nn.functional.conv2d`` in
float64 for the 2-D layers (never numbers produced by :mod:`vggish.network.winograd` itself), and
PyTorch eager for the ONNX Runtime round trip.
"""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
import torch
from torch.nn import functional as F

from vggish.network import winograd

# VGGish's convolutions: (scope, C_in, C_out, H, W of the input, 2x2 max-pool after).
LAYER_SHAPES = (
    ("conv1", 1, 64, 96, 64, True),
    ("conv2", 64, 128, 48, 32, True),
    ("conv3_1", 128, 256, 24, 16, False),
    ("conv3_2", 256, 256, 24, 16, True),
    ("conv4_1", 256, 512, 12, 8, False),
    ("conv4_2", 512, 512, 12, 8, True),
)
# Worst float32 deviation from float64 direct convolution measured on this file's random data (max
# over the six layers, relative to the output's max |value|: F2 4.6e-7, F4 7.1e-6; F6 9.6e-6 at
# 24x24), and the bound asserted, ~2x above. On the activations of real recordings F4 measures
# <= 2.2e-6, as F.conv2d itself does in float32 (benchmarks/bench_winograd.py --sections accuracy).
FLOAT32_BOUND = {4: 1.5e-5}


def layer_data(
    c_in: int, c_out: int, h: int, w: int, batch: int, dtype: torch.dtype, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ReLU-like (non-negative) NCHW activations, He-scaled weights, small biases."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, c_in, h, w, generator=gen, dtype=torch.float64).relu()
    weight = torch.randn(c_out, c_in, 3, 3, generator=gen, dtype=torch.float64) * (2 / (9 * c_in)) ** 0.5
    bias = 0.1 * torch.randn(c_out, generator=gen, dtype=torch.float64)
    return x.to(dtype), weight.to(dtype), bias.to(dtype)


def direct(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: bool) -> torch.Tensor:
    """The reference: float64 ``relu(conv2d + bias)`` (+ max-pool), NCHW."""
    y = torch.relu(F.conv2d(x.double(), weight.double(), bias.double(), padding=1))
    return F.max_pool2d(y, 2) if pool else y


def winograd_nchw(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: bool, tile: int
) -> torch.Tensor:
    nhwc = x.permute(0, 2, 3, 1).contiguous()
    out = winograd.conv3x3_relu(nhwc, winograd.transform_kernel(weight, tile), bias, pool, tile)
    return out.permute(0, 3, 1, 2)


def relative_deviation(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.double() - expected).abs().max() / expected.abs().max())


# --- The 1-D algorithms, exactly -------------------------------------------------------------


@pytest.mark.parametrize("tile", winograd.TILES)
def test_transforms_compute_correlation_exactly(tile: int) -> None:
    """``A^T [(G g) * (B^T d)]`` with the data stages as the code applies them (sparse, in order)
    equals the correlation ``y_i = sum_k g_k d_(i+k)`` in rational arithmetic."""
    t = winograd.transforms(tile)
    rng = random.Random(tile)
    for _ in range(20):
        g = [Fraction(rng.randint(-50, 50), rng.randint(1, 9)) for _ in range(3)]
        d = [Fraction(rng.randint(-50, 50), rng.randint(1, 9)) for _ in range(t.alpha)]
        v = apply_exact(t.input_stages, d)
        u = [sum((gi * gk for gi, gk in zip(row, g, strict=True)), Fraction(0)) for row in t.g]
        y = apply_exact(t.output_stages, [a * b for a, b in zip(u, v, strict=True)])
        assert y == [sum((g[k] * d[i + k] for k in range(3)), Fraction(0)) for i in range(tile)]
    assert t.alpha == tile + 2 and len(t.at) == tile


def apply_exact(stages: tuple[winograd.Stage, ...], terms: list[Fraction]) -> list[Fraction]:
    for stage in stages:
        terms = [sum((Fraction(c) * terms[j] for j, c in row), Fraction(0)) for row in stage]
    return terms


def test_f4_points_keep_transforms_small() -> None:
    """Points 0, +-1, +-1/2: B^T's entries stay <= 5 in magnitude (with 0, +-1, +-2 they are too,
    but G then spans 1/24 ... 1); A^T holds powers of two, which scale exactly."""
    t = winograd.transforms(4)
    assert max(abs(v) for row in t.bt for v in row) <= 5
    assert all(
        v == 0 or (abs(v).numerator == 1 and abs(v).denominator & (abs(v).denominator - 1) == 0)
        for row in t.at
        for v in row
    )


# --- 2-D layers against F.conv2d -------------------------------------------------------------


@pytest.mark.parametrize("tile", winograd.TILES)
@pytest.mark.parametrize(("name", "c_in", "c_out", "h", "w", "pool"), LAYER_SHAPES)
def test_float64_equals_direct_convolution(
    name: str, c_in: int, c_out: int, h: int, w: int, pool: bool, tile: int
) -> None:
    x, weight, bias = layer_data(c_in, c_out, h, w, 2, torch.float64, seed=c_in + c_out)
    expected = direct(x, weight, bias, pool)
    got = winograd_nchw(x, weight, bias, pool, tile)
    assert got.dtype == torch.float64 and got.shape == expected.shape
    assert relative_deviation(got, expected) <= 1e-10


def test_chunked_batches_equal_direct_convolution() -> None:
    """Eager mode splits large batches into chunks (conv1: one example each); the result is the same."""
    assert winograd.examples_per_chunk(4, 96, 64, 1, 64) < 3
    x, weight, bias = layer_data(1, 64, 96, 64, 3, torch.float64, seed=5)
    assert relative_deviation(winograd_nchw(x, weight, bias, True, 4), direct(x, weight, bias, True)) <= 1e-10


def test_direct_path_equals_direct_convolution() -> None:
    """conv3x3_relu_direct (NHWC in and out, chunked in eager mode) against F.conv2d."""
    x, weight, bias = layer_data(1, 64, 96, 64, 7, torch.float64, seed=9)
    got = winograd.conv3x3_relu_direct(x.permute(0, 2, 3, 1).contiguous(), weight, bias, True)
    assert got.shape == (7, 48, 32, 64) and got.is_contiguous()
    assert relative_deviation(got.permute(0, 3, 1, 2), direct(x, weight, bias, True)) <= 1e-12
    with pytest.raises(ValueError, match="even height and width"):
        winograd.conv3x3_relu_direct(torch.zeros(1, 5, 4, 1, dtype=torch.float64), weight, bias, True)


@pytest.mark.parametrize("tile", winograd.TILES)
def test_float32_deviation_is_bounded(tile: int) -> None:
    """float32 against float64 direct convolution: within FLOAT32_BOUND of the output's scale at
    every layer, and really computed in float32 (not exact)."""
    deviations = []
    for _, c_in, c_out, h, w, pool in LAYER_SHAPES:
        x, weight, bias = layer_data(c_in, c_out, h, w, 2, torch.float32, seed=c_in + c_out)
        got = winograd_nchw(x, weight, bias, pool, tile)
        assert got.dtype == torch.float32
        deviations.append(relative_deviation(got, direct(x, weight, bias, pool)))
    assert 1e-8 < max(deviations) <= FLOAT32_BOUND[tile], deviations


# --- Refusals ---------------------------------------------------------------------------------


def test_bad_sizes_and_mismatched_kernels_are_refused() -> None:
    weight, bias = torch.zeros(8, 4, 3, 3), torch.zeros(8)
    k4 = winograd.transform_kernel(weight)
    assert k4.shape == (36, 4, 8)
    with pytest.raises(ValueError, match="multiples of 4"):
        winograd.conv3x3_relu(torch.zeros(1, 8, 6, 4), k4, bias, True, tile=4)
    with pytest.raises(ValueError, match=r"tile=4"):
        winograd.conv3x3_relu(torch.zeros(1, 8, 8, 4), k4[:16], bias, False, tile=4)
    with pytest.raises(ValueError, match="on 3 channels"):
        winograd.conv3x3_relu(torch.zeros(1, 8, 8, 3), k4, bias, False, tile=4)
    for tile in (1, 2, 3, 6, 8, "4"):
        with pytest.raises(ValueError, match="tile must be one of"):
            winograd.transform_kernel(weight, tile)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(K, C, 3, 3\)"):
        winograd.transform_kernel(torch.zeros(8, 4, 5, 5), tile=4)


# --- ONNX round trip -------------------------------------------------------------------------


def test_empty_batch_and_recommended_plans() -> None:
    weight, bias = torch.randn(8, 4, 3, 3), torch.zeros(8)
    kernels = winograd.transform_kernel(weight, 4)
    assert winograd.conv3x3_relu(torch.zeros(0, 8, 8, 4), kernels, bias, True, 4).shape == (0, 4, 4, 8)
    assert winograd.conv3x3_relu_direct(torch.zeros(0, 8, 8, 4), weight, bias, False).shape == (0, 8, 8, 8)
    for plan in (winograd.TORCH_TILES, winograd.ONNX_TILES):
        assert [name for name, *_ in LAYER_SHAPES] == list(plan)
        assert all(tile == 0 or tile in winograd.TILES for tile in plan.values())
