"""The network against a plain NumPy NHWC forward pass with TensorFlow-layout weights (docs/vggish.md §4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vggish.network.model import VGGish
from vggish.network.runtime import Runtime

TF_CONVS = [
    ("conv1", 1, 64),
    ("conv2", 64, 128),
    ("conv3_1", 128, 256),
    ("conv3_2", 256, 256),
    ("conv4_1", 256, 512),
    ("conv4_2", 512, 512),
]
TF_DENSE = [("fc1_1", 12288, 4096), ("fc1_2", 4096, 4096), ("fc2", 4096, 128)]
POOL_AFTER = {"conv1", "conv2", "conv3_2", "conv4_2"}


def tf_layout_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Random He-normal weights in TensorFlow layouts: conv HWIO, dense (in, out)."""
    rng = np.random.default_rng(seed)
    w: dict[str, np.ndarray] = {}
    for name, c_in, c_out in TF_CONVS:
        w[f"{name}/weights"] = rng.standard_normal((3, 3, c_in, c_out)) * np.sqrt(2 / (9 * c_in))
        w[f"{name}/biases"] = rng.standard_normal(c_out) * 0.05
    for name, n_in, n_out in TF_DENSE:
        w[f"{name}/weights"] = rng.standard_normal((n_in, n_out)) * np.sqrt(2 / n_in)
        w[f"{name}/biases"] = rng.standard_normal(n_out) * 0.05
    return w


