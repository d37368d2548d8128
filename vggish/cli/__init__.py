"""Command-line interface: ``vggish COMMAND ...`` (also ``python -m vggish``). Each command is a
module with ``DESCRIPTION``, ``EPILOG``, ``add_arguments(parser)`` and ``run(args) -> int``; only
the chosen one is imported, so ``--version`` and ``--help`` start without PyTorch.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import platform
import sys
import warnings
from collections.abc import Sequence

from vggish.errors import NotFoundError, one_line
from vggish.version import __version__

# name -> (module in vggish.cli, one-line help), in the order ``--help`` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "embed": ("embed", "embed one audio file into an .npz"),
    "extract": ("extract_cmd", "embed many audio files into Parquet, .npz or TFRecord (parallel, resumable)"),
    "serve": ("serve_cmd", "run the REST service"),
    "fad": ("fad_cmd", "Fréchet Audio Distance between two sets of audio (default or Google's semantics)"),
    "heads": ("heads_cmd", "train and apply classifier heads over embeddings"),
    "index": ("index_cmd", "collections of clips: add audio, find the most similar sounds"),
    "convert": ("convert_cmd", "convert a TensorFlow checkpoint or .pth into a weights file"),
    "download": ("download_cmd", "download, verify and convert Google's official weights"),
    "verify": ("verify_cmd", "run Google's smoke test on the weights"),
    "export-onnx": ("export_onnx_cmd", "export the network as an ONNX graph"),
}

EXAMPLES = """\
examples:
  vggish embed dog.wav --output dog.npz              embeddings + timestamps (+ 8-bit PCA)
  vggish embed talk.mp3 --output talk.npz --hop 0.48 --pad
  vggish extract corpus/ --output features/          a whole folder to Parquet, resumable
  vggish serve                                       the REST service on 127.0.0.1:8000
  vggish serve --weights random                      the same with demo weights (no download)
  vggish heads train --name kinds clips/             a classifier head from clips/<label>/*
  vggish index add sounds clips/                     a collection to search: vggish index search sounds q.wav
  vggish convert vggish_model.ckpt --pca vggish_pca_params.npz --output weights/vggish.safetensors
  vggish download                                    fetch, verify and convert Google's files
  vggish verify                                      Google's smoke test on the installed weights
  vggish COMMAND --help                              every option of a command, with examples
"""


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The top-level parser; the options of the command named in ``argv`` (only) are added."""
    parser = argparse.ArgumentParser(
        prog="vggish",
        description="VGGish audio embeddings (Google's AudioSet model) in PyTorch.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--version", action="version", version=version_line(), help="print versions and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        if name != chosen:
            subparsers.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(f"vggish.cli.{module_name}")
        p = subparsers.add_parser(
            name,
            help=help_text,
            description=module.DESCRIPTION,
            epilog=module.EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        if hasattr(module, "run"):
            p.set_defaults(func=module.run)
    return parser


def version_line() -> str:
    """``vggish X.Y.Z (torch ..., numpy ..., Python ...)``, from package metadata (no import)."""
    versions = []
    for name in ("torch", "numpy"):
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} not installed")
    return f"vggish {__version__} ({', '.join(versions)}, Python {platform.python_version()})"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="vggish: %(levelname)s: %(message)s",
    )
    warnings.formatwarning = _warning_line
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 1
    try:
        status: int = args.func(args)
    except KeyboardInterrupt:
        print("vggish: interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError, NotFoundError) as e:
        print(f"vggish: error: {one_line(e)}", file=sys.stderr)
        return 1
    return status


def _warning_line(message: Warning | str, *args: object, **kwargs: object) -> str:
    """A library warning as one line, without Python's file name and source line."""
    return f"vggish: warning: {' '.join(str(message).split())}\n"


if __name__ == "__main__":
    sys.exit(main())
