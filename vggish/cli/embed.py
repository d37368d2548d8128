"""``vggish embed INPUT --output OUT.npz``: embeddings and timestamps of one audio file."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vggish.cli.runtime_args import (
    add_embed_args,
    add_runtime_args,
    add_weights_arg,
    embed_options,
    load_runtime,
)
from vggish.errors import plural
from vggish.weights.location import default_weights_path

DESCRIPTION = """\
Embed one audio file with VGGish and write an .npz with:
  embedding      (N, 128) float32  raw embeddings, one per example (0.975 s window)
  timestamps     (N, 2)   float64  start and end of each example, in seconds
  postprocessed  (N, 128) uint8    AudioSet's 8-bit PCA features (when the weights carry PCA)

Any format soundfile or ffmpeg decodes is accepted (wav, flac, ogg, opus, mp3, m4a, video).
Audio is mixed to mono and resampled to 16 kHz exactly as Google's reference does."""

EPILOG = f"""\
examples:
  vggish embed dog.wav --output dog.npz
  vggish embed talk.m4a --output talk.npz --hop 0.48 --pad
  vggish embed clip.flac --output clip.npz --weights random     (demo without real weights)
  vggish embed long.wav --output long.npz --device cuda --precision fp16

default weights: {default_weights_path()}"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="INPUT", help="audio file to embed")
    p.add_argument("-o", "--output", required=True, metavar="OUT.npz", help="where to write the results")
    add_weights_arg(p)
    add_embed_args(p)
    add_runtime_args(p)


def run(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if output.suffix != ".npz":
        raise ValueError(f"--output must name an .npz file; got {output}")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"the output folder {output.parent} does not exist; create it first")
    if not Path(args.input).exists():
        raise FileNotFoundError(f"no such input file: {args.input}")
    from vggish.pipeline.driver import embed_source, write_npz

    options = embed_options(args)
    model = load_runtime(args)
    started = time.perf_counter()
    result = embed_source(model, args.input, options)
    write_npz(output, result)
    seconds = time.perf_counter() - started
    count = result.embeddings.shape[0]
    speed = result.duration / seconds if seconds > 0 else float("inf")
    print(
        f"wrote {output}: {plural(count, 'example')} from {result.duration:.2f} s of audio "
        f"in {seconds:.2f} s ({speed:.0f}x realtime)"
    )
    if count == 0:
        print(
            "note: the clip is shorter than 0.975 s, so it has no example; --pad gives one", file=sys.stderr
        )
    return 0
