"""The VGGish network (docs/vggish.md §4), layers named after Google's TensorFlow scopes; the PCA
parameters of AudioSet's 8-bit features live in buffers, so they move with the model."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vggish import params
from vggish.network.postprocess import postprocess as _postprocess

# Replacements for layers: ``(x, pool) -> relu(conv3x3(x) + bias)`` (then the 2x2 max-pool when
# ``pool``) on NHWC activations; (N, in) -> (N, out), the same affine map.
LayerFn = Callable[[torch.Tensor, bool], torch.Tensor]
LinearFn = Callable[[torch.Tensor], torch.Tensor]

# (scope, input channels, output channels) of the 3x3 convolutions; a 2x2 max-pool follows the
# last convolution of each block: conv1 | conv2 | conv3_1 conv3_2 | conv4_1 conv4_2.
CONV_LAYERS: tuple[tuple[str, int, int], ...] = (
    ("conv1", 1, 64),
    ("conv2", 64, 128),
    ("conv3_1", 128, 256),
    ("conv3_2", 256, 256),
    ("conv4_1", 256, 512),
    ("conv4_2", 512, 512),
)
POOL_AFTER = frozenset({"conv1", "conv2", "conv3_2", "conv4_2"})
# After four 2x2 pools: 96x64 -> 6x4 with 512 channels = 12288 features.
FLAT_FEATURES = params.NUM_FRAMES * params.NUM_BANDS // 4 ** len(POOL_AFTER) * CONV_LAYERS[-1][2]
FC_LAYERS: tuple[tuple[str, int, int], ...] = (
    ("fc1_1", FLAT_FEATURES, 4096),
    ("fc1_2", 4096, 4096),
    ("fc2", 4096, params.EMBEDDING_SIZE),
)


class VGGish(nn.Module):
    """VGGish: log-mel examples (N, 96, 64) -> 128-d pre-activation embeddings (no ReLU after
    ``fc2``, as TensorFlow's current reference)."""

    conv1: nn.Conv2d
    conv2: nn.Conv2d
    conv3_1: nn.Conv2d
    conv3_2: nn.Conv2d
    conv4_1: nn.Conv2d
    conv4_2: nn.Conv2d
    fc1_1: nn.Linear
    fc1_2: nn.Linear
    fc2: nn.Linear
    pca_eigen_vectors: torch.Tensor
    pca_means: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        for name, c_in, c_out in CONV_LAYERS:
            self.add_module(name, nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))
        for name, n_in, n_out in FC_LAYERS:
            self.add_module(name, nn.Linear(n_in, n_out))
        # Empty until PCA parameters are loaded (see vggish.network.loader); float64 like Google's file.
        # Not in state_dict(): the weights file stores them under their own keys.
        self.register_buffer("pca_eigen_vectors", torch.empty(0, dtype=torch.float64), persistent=False)
        self.register_buffer("pca_means", torch.empty(0, dtype=torch.float64), persistent=False)

    @property
    def has_pca(self) -> bool:
        """Whether PCA parameters are loaded, so :meth:`postprocess` can run."""
        return self.pca_eigen_vectors.numel() > 0

    def forward(
        self,
        examples: torch.Tensor,
        layers: Mapping[str, LayerFn] | None = None,
        linears: Mapping[str, LinearFn] | None = None,
    ) -> torch.Tensor:
        """(N, 96, 64) or (N, 1, 96, 64) log-mel examples -> (N, 128) embeddings; ``layers`` and
        ``linears`` replace some layers (e.g. Winograd convolutions)."""
        x = _as_nchw(examples)
        nhwc = False
        for name, _, _ in CONV_LAYERS:
            pool = name in POOL_AFTER
            if layers is not None and name in layers:
                if not nhwc:  # channels_last NCHW permuted is contiguous NHWC: no copy
                    x, nhwc = x.permute(0, 2, 3, 1).contiguous(), True
                x = layers[name](x, pool)
                continue
            if nhwc:
                x, nhwc = x.permute(0, 3, 1, 2), False
            x = F.relu(getattr(self, name)(x))
            if pool:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
        # The one place where TensorFlow's NHWC flatten order is reproduced: fc1_1 was trained on
        # features indexed (h * 4 + w) * 512 + c.
        x = (x if nhwc else x.permute(0, 2, 3, 1)).flatten(1)
        fc: dict[str, LinearFn] = {name: getattr(self, name) for name, _, _ in FC_LAYERS}
        fc.update(linears or {})
        x = F.relu(fc["fc1_1"](x))
        x = F.relu(fc["fc1_2"](x))
        return fc["fc2"](x)

    def postprocess(self, embeddings: torch.Tensor | np.ndarray) -> torch.Tensor:
        """AudioSet's PCA + 8-bit quantisation: (N, 128) -> (N, 128) torch.uint8 on the embeddings'
        device (RuntimeError without PCA parameters)."""
        if not self.has_pca:
            raise RuntimeError(
                "these weights carry no PCA parameters, so postprocessing is unavailable: convert "
                "with `vggish convert ... --pca vggish_pca_params.npz`, or skip postprocessing"
            )
        emb = torch.as_tensor(embeddings)
        pca = self.pca_eigen_vectors.cpu().numpy(), self.pca_means.cpu().numpy()
        return torch.from_numpy(_postprocess(emb.detach().cpu().numpy(), *pca)).to(emb.device)


def _as_nchw(examples: torch.Tensor) -> torch.Tensor:
    shape = tuple(examples.shape[1:])
    if shape == (params.NUM_FRAMES, params.NUM_BANDS):
        return examples.unsqueeze(1)
    if shape == (1, params.NUM_FRAMES, params.NUM_BANDS):
        return examples
    raise ValueError(
        f"VGGish takes log-mel examples shaped (N, 96, 64) or (N, 1, 96, 64); got "
        f"{tuple(examples.shape)}. Make examples with vggish.waveform_to_examples()."
    )
