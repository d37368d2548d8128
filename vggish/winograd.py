"""Winograd F(2x2, 3x3) convolutions for VGGish's deeper layers on the CPU.

A 3x3 convolution computes each 2x2 block of outputs from a 4x4 tile of inputs. Winograd's
minimal filtering algorithm (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
2016) does that with 16 multiplications per input/output channel pair instead of 36: the tile
and the kernel are transformed (``V = B^T d B``, ``U = G g G^T``), multiplied element by element
(over channels this is 16 independent matrix products), and transformed back (``Y = A^T M A``).
The network is bound by matrix-multiply throughput on a CPU, so 2.25x fewer multiplications in
conv3_1 ... conv4_2 (three quarters of the network's FLOPs) make the whole model ~20-25 % faster,
in PyTorch and in ONNX Runtime alike. The transforms only add and subtract inputs (and halve the
kernel, in float64), so results stay within ~1e-6 of a direct convolution, relative to the
activations' scale (tests/test_model.py checks it against TensorFlow).

Activations are NHWC (channels last and contiguous), the layout in which the transforms are
strided slices and the products are one batched matrix multiply.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

# Layers computed this way; conv1 (one input channel) and conv2 (64) gain nothing: their
# matrix products are too thin for the saved multiplications to pay for the transforms.
LAYERS = frozenset({"conv3_1", "conv3_2", "conv4_1", "conv4_2"})

# G: the kernel transform of F(2x2, 3x3).
_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))


def transform_kernel(weight: torch.Tensor) -> torch.Tensor:
    """(K, C, 3, 3) convolution weights -> (16, C, K) Winograd kernels ``G g G^T`` (float32).

    Computed in float64 so that the only rounding is the final cast.
    """
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"expected (K, C, 3, 3) weights; got {tuple(weight.shape)}")
    g = torch.tensor(_G, dtype=torch.float64, device=weight.device)
    u = torch.einsum("ai,kcij,bj->abck", g, weight.detach().double(), g)
    return u.reshape(16, weight.shape[1], weight.shape[0]).to(weight.dtype).contiguous()


def _input_transform(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) -> (16, B * H/2 * W/2, C): ``B^T d B`` of every 4x4 tile (stride 2, zero padding 1).

    ``B^T`` = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], applied to the tile's
    rows (strided row slices of the padded input), then to its columns.
    """
    b, h, w, c = x.shape
    th, tw = h // 2, w // 2
    xp = F.pad(x, (0, 0, 1, 1, 1, 1))
    d = [xp[:, i : i + 2 * th : 2] for i in range(4)]  # row i of every tile: (B, th, W + 2, C)
    rows = (d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3])
    out = []
    for r in rows:
        e = [r[:, :, j : j + 2 * tw : 2] for j in range(4)]  # column j of every tile: (B, th, tw, C)
        out += [e[0] - e[2], e[1] + e[2], e[2] - e[1], e[1] - e[3]]
    return torch.stack(out).reshape(16, b * th * tw, c)


def conv3x3_relu(x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor, pool: bool) -> torch.Tensor:
    """``relu(conv3x3(x) + bias)`` with "same" zero padding, then a 2x2 max-pool when ``pool``.

    Args:
        x: (B, H, W, C) NHWC activations; H and W even.
        kernels: (16, C, K) from :func:`transform_kernel`.
        bias: (K,).
        pool: fuse the 2x2 max-pool: each tile's four outputs are exactly one pooling window,
            and max commutes with adding the bias and with ReLU.

    Returns:
        (B, H, W, K), or (B, H/2, W/2, K) with ``pool``; NHWC.
    """
    b, h, w, _ = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"Winograd F(2x2, 3x3) here needs even height and width; got {h}x{w}")
    k = kernels.shape[2]
    th, tw = h // 2, w // 2
    m = torch.bmm(_input_transform(x), kernels).reshape(4, 4, b, th, tw, k)
    # A^T = [[1, 1, 1, 0], [0, 1, -1, -1]] on the first tile axis, then on the second.
    s0, s1 = m[0] + m[1] + m[2], m[1] - m[2] - m[3]
    y00, y01 = s0[0] + s0[1] + s0[2], s0[1] - s0[2] - s0[3]
    y10, y11 = s1[0] + s1[1] + s1[2], s1[1] - s1[2] - s1[3]
    if pool:
        return torch.relu(torch.maximum(torch.maximum(y00, y01), torch.maximum(y10, y11)) + bias)
    y = torch.stack([torch.stack([y00, y01], dim=3), torch.stack([y10, y11], dim=3)], dim=2)
    return torch.relu(y.reshape(b, h, w, k) + bias)
