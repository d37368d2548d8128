"""The VGGish network (VGGISH.md §4), with layers named after Google's TensorFlow scopes.

The module only builds layers. Weights are loaded by :func:`vggish.load_model`; the PCA
parameters for AudioSet's 8-bit features live in buffers so they move with the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vggish import params, winograd
from vggish.postprocess import postprocess as _postprocess

if TYPE_CHECKING:
    from vggish.pipeline import EmbeddingResult
    from vggish.resample import ResamplerName

BackendName = Literal["auto", "torch", "onnx"]
"""Which runtime :meth:`VGGish.infer` uses: PyTorch, ONNX Runtime (CPU), or ``auto`` (ONNX
Runtime on the CPU when installed, PyTorch otherwise and on other devices)."""

PrecisionName = Literal["fp32", "fp16", "bf16"]
"""Arithmetic of the network's weights and activations in :meth:`VGGish.infer` (PyTorch backend).
``fp16``/``bf16`` are for GPUs; see the README for their measured deviation from ``fp32``."""
PRECISION_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
CPU_BATCH_SIZE = 32  # past ~32 examples a CPU gains nothing (benchmarks/bench_model.py)
CUDA_BATCH_SIZE = 256  # a GPU needs large batches to fill; ~300 MB of activations in fp32

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
NUM_POOLS = len(POOL_AFTER)
# After four 2x2 pools: 96x64 -> 6x4 with 512 channels = 12288 features.
FINAL_HEIGHT = params.NUM_FRAMES >> NUM_POOLS
FINAL_WIDTH = params.NUM_BANDS >> NUM_POOLS
FINAL_CHANNELS = CONV_LAYERS[-1][2]
FLAT_FEATURES = FINAL_HEIGHT * FINAL_WIDTH * FINAL_CHANNELS
FC_LAYERS: tuple[tuple[str, int, int], ...] = (
    ("fc1_1", FLAT_FEATURES, 4096),
    ("fc1_2", 4096, 4096),
    ("fc2", 4096, params.EMBEDDING_SIZE),
)


class VGGish(nn.Module):
    """VGGish: log-mel examples (N, 96, 64) -> 128-d pre-activation embeddings.

    Layer attributes (``conv1`` ... ``fc2``) follow the TensorFlow scopes, so state-dict keys read
    one-to-one against the checkpoint's variables. There is no activation after ``fc2``: the output
    matches TensorFlow's current reference, not the stale final ReLU of older ports.
    """

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
        # Empty until PCA parameters are loaded (see vggish.weights); float64 like Google's file.
        # Not in state_dict(): the weights file stores them under their own keys.
        self.register_buffer("pca_eigen_vectors", torch.empty(0, dtype=torch.float64), persistent=False)
        self.register_buffer("pca_means", torch.empty(0, dtype=torch.float64), persistent=False)
        self.weights_info: dict[str, str] = {}
        self._onnx: Callable[[np.ndarray], np.ndarray] | None = None
        self.winograd = True  # see forward()
        self._winograd_cache: dict[str, tuple[tuple[object, ...], torch.Tensor]] = {}

    @property
    def has_pca(self) -> bool:
        """Whether PCA parameters are loaded, so :meth:`postprocess` can run."""
        return self.pca_eigen_vectors.numel() > 0

    @property
    def precision(self) -> str:
        """``fp32``, ``fp16`` or ``bf16``: the dtype of the network's weights (see :meth:`set_precision`)."""
        dtype = self.conv1.weight.dtype
        return next((name for name, d in PRECISION_DTYPES.items() if d == dtype), str(dtype))

    def set_precision(self, precision: PrecisionName) -> VGGish:
        """Casts the network's weights to ``fp32``/``fp16``/``bf16``; :meth:`infer` casts inputs to
        match and returns float32. PCA parameters stay float64. Returns the model."""
        if precision not in PRECISION_DTYPES:
            raise ValueError(f"precision must be one of {tuple(PRECISION_DTYPES)}; got {precision!r}")
        dtype = PRECISION_DTYPES[precision]
        for module in self.children():
            module.to(dtype=dtype)
        return self

    @property
    def default_batch_size(self) -> int:
        """Examples per model call when none is asked for: 32 on the CPU, 256 on a GPU."""
        return default_batch_size(self.device)

    @property
    def backend(self) -> str:
        """``"onnx"`` when :meth:`infer` runs an ONNX Runtime session, else ``"torch"``."""
        return "torch" if self._onnx is None else "onnx"

    def use_onnx(self, runner: Callable[[np.ndarray], np.ndarray] | None) -> None:
        """Makes :meth:`infer` call ``runner`` ((N, 96, 64) -> (N, 128) float32), or PyTorch again
        with None. ``runner`` must compute this network with these weights (see
        :func:`vggish.onnx_export.onnx_runner`); ``model(...)`` itself always runs PyTorch."""
        self._onnx = runner

    def infer(self, examples: np.ndarray | torch.Tensor) -> np.ndarray:
        """Embeds log-mel examples with the model's backend and precision, without autograd.

        Args:
            examples: (N, 96, 64) or (N, 1, 96, 64) float log-mel patches, NumPy or a tensor
                (on any device; NumPy goes to a GPU through pinned memory).

        Returns:
            (N, 128) float32 embeddings as NumPy (on the CPU), pre-activation.
        """
        if self._onnx is not None:
            if isinstance(examples, torch.Tensor):
                examples = examples.detach().float().cpu().numpy()
            return self._onnx(examples)
        from vggish.frontend_torch import to_device

        with torch.inference_mode():
            dtype = self.conv1.weight.dtype
            if isinstance(examples, torch.Tensor):
                batch = examples.to(self.device, dtype=dtype)
            else:
                batch = to_device(np.asarray(examples, dtype=np.float32), self.device, dtype)
            out: np.ndarray = self(batch).float().cpu().numpy()
        return out

    def winograd_kernels(self) -> dict[str, torch.Tensor]:
        """The Winograd kernels of :data:`vggish.winograd.LAYERS`, recomputed when weights change."""
        kernels = {}
        for name in sorted(winograd.LAYERS):
            weight = getattr(self, name).weight
            key = (weight.data_ptr(), weight._version, weight.dtype, weight.device)
            cached = self._winograd_cache.get(name)
            if cached is None or cached[0] != key:
                cached = (key, winograd.transform_kernel(weight))
                self._winograd_cache[name] = cached
            kernels[name] = cached[1]
        return kernels

    @property
    def device(self) -> torch.device:
        """The device of the network's parameters."""
        return self.conv1.weight.device

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        """Embeds log-mel examples.

        On the CPU in float32, when no weight gradient is being recorded (``inference_mode``,
        ``no_grad`` or weights with ``requires_grad=False``), conv3_1 ... conv4_2 run as Winograd
        F(2x2, 3x3) convolutions (:mod:`vggish.winograd`, ~20-25 % faster, within ~1e-6 relative
        of the direct convolution); set ``model.winograd = False`` for direct convolutions only.

        Args:
            examples: (N, 96, 64) or (N, 1, 96, 64) float log-mel patches (time, mel).

        Returns:
            (N, 128) float embeddings, pre-activation (no ReLU after fc2).
        """
        x = _as_nchw(examples)
        use_winograd = (
            self.winograd
            and x.device.type == "cpu"
            and x.dtype == self.conv3_1.weight.dtype == torch.float32
            and not (torch.is_grad_enabled() and self.conv3_1.weight.requires_grad)
        )
        return self.network(x, self.winograd_kernels() if use_winograd else None)

    def network(self, x: torch.Tensor, kernels: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The layers, on (N, 1, 96, 64) input; ``kernels`` (from :meth:`winograd_kernels`) makes
        the layers in :data:`vggish.winograd.LAYERS` Winograd convolutions."""
        nhwc = False
        for name, _, _ in CONV_LAYERS:
            conv = getattr(self, name)
            pool = name in POOL_AFTER
            if kernels is not None and name in kernels:
                if not nhwc:  # channels_last NCHW permuted is contiguous NHWC: no copy
                    x, nhwc = x.permute(0, 2, 3, 1).contiguous(), True
                x = winograd.conv3x3_relu(x, kernels[name], conv.bias, pool)
                continue
            x = F.relu(conv(x))
            if pool:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
        # The one place where TensorFlow's NHWC flatten order is reproduced: fc1_1 was trained on
        # features indexed (h * 4 + w) * 512 + c.
        x = (x if nhwc else x.permute(0, 2, 3, 1)).flatten(1)
        x = F.relu(self.fc1_1(x))
        x = F.relu(self.fc1_2(x))
        out: torch.Tensor = self.fc2(x)
        return out

    def postprocess(self, embeddings: torch.Tensor | np.ndarray) -> torch.Tensor:
        """AudioSet's PCA + 8-bit quantisation (VGGISH.md §5).

        Args:
            embeddings: (N, 128) raw embeddings from :meth:`forward`.

        Returns:
            (N, 128) torch.uint8 on the embeddings' device (CPU for a NumPy input).

        Raises:
            RuntimeError: if the loaded weights carry no PCA parameters.
        """
        if not self.has_pca:
            raise RuntimeError(
                "these weights carry no PCA parameters, so postprocessing is unavailable: convert "
                "with `vggish convert ... --pca vggish_pca_params.npz`, or skip postprocessing"
            )
        emb = torch.as_tensor(embeddings)
        q = _postprocess(
            emb.detach().cpu().numpy(),
            self.pca_eigen_vectors.cpu().numpy(),
            self.pca_means.cpu().numpy(),
        )
        return torch.from_numpy(q).to(emb.device)

    def embed(
        self,
        waveform: np.ndarray,
        sample_rate: int,
        *,
        hop_seconds: float = params.EXAMPLE_HOP_SECONDS,
        pad: bool = False,
        postprocess: bool | None = None,
        resampler: ResamplerName = "reference",
        batch_size: int | None = None,
    ) -> EmbeddingResult:
        """Embeds a waveform; see :func:`vggish.pipeline.embed_waveform`."""
        from vggish.pipeline import EmbedOptions, embed_waveform

        options = EmbedOptions(hop_seconds, pad, postprocess, resampler, batch_size)
        return embed_waveform(self, waveform, sample_rate, options)

    def embed_file(
        self,
        source: object,
        *,
        hop_seconds: float = params.EXAMPLE_HOP_SECONDS,
        pad: bool = False,
        postprocess: bool | None = None,
        resampler: ResamplerName = "reference",
        batch_size: int | None = None,
    ) -> EmbeddingResult:
        """Embeds an audio file (path, bytes or binary file object) in bounded memory.

        See :func:`vggish.pipeline.embed_source`.
        """
        from vggish.pipeline import EmbedOptions, embed_source

        options = EmbedOptions(hop_seconds, pad, postprocess, resampler, batch_size)
        return embed_source(self, source, options)  # type: ignore[arg-type]


def default_batch_size(device: str | torch.device) -> int:
    """Examples per model call on ``device`` when none is asked for: 32 on the CPU, 256 on a GPU."""
    return CPU_BATCH_SIZE if torch.device(device).type == "cpu" else CUDA_BATCH_SIZE


def _as_nchw(examples: torch.Tensor) -> torch.Tensor:
    """(N, 96, 64) or (N, 1, 96, 64) -> (N, 1, 96, 64), with a clear error for anything else."""
    expected: Sequence[int] = (params.NUM_FRAMES, params.NUM_BANDS)
    if examples.dim() == 3 and tuple(examples.shape[1:]) == tuple(expected):
        return examples.unsqueeze(1)
    if examples.dim() == 4 and tuple(examples.shape[1:]) == (1, *expected):
        return examples
    raise ValueError(
        f"VGGish takes log-mel examples shaped (N, 96, 64) or (N, 1, 96, 64); got "
        f"{tuple(examples.shape)}. Make examples with vggish.waveform_to_examples()."
    )