def numpy_nhwc_forward(examples: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """(N, 96, 64) -> (N, 128), NHWC throughout, SAME 3x3 convs via shifted sums, 2x2 max-pools."""
    x = examples[..., None].astype(np.float64)  # N, H, W, C
    for name, _, c_out in TF_CONVS:
        kernel = w[f"{name}/weights"]
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        n, h, wd, _ = x.shape
        out = np.zeros((n, h, wd, c_out))
        for dy in range(3):
            for dx in range(3):
                out += padded[:, dy : dy + h, dx : dx + wd, :] @ kernel[dy, dx]
        x = np.maximum(out + w[f"{name}/biases"], 0)
        if name in POOL_AFTER:
            n, h, wd, c = x.shape
            x = x.reshape(n, h // 2, 2, wd // 2, 2, c).max(axis=(2, 4))
    x = x.reshape(x.shape[0], -1)  # NHWC flatten: index (h * 4 + w) * 512 + c
    for name, _, _ in TF_DENSE:
        x = x @ w[f"{name}/weights"] + w[f"{name}/biases"]
        if name != "fc2":
            x = np.maximum(x, 0)
    return x


def torch_state_from_tf(w: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    state = {}
    for name, _, _ in TF_CONVS:
        state[f"{name}.weight"] = torch.from_numpy(w[f"{name}/weights"].transpose(3, 2, 0, 1).copy())
        state[f"{name}.bias"] = torch.from_numpy(w[f"{name}/biases"])
    for name, _, _ in TF_DENSE:
        state[f"{name}.weight"] = torch.from_numpy(w[f"{name}/weights"].T.copy())
        state[f"{name}.bias"] = torch.from_numpy(w[f"{name}/biases"])
    return {k: v.float() for k, v in state.items()}


@pytest.fixture(scope="module")
def tf_weights() -> dict[str, np.ndarray]:
    return tf_layout_weights()


@pytest.fixture(scope="module")
def model(tf_weights: dict[str, np.ndarray]) -> VGGish:
    m = VGGish()
    m.load_state_dict(torch_state_from_tf(tf_weights))
    return m.eval()


def test_matches_numpy_nhwc_forward(
    model: VGGish, tf_weights: dict[str, np.ndarray], reference: dict[str, np.ndarray]
) -> None:
    examples = reference["noise_examples"][:3]
    expected = numpy_nhwc_forward(examples, tf_weights)
    with torch.inference_mode():
        ours = model(torch.from_numpy(examples).float()).numpy()
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(ours - expected).max() <= 1e-4 * scale
    assert (ours < 0).any(), "no ReLU after fc2: the embedding is pre-activation"


def test_nchw_flatten_would_be_caught(
    model: VGGish, tf_weights: dict[str, np.ndarray], reference: dict[str, np.ndarray]
) -> None:
    """The comparison above is sensitive to flatten order: a plain NCHW flatten is far off."""
    examples = torch.from_numpy(reference["smoke_examples"][:1]).float()
    with torch.inference_mode():
        x = examples.unsqueeze(1)
        for name, _, _ in TF_CONVS:
            x = torch.relu(getattr(model, name)(x))
            if name in POOL_AFTER:
                x = torch.nn.functional.max_pool2d(x, 2)
        wrong = model.fc2(torch.relu(model.fc1_2(torch.relu(model.fc1_1(x.flatten(1)))))).numpy()
    right = numpy_nhwc_forward(reference["smoke_examples"][:1], tf_weights)
    assert np.abs(wrong - right).max() / np.abs(right).max() > 0.1


def test_accepts_both_input_shapes(model: VGGish) -> None:
    x = torch.randn(2, 96, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), model(x.unsqueeze(1)))
        assert model(x).shape == (2, 128) and model(x).dtype == torch.float32
        assert model(torch.empty(0, 96, 64)).shape == (0, 128)


@pytest.mark.parametrize("shape", [(96, 64), (2, 64, 96), (2, 2, 96, 64), (2, 96, 64, 1), (2, 1, 1, 96, 64)])
def test_rejects_wrong_shapes(model: VGGish, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(N, 96, 64\)"):
        model(torch.zeros(shape))


def test_layers_and_parameter_count() -> None:
    m = VGGish()
    names = [n for n, _ in m.named_children()]
    assert names == ["conv1", "conv2", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "fc1_1", "fc1_2", "fc2"]
    assert sum(p.numel() for p in m.parameters()) == 72_141_184
    assert set(m.state_dict()) == {f"{n}.{k}" for n in names for k in ("weight", "bias")}


# --- Winograd convolutions (the CPU inference path) -------------------------------------------


@pytest.mark.parametrize(
    ("c_in", "c_out", "h", "w", "pool"), [(3, 5, 4, 8, False), (8, 16, 12, 8, True), (16, 4, 4, 4, True)]
)
def test_winograd_conv_equals_direct_convolution(c_in: int, c_out: int, h: int, w: int, pool: bool) -> None:
    from vggish.network import winograd

    gen = torch.Generator().manual_seed(c_in * 100 + h)
    x = torch.randn(3, c_in, h, w, generator=gen, dtype=torch.float64)
    weight = torch.randn(c_out, c_in, 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(c_out, generator=gen, dtype=torch.float64)
    expected = torch.relu(torch.nn.functional.conv2d(x, weight, bias, padding=1))
    if pool:
        expected = torch.nn.functional.max_pool2d(expected, 2)
    kernels = winograd.transform_kernel(weight)
    got = winograd.conv3x3_relu(x.permute(0, 2, 3, 1).contiguous(), kernels, bias, pool)
    assert torch.allclose(got.permute(0, 3, 1, 2), expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="multiples of 4"):
        winograd.conv3x3_relu(torch.zeros(1, 3, 4, c_in), winograd.transform_kernel(weight), bias, pool)


def test_inference_uses_winograd_and_matches_direct(model: VGGish) -> None:
    runtime = Runtime(model)  # the network with the default convolution plan
    x = torch.from_numpy(np.random.default_rng(7).standard_normal((5, 96, 64)).astype(np.float32))
    with torch.inference_mode():
        fast = runtime(x)
        runtime.winograd = False
        direct = runtime(x)
    assert torch.equal(direct, model(x))  # the module alone: direct convolutions
    scale = float(direct.abs().max())
    deviation = float((fast - direct).abs().max())
    assert 0 < deviation <= 1e-5 * max(1.0, scale)  # really another algorithm, and as exact


def test_training_path_keeps_weight_gradients_and_kernels_follow_weights(model: VGGish) -> None:
    runtime = Runtime(model)
    x = torch.from_numpy(np.random.default_rng(8).standard_normal((2, 96, 64)).astype(np.float32))
    out = runtime(x)  # grad enabled, weights require grad: direct convolutions
    out.sum().backward()
    assert model.conv4_2.weight.grad is not None and model.conv4_2.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        before = runtime(x)
        model.conv4_2.weight.mul_(0.5)  # in place: the cached Winograd kernels must follow
        try:
            after = runtime(x)
            runtime.winograd = False
            direct_after = runtime(x)
        finally:
            model.conv4_2.weight.mul_(2.0)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, direct_after, rtol=0, atol=1e-5 * max(1.0, float(direct_after.abs().max())))
