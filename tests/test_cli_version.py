"""``vggish --version``: the package's version and the runtime's, on stdout, exit status 0."""

from __future__ import annotations

import importlib.metadata
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vggish
from vggish.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_version_names_vggish_torch_numpy_and_python(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out, err = capsys.readouterr()
    expected = (
        f"vggish {vggish.__version__} (torch {torch.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()})"
    )
    assert out == expected + "\n" and err == ""


@pytest.mark.slow
def test_version_from_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vggish", "--version"], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"vggish {vggish.__version__} (torch ")


def test_package_version_is_pyproject_version() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]$', pyproject, re.MULTILINE)  # one source: vggish/version.py
    assert 'version = { attr = "vggish.version.__version__" }' in pyproject
    assert importlib.metadata.version("vggish") == vggish.__version__  # what pip installed


def test_licence_files_are_in_the_repository_and_the_package_metadata() -> None:
    licence = (REPO / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in licence
    notice = (REPO / "NOTICE").read_text()
    assert "research/audioset/vggish" in notice and "weights/README.md" in notice
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'license = "Apache-2.0"' in pyproject and 'license-files = ["LICENSE", "NOTICE"]' in pyproject


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["serve", "--help"], ["heads", "list", "-h"]])
def test_version_and_help_start_without_pytorch(argv: list[str]) -> None:
    """Printing a version or a command's options imports neither PyTorch nor ONNX Runtime: only
    the module of the command asked for is imported, and it imports those where it runs."""
    code = (
        "import sys\nfrom vggish.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print(sorted({'torch', 'onnxruntime'} & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_cli_choices_are_the_librarys() -> None:
    """The flags' choices, kept in the CLI so that --help needs no PyTorch, are the library's."""
    from typing import get_args

    from vggish.audio.resample import ResamplerName
    from vggish.cli import runtime_args
    from vggish.network import runtime

    assert get_args(runtime.BackendName) == runtime_args.BACKENDS
    assert get_args(runtime.PrecisionName) == runtime_args.PRECISIONS
    assert get_args(ResamplerName) == runtime_args.RESAMPLERS
    assert (runtime_args.CPU_BATCH_SIZE, runtime_args.CUDA_BATCH_SIZE) == (
        runtime.CPU_BATCH_SIZE,
        runtime.CUDA_BATCH_SIZE,
    )
