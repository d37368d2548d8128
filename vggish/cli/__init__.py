"""Command-line interface: ``vggish SUBCOMMAND ...`` (also ``python -m vggish``).

Each subcommand lives in its own module: ``NAME``, ``HELP``, ``DESCRIPTION``, ``EPILOG``,
``add_arguments(parser)`` and ``run(args) -> int`` (``heads``, with actions of its own, sets each
action's ``func`` in ``add_arguments``). Library errors (``ValueError`` and the kinds of
:mod:`vggish.errors`, ``RuntimeError``, ``OSError``) become one line on stderr and exit status 1;
nothing else is printed on failure.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import platform
import sys
from collections.abc import Sequence

from vggish.errors import NotFoundError

# Subcommand modules, in the order ``--help`` lists them.
_SUBCOMMANDS = (
    "embed",
    "extract_cmd",
    "serve_cmd",
    "heads_cmd",
    "convert_cmd",
    "download_cmd",
    "verify_cmd",
    "export_onnx_cmd",
)

EXAMPLES = """\
examples:
  vggish embed dog.wav --output dog.npz              embeddings + timestamps (+ 8-bit PCA)
  vggish embed talk.mp3 --output talk.npz --hop 0.48 --pad
  vggish extract corpus/ --output features/          a whole folder to Parquet, resumable
  vggish serve                                       the REST service on 127.0.0.1:8000
  vggish heads train --name kinds clips/             a classifier head from clips/<label>/*
  vggish convert vggish_model.ckpt --pca vggish_pca_params.npz --output weights/vggish.safetensors
  vggish download                                    fetch, verify and convert Google's files
  vggish verify                                      Google's smoke test on the installed weights
  vggish --version                                   versions of vggish, torch, numpy and Python
"""


def build_parser() -> argparse.ArgumentParser:
    """Builds the top-level parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="vggish",
        description="VGGish audio embeddings (Google's AudioSet model) in PyTorch.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--version", action=_Version, help="print versions and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMANDS:
        try:
            module = importlib.import_module(f"vggish.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"vggish.cli.{name}":
                raise
            continue
        p = subparsers.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.DESCRIPTION,
            epilog=module.EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        if hasattr(module, "run"):
            p.set_defaults(func=module.run)
    return parser


class _Version(argparse.Action):
    """``--version``: computed only when asked (it imports torch), then exit 0."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(version_line())
        parser.exit()


def version_line() -> str:
    """``vggish X.Y.Z (torch ..., numpy ..., Python ...)``: the versions a bug report needs."""
    import numpy
    import torch

    from vggish import __version__

    runtime = f"torch {torch.__version__}, numpy {numpy.__version__}, Python {platform.python_version()}"
    return f"vggish {__version__} ({runtime})"


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI and returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="vggish: %(levelname)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 1
    try:
        status: int = args.func(args)
    except KeyboardInterrupt:
        print("vggish: interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError, NotFoundError) as e:
        print(f"vggish: error: {_one_line(e)}", file=sys.stderr)
        return 1
    return status


def _one_line(error: BaseException) -> str:
    """The error's message on one line (chained causes are named, not dumped)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text


if __name__ == "__main__":
    sys.exit(main())
