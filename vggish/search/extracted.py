"""Items from a ``vggish extract`` output folder: Parquet parts or one ``.npz`` per input.

Each input becomes an item with its segment embeddings and timestamps; its id is its path below
the inputs' common folder (Parquet rows keep the audio file's path, so ``dogs/bark.wav``; an
``.npz`` keeps the tree with the audio extension replaced, so ``dogs/bark``). The folder's
``_manifest.json`` says what made the embeddings (weights SHA-256, hop, pad, resampler).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vggish.heads import FeatureSpec
from vggish.search.base import Item

MANIFEST = "_manifest.json"  # vggish.extract.outputs.MANIFEST_NAME


def read_features(folder: Path) -> FeatureSpec:
    """What made the folder's embeddings, from its manifest (unknown fields stay None).

    Raises:
        ValueError: no manifest: not a ``vggish extract`` folder.
    """
    path = folder / MANIFEST
    if not path.is_file():
        raise ValueError(f"{folder} has no {MANIFEST}: give a folder written by `vggish extract`")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    return FeatureSpec(
        manifest.get("weights_sha256") or None,
        manifest.get("hop_seconds"),
        manifest.get("pad"),
        manifest.get("resampler"),
    )


def read_items(folder: Path) -> Iterator[Item]:
    """Every input of the folder as an item, part by part (Parquet) or file by file (npz).

    Raises:
        ValueError: a folder with neither Parquet parts nor .npz files.
    """
    parts = sorted(folder.glob("part-*.parquet"))
    if parts:
        yield from _parquet_items(parts)
        return
    files = sorted(p for p in folder.rglob("*.npz") if not p.name.startswith((".", "_")))
    if not files:
        raise ValueError(f"{folder} holds no part-*.parquet and no .npz: nothing to add")
    for path in files:
        with np.load(path) as data:
            item_id = path.relative_to(folder).with_suffix("").as_posix()
            yield Item.of(item_id, data["embedding"], data["timestamps"])


def _parquet_items(parts: list[Path]) -> Iterator[Item]:
    import pyarrow.parquet as pq

    paths = set()
    for part in parts:
        paths.update(pq.read_table(part, columns=["path"]).column("path").unique().to_pylist())
    root = os.path.commonpath([os.path.dirname(p) for p in paths])
    for part in parts:
        table = pq.read_table(part, columns=["path", "start", "end", "embedding"])
        names = table.column("path").to_numpy(zero_copy_only=False)
        x = np.asarray(table.column("embedding").combine_chunks().flatten(), np.float32).reshape(
            len(names), -1
        )
        times = np.stack([table.column("start").to_numpy(), table.column("end").to_numpy()], axis=1)
        cuts = np.flatnonzero(names[1:] != names[:-1]) + 1
        for rows in np.split(np.arange(len(names)), cuts):
            if len(rows):
                item_id = Path(os.path.relpath(names[rows[0]], root)).as_posix()
                yield Item.of(item_id, x[rows], times[rows])
