"""The model users hold: the network plus how it runs (backend, device, precision, threads,
batch size). :func:`vggish.load_model` builds one; ``model.network`` is the plain ``nn.Module``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Literal

import numpy as np
import torch

from vggish import params
from vggish.audio.resample import ResamplerName
from vggish.network.backends import Backend, TorchBackend
from vggish.network.memory import release_free_memory
from vggish.network.model import VGGish
from vggish.network.postprocess import postprocess as postprocess_pca
from vggish.pipeline import driver as pipeline
from vggish.pipeline.driver import EmbeddingResult
from vggish.pipeline.options import EmbedOptions
from vggish.pipeline.source import Input, Waveform

BackendName = Literal["auto", "torch", "onnx"]
PrecisionName = Literal["fp32", "fp16", "bf16"]  # only fp32 gives Google's numbers

PRECISION_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
CPU_BATCH_SIZE = 32  # larger batches gain nothing on a CPU (benchmarks/bench_model.py)
CUDA_BATCH_SIZE = 256  # a GPU needs large batches to fill


def default_batch_size(device: str | torch.device) -> int:
    """Examples per model call on ``device`` when none is asked for."""
    return CPU_BATCH_SIZE if torch.device(device).type == "cpu" else CUDA_BATCH_SIZE


class Runtime:
    """VGGish ready to run: what :func:`vggish.load_model` returns.

    Args:
        network: the module, on its device, in its precision, in eval mode; or None with
            ``build_network``, which makes it on first use (with ``pca`` and ``device``).
        backend: what :meth:`infer` calls; default: PyTorch.
        weights_info: the weights file's metadata and its ``sha256``.
    """

    def __init__(
        self,
        network: VGGish | None,
        backend: Backend | None = None,
        *,
        precision: str = "fp32",
        threads: int | None = None,
        weights_info: dict[str, str] | None = None,
        build_network: Callable[[], VGGish] | None = None,
        pca: tuple[np.ndarray, np.ndarray] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if network is None and build_network is None:
            raise ValueError("a Runtime needs a network, or build_network to make one")
        self._network = network
        self._build_network = build_network
        self._backend = backend
        self._torch = backend if isinstance(backend, TorchBackend) else None  # else made on first use
        self._pca = pca
        self._device = torch.device(device)
        self.precision = precision
        self.threads = threads
        self.weights_info = dict(weights_info or {})

    @property
    def network(self) -> VGGish:
        """The plain ``nn.Module``, built on first use if need be."""
        if self._network is None:
            assert self._build_network is not None
            self._network = self._build_network()
        return self._network

    def _torch_backend(self) -> TorchBackend:
        if self._torch is None:
            self._torch = TorchBackend(self.network)
        return self._torch

    def __repr__(self) -> str:
        sha = self.weights_info.get("sha256", "?")[:12]
        return (
            f"Runtime(weights={sha}, device={self.device}, backend={self.backend}, "
            f"precision={self.precision}, batch_size={self.default_batch_size})"
        )

    @property
    def device(self) -> torch.device:
        return self._device if self._network is None else self._network.conv1.weight.device

    @property
    def backend(self) -> str:
        """``"onnx"`` when :meth:`infer` runs an ONNX Runtime session, else ``"torch"``."""
        return "torch" if self._backend is None else self._backend.name

    @property
    def default_batch_size(self) -> int:
        return default_batch_size(self.device)

    @property
    def has_pca(self) -> bool:
        """Whether the weights carry PCA parameters."""
        return self._pca is not None if self._network is None else self._network.has_pca

    @property
    def winograd(self) -> bool:
        """Whether PyTorch on the CPU may use Winograd convolutions."""
        return self._torch_backend().winograd

    @winograd.setter
    def winograd(self, enabled: bool) -> None:
        self._torch_backend().winograd = bool(enabled)

    def __call__(self, examples: torch.Tensor) -> torch.Tensor:
        """The network in PyTorch: (N, 96, 64) or (N, 1, 96, 64) -> (N, 128), with gradients."""
        return self._torch_backend().forward(examples)

    def infer(self, examples: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N, 96, 64) or (N, 1, 96, 64) examples (NumPy or a tensor) -> (N, 128) float32 NumPy,
        with the backend, without autograd."""
        out = (self._backend or self._torch_backend())(examples)
        release_free_memory()  # else glibc's arenas keep the activations' pages
        return out

    def postprocess(self, embeddings: torch.Tensor | np.ndarray) -> torch.Tensor:
        """AudioSet's PCA + 8-bit quantisation: (N, 128) -> (N, 128) torch.uint8 (RuntimeError
        without PCA parameters)."""
        if self._network is None and self._pca is not None:
            emb = torch.as_tensor(embeddings)
            return torch.from_numpy(postprocess_pca(emb.detach().cpu().numpy(), *self._pca)).to(emb.device)
        return self.network.postprocess(embeddings)

    def embed(
        self,
        waveform: np.ndarray | torch.Tensor,
        sample_rate: int,
        *,
        hop_seconds: float = params.EXAMPLE_HOP_SECONDS,
        pad: bool = False,
        postprocess: bool | None = None,
        resampler: ResamplerName = "reference",
        batch_size: int | None = None,
    ) -> EmbeddingResult:
        """Embeds a waveform ((samples,) or (samples, channels); float, or int16 / 32768), options
        as :meth:`embed_file`'s."""
        options = EmbedOptions(hop_seconds, pad, postprocess, resampler, batch_size)
        return pipeline.embed_source(self, Waveform(waveform, sample_rate), options)

    def embed_file(
        self,
        source: Input,
        *,
        hop_seconds: float = params.EXAMPLE_HOP_SECONDS,
        pad: bool = False,
        postprocess: bool | None = None,
        resampler: ResamplerName = "reference",
        batch_size: int | None = None,
    ) -> EmbeddingResult:
        """Embeds an audio file (path, bytes or binary file object) in bounded memory; the options
        are :class:`~vggish.pipeline.options.EmbedOptions`'."""
        options = EmbedOptions(hop_seconds, pad, postprocess, resampler, batch_size)
        return pipeline.embed_source(self, source, options)

    def embed_many(
        self, sources: Iterable[Input], options: EmbedOptions | None = None
    ) -> list[EmbeddingResult]:
        """Embeds several inputs, their examples packed together into full batches."""
        return pipeline.embed_many(self, sources, options or EmbedOptions())

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        return self.network.parameters()
