"""``vggish index add|search|list|delete``: collections of clips to find similar sounds, without
a server.

The CLI reads and writes the same store as the service (``DATA_DIR/search.sqlite3``, or the
PostgreSQL database of ``--database-url`` / ``VGGISH_DATABASE_URL``). ``add`` embeds files and
folders (each file an item named by its path below their common folder) or takes a ``vggish
extract`` output folder (``--from``); ``search`` embeds one query file, or takes a stored item's
id (``--id``). As over HTTP, short clips are zero-padded to one example by default, and a
collection refuses other weights or front-end settings than its own unless ``--force``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from vggish.cli.runtime_args import (
    add_audio_args,
    add_runtime_args,
    add_store_args,
    add_weights_arg,
    load_runtime,
    store_location,
)
from vggish.settings import load_settings

if TYPE_CHECKING:
    from vggish.heads import FeatureSpec
    from vggish.network.runtime import Runtime
    from vggish.pipeline.options import EmbedOptions
    from vggish.search import BaseCollectionStore, Item, Match

ADD_BATCH = 256  # items written per transaction

DESCRIPTION = "Collections of clips, searched for the most similar ones (cosine of VGGish embeddings)."
EPILOG = """\
examples:
  vggish index add sounds clips/                     every audio file below clips/ (ids: a/b.wav)
  vggish index add sounds --from features/           the output folder of `vggish extract` (Parquet or npz)
  vggish index search sounds query.wav --k 5
  vggish index search sounds query.wav --level segment --json
  vggish index search sounds dogs/bark.wav --id      like a stored item (itself left out)
  vggish index list
  vggish index delete sounds                         the collection (--item ID: one item)

Files that fail to embed are reported and the others added; the exit status is then 2."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``index`` subcommand's arguments."""
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser("add", help="add audio files and folders (or --from an extract folder)")
    s = actions.add_parser("search", help="the items most similar to an audio file (or --id an item)")
    lst = actions.add_parser("list", help="list the collections")
    d = actions.add_parser("delete", help="delete a collection (or --item one of its items)")
    for sub in (a, s, d):
        sub.add_argument("name", metavar="NAME", help="the collection (1-64 of A-Z a-z 0-9 _ . -)")
    a.add_argument("paths", nargs="*", metavar="PATH", help="audio files and folders (searched recursively)")
    a.add_argument("--from", dest="source", metavar="DIR", help="a `vggish extract` output folder instead")
    s.add_argument("query", metavar="QUERY", help="an audio file (with --id: a stored item's id)")
    s.add_argument("--id", action="store_true", help="QUERY is the id of an item of the collection")
    s.add_argument("--k", type=int, default=10, metavar="K", help="results (default: 10)")
    s.add_argument("--level", choices=("clip", "segment"), default="clip", help="default: clip")
    s.add_argument("--json", action="store_true", help="one JSON object: the results, best first")
    d.add_argument("--item", metavar="ID", help="delete only this item")
    for sub, func in ((a, run_add), (s, run_search), (lst, run_list), (d, run_delete)):
        sub.set_defaults(func=func)
        add_store_args(sub)
    for sub in (a, s):
        sub.add_argument(
            "--force", action="store_true", help="even with other weights or settings than its own"
        )
        add_weights_arg(sub)
        add_audio_args(sub, pad=True)
        add_runtime_args(sub)


def _store(args: argparse.Namespace) -> BaseCollectionStore:
    from vggish.search import StoreLimits, open_collections

    s = load_settings()
    limits = StoreLimits(
        collections=s.search_max_collections,
        items=s.search_max_items,
        segments=s.search_max_segments,
        k=s.search_max_k,
        query_segments=s.search_max_query_segments,
    )
    return open_collections(store_location(args), limits, ef_search=s.search_ef_search)


def _options(args: argparse.Namespace) -> EmbedOptions:
    from vggish.pipeline.options import EmbedOptions

    return EmbedOptions(
        hop_seconds=args.hop,
        pad=args.pad,
        postprocess=False,
        resampler=args.resampler,
        batch_size=args.batch_size,
    )


def _warn(message: str | None) -> None:
    if message:
        print(f"vggish: warning: {message}", file=sys.stderr)


def _check(store: BaseCollectionStore, name: str, used: FeatureSpec, force: bool, must_exist: bool) -> None:
    """Refuses other features than the collection's before any audio is embedded."""
    from vggish.search import CollectionNotFoundError
    from vggish.search.base import check_features, validate_collection_name

    validate_collection_name(name)
    try:
        info = store.get(name)
    except CollectionNotFoundError:
        if must_exist:
            raise
        return
    _warn(check_features(info.features, used, force, name))


