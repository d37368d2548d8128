"""``vggish export-onnx --output vggish.onnx [--weights W]``: the network as an ONNX graph."""

from __future__ import annotations

import argparse
import time
import warnings

from vggish.cli.runtime_args import add_weights_arg, weights_arg

DESCRIPTION = """\
Export the VGGish network as one ONNX file (weights inside, opset 18): input "examples"
(batch, 96, 64) float32 log-mel patches, output "embeddings" (batch, 128) float32, pre-activation;
the batch axis is dynamic. PCA postprocessing is not in the graph. The weights' SHA-256 and source
are stored in the file's metadata (keys vggish.*). After writing, the graph is run once with ONNX
Runtime and compared with PyTorch; a difference above 1e-4 relative is an error.
Needs: pip install 'vggish[onnx]'."""

EPILOG = """\
examples:
  vggish export-onnx --output vggish.onnx                     the official weights
  vggish export-onnx --weights random --output demo.onnx      demo weights"""

PARITY_TOLERANCE = 1e-4  # relative to max(1, max |embedding|)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="ONNX file to write")
    add_weights_arg(p)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from vggish.network.loader import load_model
    from vggish.network.onnx import OnnxVGGish, export_onnx

    started = time.perf_counter()
    weights = weights_arg(args)
    with warnings.catch_warnings():
        if weights == "random":
            warnings.simplefilter("ignore")
        model = load_model(weights, backend="torch")
    path = export_onnx(model.network, args.output, metadata=model.weights_info)
    examples = np.random.default_rng(0).standard_normal((3, 96, 64)).astype(np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(examples)).numpy()
    got = OnnxVGGish.from_file(path)(examples)
    diff = float(np.abs(got - expected).max())
    scale = max(1.0, float(np.abs(expected).max()))
    if diff > PARITY_TOLERANCE * scale:
        path.unlink(missing_ok=True)
        raise RuntimeError(
            f"the ONNX graph is off PyTorch by {diff:.2e} (> {PARITY_TOLERANCE:g} x {scale:.3g})"
        )
    seconds = time.perf_counter() - started
    size = path.stat().st_size / 2**20
    print(f"wrote {path} ({size:.0f} MiB) in {seconds:.1f} s; max |onnx - torch| {diff:.1e}")
    return 0
