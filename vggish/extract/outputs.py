"""The output folder: what it was made with (``_manifest.json``), what is complete, the writers.
A part is written, its sidecar ``_parts/part-N.json`` (its inputs) committed, then the part synced
and renamed into place, so a re-run after ``kill -9`` re-does exactly the inputs not in a part.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np

from vggish import params
from vggish.extract.decode import Failure
from vggish.extract.inputs import InputFile
from vggish.fileio import atomic_output, write_bytes_atomic
from vggish.pipeline.driver import EmbeddingResult, write_npz

OutputFormat = Literal["parquet", "npz", "tfrecord"]

MANIFEST_NAME = "_manifest.json"
FAILURES_NAME = "_failures.jsonl"
SUMMARY_NAME = "_summary.json"
PARTS_DIR = "_parts"
MANIFEST_VERSION = 1
_EXTENSIONS: dict[str, str] = {"parquet": ".parquet", "tfrecord": ".tfrecord"}
_PART = re.compile(r"^part-(\d{5,})\.(parquet|tfrecord|json)$")


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8")


def prepare(root: Path, settings: Mapping[str, Any]) -> None:
    """Creates ``root`` or checks that it was made with the same settings (else ValueError);
    clears temporary files."""
    manifest = root / MANIFEST_NAME
    wanted = {"manifest_version": MANIFEST_VERSION, **settings}
    if root.is_dir() and any(not _is_temporary(p.name) for p in root.iterdir()):
        if not manifest.is_file():
            raise ValueError(
                f"{root} is not empty and was not made by `vggish extract`; use a new --output or empty it"
            )
        found = json.loads(manifest.read_text(encoding="utf-8"))
        changed = [f"{k}: {found.get(k)!r} -> {v!r}" for k, v in wanted.items() if found.get(k) != v]
        if changed:
            raise ValueError(
                f"{root} was made with other settings ({'; '.join(changed)}); "
                "to resume, rerun with the same ones, else use a new --output or delete it"
            )
    else:
        root.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(manifest, _json_bytes(wanted))
    _remove_temporary(root)


def _remove_temporary(root: Path) -> None:
    for folder, _, names in os.walk(root):
        for name in names:
            if _is_temporary(name):
                os.unlink(os.path.join(folder, name))


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def completed_inputs(root: Path, fmt: OutputFormat, inputs: Iterable[InputFile]) -> set[str]:
    """The inputs whose results are already committed in ``root`` (after :func:`prepare`)."""
    if fmt == "npz":
        return {item.path for item in inputs if npz_path(root, item).is_file()}
    return committed_parts(root)[0]


def committed_parts(root: Path) -> tuple[set[str], int]:
    """Inputs in committed parts, and the next free part number; drops sidecars without a part."""
    sidecars, parts = _numbered(root / PARTS_DIR), _numbered(root)
    done: set[str] = set()
    for number, sidecar in sidecars.items():
        if number in parts:
            done.update(json.loads(sidecar.read_text(encoding="utf-8"))["inputs"])
        else:
            sidecar.unlink()  # crashed between committing the sidecar and renaming the part
    orphans = sorted(p.name for n, p in parts.items() if n not in sidecars)
    if orphans:
        raise RuntimeError(
            f"{root} holds parts without their {PARTS_DIR}/ record ({', '.join(orphans[:3])}); "
            "use a new --output or delete it"
        )
    return done, max([*sidecars, *parts], default=-1) + 1


def _numbered(folder: Path) -> dict[int, Path]:
    matches = ((_PART.match(path.name), path) for path in folder.iterdir()) if folder.is_dir() else ()
    return {int(match[1]): path for match, path in matches if match}


def npz_path(root: Path, item: InputFile) -> Path:
    return root / Path(item.relative).with_suffix(".npz")


class FailureLog:
    """``_failures.jsonl``: one ``{"path", "error"}`` line per failed input of this run, flushed."""

    def __init__(self, root: Path) -> None:
        self._file = open(root / FAILURES_NAME, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def add(self, failure: Failure) -> None:
        self._file.write(json.dumps({"path": failure.path, "error": failure.error}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class PartWriter:
    """Parquet or TFRecord parts of about ``rows_per_part`` rows; each input's rows in one part."""

    def __init__(self, root: Path, fmt: OutputFormat, rows_per_part: int) -> None:
        if fmt not in _EXTENSIONS:
            raise ValueError(f"PartWriter writes parquet or tfrecord, not {fmt!r}")
        self._root, self._fmt, self._limit = root, fmt, rows_per_part
        self._next = committed_parts(root)[1]
        self._pending: list[EmbeddingResult] = []
        self._rows = 0
        (root / PARTS_DIR).mkdir(exist_ok=True)

    def add(self, item: EmbeddingResult) -> None:
        self._pending.append(item)
        self._rows += item.embeddings.shape[0]
        if self._rows >= self._limit:
            self.commit()

    def commit(self) -> None:
        if not self._pending:
            return
        name = f"part-{self._next:05d}{_EXTENSIONS[self._fmt]}"
        sidecar = {"part": name, "rows": self._rows, "inputs": [e.name for e in self._pending]}
        with atomic_output(self._root / name) as tmp:
            with open(tmp, "xb") as f:
                (_write_parquet if self._fmt == "parquet" else _write_tfrecord)(f, self._pending)
            write_bytes_atomic(self._root / PARTS_DIR / f"part-{self._next:05d}.json", _json_bytes(sidecar))
        _sync_folder(self._root)
        self._next += 1
        self._pending, self._rows = [], 0

    def close(self) -> None:
        self.commit()