def run_add(args: argparse.Namespace) -> int:
    """Adds files and folders (embedded here) or an extract folder's embeddings, in batches."""
    from vggish.heads import FeatureSpec
    from vggish.search.extracted import read_features, read_items

    store = _store(args)
    if args.source:
        if args.paths:
            raise ValueError("give audio PATHs or --from DIR, not both")
        folder = Path(args.source)
        features = read_features(folder)
        _check(store, args.name, features, args.force, must_exist=False)
        added, failed = _add_batches(store, args, read_items(folder), features), 0
    else:
        if not args.paths:
            raise ValueError("give audio files or folders to add, or --from a `vggish extract` folder")
        options = _options(args)
        model = load_runtime(args)
        features = FeatureSpec.for_model(model, options)
        _check(store, args.name, features, args.force, must_exist=False)
        failures: list[str] = []
        added = _add_batches(store, args, _embedded(model, args.paths, options, failures), features)
        failed = len(failures)
    info = store.get(args.name)
    print(
        f"added {added} items to {info.name}: {info.items} items, {info.segments} segments; "
        f"{info.features.describe()}"
    )
    if failed:
        print(f"vggish: {failed} files failed", file=sys.stderr)
    return 2 if failed else 0


def _add_batches(
    store: BaseCollectionStore, args: argparse.Namespace, items: Iterator[Item], features: FeatureSpec
) -> int:
    batch: list[Item] = []
    added = 0
    for item in items:
        batch.append(item)
        if len(batch) == ADD_BATCH:
            _warn(store.add(args.name, batch, features, args.force).warning)
            added, batch = added + len(batch), []
    if batch:
        _warn(store.add(args.name, batch, features, args.force).warning)
        added += len(batch)
    if not added:
        raise ValueError("no item to add: every file failed")
    return added


def _embedded(model: Runtime, paths: list[str], options: EmbedOptions, failures: list[str]) -> Iterator[Item]:
    """Each file as an item (id: its path below the common folder); failures reported and listed."""
    from vggish.extract.inputs import find_inputs
    from vggish.pipeline.driver import embed_each
    from vggish.search import Item

    inputs = find_inputs(paths)
    for index, outcome in embed_each(model, [i.path for i in inputs], options):
        name = inputs[index].relative
        if isinstance(outcome, Exception):
            why = " ".join(str(outcome).split())
        elif outcome.embeddings.shape[0] == 0:
            why = f"{outcome.duration:.3f} s has no example; drop --no-pad to zero-pad it"
        else:
            yield Item.of(name, outcome.embeddings, outcome.timestamps)
            continue
        failures.append(name)
        print(f"vggish: error: {inputs[index].path}: {why}", file=sys.stderr)


def run_search(args: argparse.Namespace) -> int:
    """Prints the best matches of an audio file (or a stored item), best first."""
    from vggish.heads import FeatureSpec
    from vggish.search import Query

    store = _store(args)
    if args.id:
        matches = store.search(args.name, args.query, args.k, args.level)
    else:
        options = _options(args)
        model = load_runtime(args)
        _check(store, args.name, FeatureSpec.for_model(model, options), args.force, must_exist=True)
        store.limits.check_search(args.level, args.k)
        from vggish.pipeline.driver import embed_each

        ((_, result),) = list(embed_each(model, [args.query], options))
        if isinstance(result, Exception):
            raise result
        query = Query.segments(result.embeddings, result.timestamps) if len(result.embeddings) else None
        if query is None:
            raise ValueError(f"{args.query} is shorter than one example; drop --no-pad to zero-pad it")
        matches = store.search(args.name, query, args.k, args.level)
    if args.json:
        print(
            json.dumps({"collection": args.name, "level": args.level, "results": [_json(m) for m in matches]})
        )
    else:
        for m in matches:
            print(_text(m))
    return 0


def _json(m: Match) -> dict[str, object]:
    out: dict[str, object] = {"id": m.id, "score": round(m.score, 6)}
    if m.metadata is not None:
        out["metadata"] = m.metadata
    for key in ("segment", "query_segment"):
        seg = getattr(m, key)
        if seg is not None:
            out[key] = {"index": seg.index, "start": round(seg.start, 6), "end": round(seg.end, 6)}
    return out


def _text(m: Match) -> str:
    line = f"{m.score:.4f}\t{m.id}"
    if m.segment is not None:
        line += f"\t{m.segment.start:.2f}-{m.segment.end:.2f} s"
    if m.query_segment is not None:
        line += f" ~ query {m.query_segment.start:.2f}-{m.query_segment.end:.2f} s"
    return line


def run_list(args: argparse.Namespace) -> int:
    """One line per collection: name, items, segments, features."""
    store = _store(args)
    infos = store.list()
    for i in infos:
        print(f"{i.name}\t{i.items} items\t{i.segments} segments\t{i.features.describe()}")
    if not infos:
        print(f"no collections in {store.location}", file=sys.stderr)
    return 0


def run_delete(args: argparse.Namespace) -> int:
    """Deletes a collection, or one item of it."""
    store = _store(args)
    if args.item is None:
        store.delete(args.name)
        print(f"deleted {args.name}")
    else:
        store.delete_item(args.name, args.item)
        print(f"deleted {args.item} from {args.name}")
    return 0
