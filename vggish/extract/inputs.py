"""Inputs: files, folders (searched recursively) and ``@list.txt`` files -> the audio files to extract."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

# Extensions searched for in folders when no --glob is given (files named directly are always taken).
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".wma", ".webm"}
)


@dataclass(frozen=True)
class InputFile:
    """One audio file: its absolute ``path`` (the key of its rows and of resuming), and its path
    ``relative`` to the inputs' common folder."""

    path: str
    relative: str


def find_inputs(inputs: list[str], glob: str | None = None) -> list[InputFile]:
    """Expands files, folders and ``@FILE`` lists (one path a line, ``#`` comments) into sorted
    distinct audio files; ``glob`` matches names in folders (default: :data:`AUDIO_EXTENSIONS`)."""
    found: set[str] = set()
    for item in inputs:
        if item.startswith("@"):  # a listed file that is missing is a failure of that input, not of the run
            for path in _read_list(Path(item[1:])):
                found.update(_expand_path(path, glob) if os.path.isdir(path) else [os.path.abspath(path)])
        else:
            found.update(_expand_path(item, glob))
    if not found:
        what = f"matching --glob {glob!r}" if glob else "with an audio extension"
        raise ValueError(f"no audio files {what} in {' '.join(inputs)}; name files, folders or @list.txt")
    paths = sorted(found)
    root = os.path.commonpath([os.path.dirname(p) for p in paths])
    return [InputFile(p, Path(os.path.relpath(p, root)).as_posix()) for p in paths]


def _read_list(listing: Path) -> list[str]:
    if not listing.is_file():
        raise FileNotFoundError(f"no such list file: {listing}")
    lines = (line.strip() for line in listing.read_text(encoding="utf-8").splitlines())
    return [str(listing.parent / line) for line in lines if line and not line.startswith("#")]


def _expand_path(path: str, glob: str | None) -> list[str]:
    if os.path.isfile(path):
        return [os.path.abspath(path)]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no such input file or folder: {path}")
    files = []
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        for name in names:
            if glob is not None and not fnmatch.fnmatch(name, glob):
                continue
            if glob is None and os.path.splitext(name)[1].lower() not in AUDIO_EXTENSIONS:
                continue
            files.append(os.path.abspath(os.path.join(folder, name)))
    return files
