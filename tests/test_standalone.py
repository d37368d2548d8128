"""The repository stands alone: no code, test or build file names a path outside the checkout.

A clone with nothing beside it must pass ``make test`` (``.ci/run`` proves it by running the suite
in such a copy). This test catches the usual ways a file reaches out of the repository: a relative
path into a sibling folder, an absolute path on the development machine, and a ``Path(__file__)``
that climbs above the repository root.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED_DIRS = ("vggish", "app", "tests", "benchmarks", "scripts", ".ci")
SCANNED_FILES = ("Makefile", "pyproject.toml", "Dockerfile", ".dockerignore")
TEXT_SUFFIXES = {"", ".py", ".sh", ".md", ".toml", ".txt", ".json", ".cfg", ".ini", ".yml", ".yaml"}

# Built from pieces so that this file does not match its own patterns.
SIBLING = "sha" + "red"
HERE = "Path(__" + "file__)"
FORBIDDEN = {
    "a sibling folder of the checkout": re.compile(r"\.\./+" + SIBLING + r"\b"),
    "the shared reference folder": re.compile(SIBLING + r"/reference\b"),
    "a path on the development machine": re.compile(r"/" + "work" + r"/(?:main|wt-|" + SIBLING + ")"),
}
PARENTS_INDEX = re.compile(r"__file__\s*\)(?:\.resolve\(\))?\.parents\[(\d+)\]")
PARENT_CHAIN = re.compile(r"__file__\s*\)(?:\.resolve\(\))?((?:\.parent\b)+)")


def scanned_files() -> list[Path]:
    files = [REPO / name for name in SCANNED_FILES if (REPO / name).is_file()]
    for folder in SCANNED_DIRS:
        for path in sorted((REPO / folder).rglob("*")):
            if path.is_file() and path.suffix in TEXT_SUFFIXES and "__pycache__" not in path.parts:
                files.append(path)
    return files


def escapes(relative: Path, text: str) -> list[str]:
    """What in ``text`` (the contents of the file at ``relative`` in the repository) points outside it."""
    found = [f"{why}: {m.group(0)!r}" for why, pattern in FORBIDDEN.items() for m in pattern.finditer(text)]
    depth = len(relative.parts)  # Path(__file__).parents[depth - 1] is the repository root
    for m in PARENTS_INDEX.finditer(text):
        if int(m.group(1)) >= depth:
            found.append(f"a folder above the repository root: {m.group(0)!r}")
    for m in PARENT_CHAIN.finditer(text):
        if m.group(1).count(".parent") > depth:
            found.append(f"a folder above the repository root: {m.group(0)!r}")
    return found


def test_no_file_names_a_path_outside_the_repository() -> None:
    problems = []
    for path in scanned_files():
        relative = path.relative_to(REPO)
        for problem in escapes(relative, path.read_text(encoding="utf-8", errors="replace")):
            problems.append(f"{relative}: {problem}")
    assert problems == []


def test_some_files_are_scanned() -> None:
    names = {p.relative_to(REPO).as_posix() for p in scanned_files()}
    assert {"tests/conftest.py", "tests/test_download.py", "vggish/weights/download.py", "Makefile"} <= names


@pytest.mark.parametrize(
    ("relative", "text", "bad"),
    [
        ("tests/conftest.py", HERE + ".resolve().parents[1] / 'data'", False),
        ("tests/conftest.py", HERE + ".resolve().parents[2] / 'x'", True),
        ("tests/app/helpers.py", HERE + ".resolve().parents[2]", False),
        ("tests/app/helpers.py", HERE + ".parents[3]", True),
        ("vggish/weights.py", HERE + ".resolve().parent.parent", False),
        ("vggish/weights.py", HERE + ".resolve().parent.parent.parent", True),
        ("tests/x.py", "np.load('../" + SIBLING + "/reference/a.npz')", True),
        ("tests/x.py", "open('/" + "work/" + SIBLING + "/STYLE.md')", True),
        ("tests/x.py", "RemoteFile('../a.bin', ...)", False),
    ],
)
def test_the_check_catches_escapes(relative: str, text: str, bad: bool) -> None:
    assert bool(escapes(Path(relative), text)) is bad
