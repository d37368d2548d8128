"""``vggish heads train|classify|list|delete|export|import``: classifier heads, without a server,
in the service's store, each clip embedded as the service does (the mean of its examples)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import numpy as np

from vggish import params
from vggish.cli.runtime_args import (
    add_audio_args,
    add_runtime_args,
    add_store_args,
    add_weights_arg,
    embed_options,
    load_runtime,
    store_location,
    weights_arg,
)
from vggish.errors import one_line, plural
from vggish.features.logmel import example_timestamps
from vggish.fileio import sha256_file, write_bytes_atomic
from vggish.heads import (
    MAX_HEADER_BYTES,
    FeatureSpec,
    Head,
    HeadKind,
    check_compatible,
    clip_mean,
    from_safetensors,
    validate_name,
)
from vggish.heads.store import BaseHeadStore, HeadRecord, open_store
from vggish.pipeline.options import EmbedOptions

if TYPE_CHECKING:
    from vggish.network.runtime import Runtime
    from vggish.pipeline.driver import EmbeddingResult
from vggish.weights.location import RANDOM, default_weights_path

MAX_HEAD_FILE_BYTES = MAX_HEADER_BYTES + (8 << 20)  # a header and far more tensors than a head holds

EPILOG = """\
examples:
  vggish heads train --name kinds clips/          clips/speech/*.wav, clips/alert/*.ogg, ...
  vggish heads classify --name kinds new.wav other.flac --top-k 2
  vggish heads classify --name kinds *.wav --json --frames > labels.jsonl
  vggish heads export --name kinds -o kinds.safetensors
  vggish heads import --name kinds kinds.safetensors --database-url postgresql://u:pw@db/vggish
  vggish heads list
  vggish heads delete --name kinds

Files that fail to classify are reported and the others classified; the exit status is then 2."""


DESCRIPTION = "Small classifiers over clip embeddings (the mean of a clip's examples)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = actions.add_parser("train", help="train a head on DIR/<label>/<audio files>")
    t.add_argument("directory", metavar="DIR", help="one sub-folder per label, audio files inside")
    t.add_argument("--kind", choices=get_args(HeadKind), default="linear", help="default: linear")
    t.add_argument("--replace", action="store_true", help="replace a head of the same name")
    t.set_defaults(func=run_train)
    c = actions.add_parser("classify", help="label audio files with a head")
    c.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    c.add_argument("--top-k", type=int, default=None, metavar="K", help="print the best K labels")
    c.add_argument("--json", action="store_true", help="one JSON object per file and line")
    c.add_argument("--frames", action="store_true", help="also label each 0.96 s example")
    c.add_argument("--force", action="store_true", help="classify even with other weights than the head's")
    c.set_defaults(func=run_classify)
    lst = actions.add_parser("list", help="list the stored heads")
    lst.set_defaults(func=run_list)
    d = actions.add_parser("delete", help="delete a head")
    d.set_defaults(func=run_delete)
    e = actions.add_parser("export", help="write a head to a .safetensors file")
    e.add_argument("-o", "--output", required=True, metavar="FILE", help="the file to write ('-': stdout)")
    e.set_defaults(func=run_export)
    i = actions.add_parser("import", help="store a head from a .safetensors file")
    i.add_argument(
        "file", metavar="FILE", help="a file written by `heads export` or GET /v1/heads/NAME/export"
    )
    i.add_argument("--replace", action="store_true", help="replace a head of the same name")
    i.add_argument(
        "--force", action="store_true", help="import a head trained on other weights than --weights"
    )
    i.add_argument(
        "--weights",
        metavar="W",
        help="the weights it will be used with, checked against the head's (default: the official weights)",
    )
    i.set_defaults(func=run_import)
    for sub in (t, c, lst, d, e, i):
        add_store_args(sub)
    for sub in (t, c, d, e, i):
        sub.add_argument("--name", required=True, help="the head's name (1-64 of A-Z a-z 0-9 _ . -)")
    for sub in (t, c):
        add_weights_arg(sub)
        add_audio_args(sub, pad=True)
        add_runtime_args(sub)
        sub.set_defaults(no_postprocess=True)  # a head scores raw embeddings


def _store(args: argparse.Namespace) -> BaseHeadStore:
    return open_store(store_location(args))


def embed_files(
    model: Runtime, files: Sequence[str], options: EmbedOptions
) -> Iterator[tuple[int, EmbeddingResult | str]]:
    """Every file's embeddings (packed together into full batches), or why it failed, in file order."""
    from vggish.pipeline.driver import embed_each

    done: dict[int, EmbeddingResult | str] = {}
    following = 0
    for index, outcome in embed_each(model, files, options):
        if isinstance(outcome, Exception):
            done[index] = one_line(outcome)
        elif outcome.embeddings.shape[0] == 0:
            done[index] = (
                f"{outcome.duration:.3f} s is shorter than one example ({params.EXAMPLE_SPAN_SECONDS} s); "
                "drop --no-pad to zero-pad it to one"
            )
        else:
            done[index] = outcome
        while following in done:  # files without an example complete early: keep the order
            yield following, done.pop(following)
            following += 1


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


def _warn(message: str | None) -> None:
    if message:
        print(f"vggish: warning: {message}", file=sys.stderr)


def run_train(args: argparse.Namespace) -> int:
    """Trains ``args.name`` on ``args.directory``'s labelled folders; any failed file stops it."""
    from vggish.heads.training import train

    validate_name(args.name)
    store = _free_store(args)
    pairs = _labelled_files(Path(args.directory))
    options = embed_options(args)
    model = load_runtime(args)
    outcomes = list(embed_files(model, [str(path) for path, _ in pairs], options))
    failed = [f"{pairs[i][0]}: {why}" for i, why in outcomes if isinstance(why, str)]
    if failed:
        more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
        listed = "; ".join(failed[:3])
        raise ValueError(f"{len(failed)} of {plural(len(pairs), 'clip')} failed: {listed}{more}")
    x = np.stack([clip_mean(r.embeddings) for _, r in outcomes if not isinstance(r, str)])
    features = FeatureSpec.for_model(model, options)
    head, metrics = train(x, [label for _, label in pairs], kind=args.kind, features=features)
    record = store.save(args.name, head, replace=args.replace)
    cv = "n/a (a class has one clip)" if metrics.cv_accuracy is None else f"{metrics.cv_accuracy:.3f}"
    print(
        f"trained {record.name} v{record.version} ({record.kind}) on {plural(record.num_examples, 'clip')}, "
        f"classes {', '.join(record.classes)}: cv accuracy {cv} over {plural(metrics.folds, 'fold')}, "
        f"train accuracy {metrics.train_accuracy:.3f}; features: {features.describe()}"
    )
    return 0


def _free_store(args: argparse.Namespace) -> BaseHeadStore:
    """The store, where no head is named ``args.name`` (or --replace)."""
    store = _store(args)
    if not args.replace:
        store.check_free(args.name, "--replace")
    return store


def run_classify(args: argparse.Namespace) -> int:
    """Prints each file's labels (best first), or one JSON line per file (exit 2 when any failed)."""
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top-k must be at least 1; got {args.top_k}")
    record, head = _store(args).load(args.name)
    options = embed_options(args)
    model = load_runtime(args)
    _warn(check_compatible(record.features, FeatureSpec.for_model(model, options), args.force, args.name))
    failed = 0
    for index, outcome in embed_files(model, args.files, options):
        path = args.files[index]
        if isinstance(outcome, str):
            failed += 1
            print(f"vggish: error: {path}: {outcome}", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": path, "error": outcome}), flush=True)
            continue
        labels = _labels(head, outcome, options, args.top_k, args.frames)
        print(json.dumps({"file": path, **labels}) if args.json else _text(path, labels), flush=True)
    if failed:
        print(f"vggish: {failed} of {plural(len(args.files), 'file')} failed", file=sys.stderr)
    return 2 if failed else 0


def _rounded(labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**x, "score": round(x["score"], 6)} for x in labels]


def _labels(
    head: Head, result: EmbeddingResult, options: EmbedOptions, top_k: int | None, frames: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "duration": round(result.duration, 6),
        "labels": _rounded(head.top_labels(clip_mean(result.embeddings)[None], top_k)[0]),
    }
    if frames:
        spans = example_timestamps(result.embeddings.shape[0], options.hop_seconds)
        out["frames"] = [
            {"start": round(float(a), 6), "end": round(float(b), 6), "labels": _rounded(row)}
            for (a, b), row in zip(spans, head.top_labels(result.embeddings, top_k), strict=True)
        ]
    return out


def _text(path: str, labels: dict[str, Any]) -> str:
    def pairs(items: list[dict[str, Any]]) -> str:
        return ", ".join(f"{s['label']} {s['score']:.4f}" for s in items)

    frames = [f"  {f['start']:.2f}-{f['end']:.2f} s: {pairs(f['labels'])}" for f in labels.get("frames", [])]
    return "\n".join([f"{path}: {pairs(labels['labels'])}", *frames])


def run_list(args: argparse.Namespace) -> int:
    store = _store(args)
    records = store.list()
    for r in records:
        print(
            f"{r.name}\tv{r.version}\t{r.kind}\t{plural(r.num_examples, 'clip')}\t{','.join(r.classes)}\t"
            f"{r.features.describe()}"
        )
    if not records:
        print(f"no heads in {store.location}", file=sys.stderr)
    return 0


def run_delete(args: argparse.Namespace) -> int:
    _store(args).delete(args.name)
    print(f"deleted {args.name}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    store = _store(args)
    record = store.get(args.name)
    data = store.export(args.name)
    if args.output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return 0
    output = Path(args.output)
    if not output.parent.is_dir():
        raise FileNotFoundError(f"the output folder {output.parent} does not exist; create it first")
    write_bytes_atomic(output, data)
    print(f"wrote {output}: {_describe(record)}")
    return 0


def _describe(record: HeadRecord) -> str:
    return (
        f"head {record.name} v{record.version} ({record.kind}, {len(record.classes)} classes; "
        f"features: {record.features.describe()})"
    )


def run_import(args: argparse.Namespace) -> int:
    """Stores a validated head file as ``args.name``, refusing one trained on other weights."""
    validate_name(args.name)
    path = Path(args.file)
    size = path.stat().st_size  # FileNotFoundError names the path
    if size > MAX_HEAD_FILE_BYTES:
        raise ValueError(f"{path} has {size} bytes; a head file has at most {MAX_HEAD_FILE_BYTES}")
    head = from_safetensors(path.read_bytes())
    sha = _weights_sha256(weights_arg(args))
    if sha is None:
        _warn(f"no weights at {default_weights_path()} to check the head against; give --weights")
    else:
        _warn(check_compatible(head.features, FeatureSpec(weights_sha256=sha), args.force, args.name))
    record = _free_store(args).save(args.name, head, replace=args.replace)
    print(f"imported {_describe(record)}")
    return 0


def _weights_sha256(weights: str | None) -> str | None:
    """The SHA-256 of the weights a head will be used with; None when none is installed."""
    if weights == RANDOM:
        return RANDOM
    path = Path(weights) if weights else default_weights_path()
    if not path.is_file():
        if weights:
            raise FileNotFoundError(f"no such weights file: {weights}")
        return None
    return sha256_file(path)