class NpzWriter:
    """One ``.npz`` per input (the keys of ``vggish embed``), mirroring the input tree."""

    def __init__(self, paths: Mapping[str, Path]) -> None:
        self._paths = paths

    def add(self, item: EmbeddingResult) -> None:
        assert item.name is not None
        path = self._paths[item.name]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_npz(path, item)

    def close(self) -> None:
        """Nothing is buffered."""


def npz_paths(root: Path, inputs: Iterable[InputFile]) -> dict[str, Path]:
    """Each input's .npz, by input path (ValueError: two inputs would write the same file)."""
    paths: dict[str, Path] = {}
    seen: dict[Path, str] = {}
    clashes = []
    for item in inputs:
        target = paths[item.path] = npz_path(root, item)
        if target in seen:
            clashes.append(f"{seen[target]} and {item.path}")
        seen[target] = item.path
    if clashes:
        raise ValueError(
            f"inputs would share an .npz name ({', '.join(clashes[:3])}); use --format parquet "
            "or give them distinct names"
        )
    return paths


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def parquet_table(items: list[EmbeddingResult]) -> Any:
    """The rows of ``items`` as a pyarrow Table: path, index, start, end, embedding, postprocessed."""
    import pyarrow as pa

    counts = [e.embeddings.shape[0] for e in items]
    size = params.EMBEDDING_SIZE
    times = np.concatenate([e.timestamps for e in items])
    columns = {
        "path": pa.array([e.name for e, n in zip(items, counts, strict=True) for _ in range(n)]),
        "index": pa.array(np.concatenate([np.arange(n, dtype=np.int32) for n in counts])),
        "start": pa.array(times[:, 0]),
        "end": pa.array(times[:, 1]),
        "embedding": pa.FixedSizeListArray.from_arrays(
            pa.array(np.concatenate([e.embeddings for e in items]).reshape(-1), pa.float32()), size
        ),
    }
    posts = [e.postprocessed for e in items]
    if all(p is not None for p in posts):
        flat = np.concatenate([p for p in posts if p is not None]).reshape(-1)
        columns["postprocessed"] = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.uint8()), size)
    return pa.table(columns)


def _write_parquet(f: BinaryIO, items: list[EmbeddingResult]) -> None:
    import pyarrow.parquet as pq

    pq.write_table(parquet_table(items), f)


def _write_tfrecord(f: BinaryIO, items: list[EmbeddingResult]) -> None:
    from vggish.extract.tfrecord import sequence_example, tfrecord

    for e in items:
        assert e.postprocessed is not None  # checked before the run: tfrecord needs PCA
        assert e.name is not None
        end = float(e.timestamps[-1, 1])
        f.write(tfrecord(sequence_example(Path(e.name).stem, e.name, 0.0, end, e.postprocessed)))


def write_summary(root: Path, summary: Mapping[str, Any]) -> None:
    write_bytes_atomic(root / SUMMARY_NAME, _json_bytes(dict(summary)))
