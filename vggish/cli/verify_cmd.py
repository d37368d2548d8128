"""``vggish verify``: Google's smoke test on a weights file; exit status 1 if a check fails."""

from __future__ import annotations

import argparse
import textwrap

from vggish.cli.runtime_args import add_weights_arg, weights_arg
from vggish.weights import verify as V
from vggish.weights.location import default_weights_path

DESCRIPTION = textwrap.fill(
    f"Run Google's VGGish smoke test on a weights file: a {V.SMOKE_FREQUENCY_HZ:.0f} Hz sine, "
    f"{V.SMOKE_SECONDS:.0f} s at 16 kHz, must give {V.EXPECTED_NUM_EXAMPLES} examples whose raw "
    f"embeddings have mean {V.EXPECTED_EMBEDDING_MEAN} and std {V.EXPECTED_EMBEDDING_STD}, and whose "
    f"8-bit postprocessed features have mean {V.EXPECTED_POSTPROCESSED_MEAN} and std "
    f"{V.EXPECTED_POSTPROCESSED_STD} ({V.RELATIVE_TOLERANCE:.0%} relative tolerance; the tiny raw "
    f"mean has an absolute tolerance of {V.EMBEDDING_MEAN_TOLERANCE:.3g}, see "
    "vggish/weights/verify.py). Prints the figures and exits with status 1 if any check fails. "
    "Without PCA parameters the postprocessed checks are skipped.",
    width=95,
)

EPILOG = f"""\
examples:
  vggish verify                                       the default weights
  vggish verify --weights weights/vggish.safetensors
  vggish verify --weights random                      fails: random weights are not Google's

default weights: {default_weights_path()}"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_weights_arg(p)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")


def run(args: argparse.Namespace) -> int:
    """Prints the smoke test's table; returns 0 when every check passes, else 1."""
    from vggish.network.loader import load_model

    weights = weights_arg(args)
    model = load_model(weights, device=args.device, backend="torch")
    result = V.smoke_test(model)
    info = model.weights_info
    where = weights or default_weights_path()
    print(f"weights: {where} (source {info.get('source', '?')}, sha256 {info.get('sha256', '?')})")
    print(result.format())
    return 0 if result.ok else 1
