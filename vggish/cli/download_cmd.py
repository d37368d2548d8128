"""``vggish download``: fetch Google's files, check them, convert them, run the smoke test."""

from __future__ import annotations

import argparse
from pathlib import Path

from vggish.weights.download import OFFICIAL_FILES, DownloadError
from vggish.weights.location import OFFICIAL_CHECKPOINT_NAME, OFFICIAL_PCA_NAME, default_weights_dir

DESCRIPTION = """\
Download Google's official VGGish checkpoint and PCA parameters, check their MD5s, convert them
to vggish.safetensors in the same folder, and run Google's smoke test on the result. A download
goes to a temporary file and is moved into place only when it verifies; failed transfers are
retried, and files already in place that verify are not downloaded again. Needs internet access.

files:
""" + "\n".join(f"  {f.url}  (md5 {f.md5})" for f in OFFICIAL_FILES)

EPILOG = f"""\
examples:
  vggish download                         into the default folder
  vggish download --dir ~/models/vggish   into another folder
  vggish download --no-progress           no progress bars (logs, CI)

default folder: {default_weights_dir()}"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder for the downloads and vggish.safetensors (default: see below)",
    )
    p.add_argument("--no-progress", action="store_true", help="do not draw progress bars")


def run(args: argparse.Namespace) -> int:
    from vggish.weights.install import install_official

    directory = default_weights_dir() if args.dir is None else args.dir.expanduser()
    try:
        installed = install_official(directory, progress=not args.no_progress)
    except DownloadError as e:
        raise DownloadError(
            f"{e}; instead, put Google's {OFFICIAL_CHECKPOINT_NAME} and {OFFICIAL_PCA_NAME} in "
            f"{directory} (converted on first use), or use --weights random for demo weights"
        ) from e
    for file in (installed.checkpoint, installed.pca):
        print(f"{file.path}: {file.size} bytes, md5 {file.md5}, sha256 {file.sha256}")
    print(installed.smoke.format())
    print(f"wrote {installed.weights}")
    return 0
