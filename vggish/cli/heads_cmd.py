"""``vggish heads train|classify|list|delete``: classifier heads, without a server.

The CLI reads and writes the same database as the service (``DATA_DIR/heads.sqlite3``), and
computes each clip's embedding as the service does: the mean of its examples' embeddings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, get_args

import numpy as np

from vggish.heads import HeadKind, train, validate_name
from vggish.heads_store import HeadStore
from vggish.loader import load_model
from vggish.runtime import Runtime

DEFAULT_DATA_DIR = "data"  # the service's default VGGISH_DATA_DIR, relative to the working directory

EPILOG = """\
examples:
  vggish heads train --name kinds clips/          clips/speech/*.wav, clips/alert/*.ogg, ...
  vggish heads classify --name kinds new.wav other.flac --top-k 2
  vggish heads list
  vggish heads delete --name kinds"""


def register(subparsers: Any) -> None:
    """Adds the ``heads`` subcommand and its own subcommands."""
    p = subparsers.add_parser(
        "heads",
        help="train and apply classifier heads over embeddings",
        description="Small classifiers over clip embeddings (the mean of a clip's examples).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = actions.add_parser("train", help="train a head on DIR/<label>/<audio files>")
    t.add_argument("directory", metavar="DIR", help="one sub-folder per label, audio files inside")
    t.add_argument("--kind", choices=get_args(HeadKind), default="linear", help="default: linear")
    t.add_argument("--replace", action="store_true", help="replace a head of the same name")
    t.set_defaults(func=run_train)
    c = actions.add_parser("classify", help="label audio files with a head")
    c.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    c.add_argument("--top-k", type=int, default=None, metavar="K", help="print the best K labels")
    c.set_defaults(func=run_classify)
    lst = actions.add_parser("list", help="list the stored heads")
    lst.set_defaults(func=run_list)
    d = actions.add_parser("delete", help="delete a head")
    d.set_defaults(func=run_delete)
    for sub in (t, c, lst, d):
        sub.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="default: ./data")
    for sub in (t, c, d):
        sub.add_argument("--name", required=True, help="the head's name (1-64 of A-Z a-z 0-9 _ . -)")
    for sub in (t, c):
        sub.add_argument("--weights", metavar="W", help="VGGish weights file, or 'random'")
        sub.add_argument("--pad", action="store_true", help="zero-pad clips shorter than 0.975 s")


def clip_embedding(model: Runtime, path: Path, pad: bool) -> np.ndarray:
    """(128,) float32: the mean of the file's example embeddings.

    Raises:
        ValueError: the file is too short for an example (without ``pad``).
    """
    result = model.embed_file(str(path), pad=pad, postprocess=False)
    if result.embeddings.shape[0] == 0:
        raise ValueError(f"{path} is shorter than 0.975 s, so it has no example; use --pad")
    mean: np.ndarray = result.embeddings.mean(axis=0, dtype=np.float64).astype(np.float32)
    return mean


def _labelled_files(directory: Path) -> list[tuple[Path, str]]:
    if not directory.is_dir():
        raise FileNotFoundError(f"no such directory: {directory}")
    pairs = [
        (f, label_dir.name)
        for label_dir in sorted(p for p in directory.iterdir() if p.is_dir())
        for f in sorted(label_dir.iterdir())
        if f.is_file() and not f.name.startswith(".")
    ]
    if not pairs:
        raise ValueError(f"{directory} holds no <label>/<audio file>: make one sub-folder per label")
    return pairs


def run_train(args: argparse.Namespace) -> int:
    """Trains ``args.name`` on the labelled folders of ``args.directory`` and stores it."""
    validate_name(args.name)
    store = HeadStore(args.data_dir)
    pairs = _labelled_files(Path(args.directory))
    model = load_model(args.weights)
    x = np.stack([clip_embedding(model, path, args.pad) for path, _ in pairs])
    head, metrics = train(x, [label for _, label in pairs], kind=args.kind)
    record = store.save(args.name, head, replace=args.replace)
    cv = "n/a (a class has one clip)" if metrics.cv_accuracy is None else f"{metrics.cv_accuracy:.3f}"
    print(
        f"trained {record.name} v{record.version} ({record.kind}) on {record.num_examples} clips, "
        f"classes {', '.join(record.classes)}: cv accuracy {cv} over {metrics.folds} folds, "
        f"train accuracy {metrics.train_accuracy:.3f}"
    )
    return 0


def run_classify(args: argparse.Namespace) -> int:
    """Prints ``FILE: label score, ...`` (best first) for each file."""
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top-k must be at least 1; got {args.top_k}")
    _, head = HeadStore(args.data_dir).load(args.name)
    for name in args.files:
        if not Path(name).is_file():
            raise FileNotFoundError(f"no such input file: {name}")
    model = load_model(args.weights)
    for name in args.files:
        scores = head.scores(clip_embedding(model, Path(name), args.pad)[None])[0]
        order = sorted(range(len(head.classes)), key=lambda c: (-scores[c], c))[: args.top_k]
        print(f"{name}: " + ", ".join(f"{head.classes[c]} {scores[c]:.4f}" for c in order))
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Prints one line per stored head."""
    records = HeadStore(args.data_dir).list()
    for r in records:
        print(f"{r.name}\tv{r.version}\t{r.kind}\t{r.num_examples} clips\t{','.join(r.classes)}")
    if not records:
        print(f"no heads in {args.data_dir}", file=sys.stderr)
    return 0


def run_delete(args: argparse.Namespace) -> int:
    """Deletes ``args.name``."""
    HeadStore(args.data_dir).delete(args.name)
    print(f"deleted {args.name}")
    return 0
