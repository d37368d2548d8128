"""``vggish convert CHECKPOINT [--pca PCA] --output OUT.safetensors``: make a weights file."""

from __future__ import annotations

import argparse
import time

from vggish.weights import default_weights_path, sha256_file
from vggish.weights.convert import convert_checkpoint

DESCRIPTION = """\
Convert VGGish weights into this package's .safetensors weights file, without TensorFlow.

CHECKPOINT may be:
  Google's vggish_model.ckpt            legacy TensorFlow V1 checkpoint (a single file)
  PREFIX, PREFIX.index or a data shard  TensorFlow V2 checkpoint (PREFIX.index + PREFIX.data-*)
  a .pth / .pt state dict               of torchvggish, torchaudio's VGGISH bundle, or this package

Every block and tensor is checked against its CRC-32C. Optimizer slots and global_step are
ignored. The output records the source's name, format and SHA-256, and is written atomically."""

EPILOG = f"""\
examples:
  vggish convert vggish_model.ckpt --pca vggish_pca_params.npz --output weights/vggish.safetensors
  vggish convert train/model.ckpt-20000 --output my_vggish.safetensors        (V2 prefix)
  vggish convert vggish-10086976.pth --pca vggish_pca_params-970ea276.pth -o vggish.safetensors

default output: {default_weights_path()}"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint file, V2 prefix, or .pth")
    p.add_argument(
        "--pca",
        metavar="PCA",
        help="vggish_pca_params.npz (or torchvggish's PCA .pth) for AudioSet's 8-bit features",
    )
    p.add_argument(
        "-o",
        "--output",
        default=str(default_weights_path()),
        metavar="OUT.safetensors",
        help="weights file to write (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    output = convert_checkpoint(args.checkpoint, args.output, pca=args.pca)
    seconds = time.perf_counter() - started
    pca_note = " with PCA" if args.pca else ""
    print(f"wrote {output}{pca_note} (sha256 {sha256_file(output)[:16]}...) in {seconds:.1f} s")
    return 0
