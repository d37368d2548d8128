"""``vggish fad BACKGROUND EVAL``: the Fréchet Audio Distance between two sets of audio."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vggish.cli.runtime_args import add_runtime_args, add_weights_arg, positive_int, settings_of
from vggish.weights.location import default_weights_path

if TYPE_CHECKING:
    from vggish.fad import Mode, SetResult, SetStats
    from vggish.network.runtime import Runtime

DESCRIPTION = """\
Fréchet Audio Distance of EVAL from BACKGROUND: the distance between Gaussians fitted to the
VGGish embeddings of every example of every file of each set (lower: EVAL sounds more like BACKGROUND).

BACKGROUND and EVAL are each a folder (searched recursively for audio files), @list.txt (one path
a line), an audio file, or statistics saved by an earlier run (.npz). Save a set's statistics with
--save-stats-background / --save-stats-eval so that it is embedded once; statistics remember the
weights and the mode that made them, and other ones are refused unless --force.

Modes:
  (default)        the project's standard embeddings: any format and rate, mixed to mono,
                   resampled exactly, 0.96 s examples (what `vggish embed` gives)
  --compat google  exactly Google's frechet_audio_distance (create_embeddings_main with its
                   default flags): 16 kHz mono WAV only, loudness normalised to the peak, 1 s
                   windows every 0.5 s, statistics rounded to float32

Files that fail are listed on stderr and the others go on; the exit status is then 2."""

EPILOG = f"""\
examples:
  vggish fad background/ generated/
  vggish fad background/ generated/ --save-stats-background bg.npz     embed the background once
  vggish fad bg.npz generated-v2/ --json                              then reuse it
  vggish fad @bg.txt @eval.txt --compat google                        Google's numbers
  vggish fad bg.npz generated/ --contributions 10 --inf               which files, FAD-infinity

default weights: {default_weights_path()}
docs: docs/fad.md"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``fad`` subcommand's arguments."""
    p.add_argument("background", metavar="BACKGROUND", help="folder, @list.txt, audio file or stats .npz")
    p.add_argument("eval", metavar="EVAL", help="folder, @list.txt, audio file or stats .npz")
    add_weights_arg(p)
    p.add_argument("--compat", choices=("google",), help="google: Google's frechet_audio_distance semantics")
    p.add_argument("--save-stats-background", metavar="PATH.npz", help="save BACKGROUND's statistics there")
    p.add_argument("--save-stats-eval", metavar="PATH.npz", help="save EVAL's statistics there")
    p.add_argument("--json", action="store_true", help="print one JSON object (fad, each set's counts...)")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="processes, each with its own model and a share of the CPUs (default: 0, this process)",
    )
    p.add_argument("--force", action="store_true", help="compare statistics of other weights or modes")
    p.add_argument(
        "--contributions",
        type=positive_int,
        metavar="N",
        help="show the N evaluation files whose leaving out changes the FAD most (EVAL must be audio)",
    )
    p.add_argument(
        "--inf",
        action="store_true",
        help="also fadtk's FAD-infinity (EVAL must be audio; keeps its embeddings)",
    )
    p.add_argument("--glob", metavar="PATTERN", help="file names to take from folders, e.g. '*.wav'")
    add_runtime_args(p)


@dataclass
class _Set:
    """One of the two sets, as given and as computed."""

    label: str
    source: str
    save: str | None
    paths: list[str] | None = None  # audio files; None for saved statistics
    stats: SetStats | None = None
    result: SetResult | None = None


def run(args: argparse.Namespace) -> int:
    """Computes the FAD; 0 when every file was read, 2 when some failed."""
    from vggish.fad import load_stats

    mode: Mode = "google" if args.compat == "google" else "default"
    sets = [
        _Set("background", args.background, args.save_stats_background),
        _Set("eval", args.eval, args.save_stats_eval),
    ]
    _check_flags(args, sets)
    for s in sets:
        if _is_stats(s.source):
            s.stats = load_stats(s.source)
        else:
            from vggish.extract.inputs import find_inputs

            s.paths = [f.path for f in find_inputs([s.source], args.glob)]
    warnings = _check_saved(args, sets, mode)
    model = _load(args) if any(s.paths is not None for s in sets) else None
    if model is not None:
        warnings += _check_model(args, sets, model, mode)
    for s in sets:
        if s.paths is not None:
            assert model is not None
            _embed(args, s, model, mode)
    return _report(args, sets, warnings)


def _is_stats(source: str) -> bool:
    return source.lower().endswith(".npz") and not source.startswith("@") and not os.path.isdir(source)


def _check_flags(args: argparse.Namespace, sets: list[_Set]) -> None:
    """Refuses contradictory flags before any work."""
    if args.workers < 0:
        raise ValueError(f"--workers must be 0 or more; got {args.workers}")
    if args.precision not in (None, "fp32"):
        raise ValueError("FAD statistics are made in fp32 (Google's numbers); drop --precision")
    for s in sets:
        if s.save is None:
            continue
        if _is_stats(s.source):
            raise ValueError(f"--save-stats-{s.label}: {s.label.upper()} is already statistics ({s.source})")
        folder = Path(s.save).resolve().parent
        if not folder.is_dir():
            raise FileNotFoundError(f"--save-stats-{s.label}: no such folder {folder}")
    if (args.contributions or args.inf) and _is_stats(sets[1].source):
        raise ValueError("--contributions and --inf need EVAL as audio files, not saved statistics")


def _check_saved(args: argparse.Namespace, sets: list[_Set], mode: Mode) -> list[str]:
    """Saved statistics against each other and against the mode asked for (before any work)."""
    from vggish.errors import ConflictError
    from vggish.fad import check_same_origin

    warnings: list[str] = []
    saved = [s for s in sets if s.stats is not None]
    if len(saved) == 2:
        a, b = saved[0].stats, saved[1].stats
        assert a is not None and b is not None
        warning = check_same_origin(a, b, args.force, ("the background statistics", "the eval statistics"))
        warnings += [warning] if warning else []
    asked = args.compat is not None or len(saved) < 2
    for s in saved:
        assert s.stats is not None
        if asked and s.stats.mode != mode:
            message = f"{s.source} was made in mode {s.stats.mode}, but this run uses mode {mode}"
            if not args.force:
                raise ConflictError(f"{message}; use the same --compat for both sets, or force it (--force)")
            warnings.append(f"{message} (forced)")
    return warnings


def _check_model(args: argparse.Namespace, sets: list[_Set], model: Runtime, mode: Mode) -> list[str]:
    """Saved statistics against the weights about to embed the other set."""
    from vggish.errors import ConflictError

    sha = model.weights_info.get("sha256", "")
    warnings: list[str] = []
    for s in sets:
        if s.stats is not None and s.stats.weights_sha256 != sha:
            message = (
                f"{s.source} was made with weights {s.stats.weights_sha256[:12]}, but these are "
                f"{sha[:12]}: the distance would mean nothing"
            )
            if not args.force:
                raise ConflictError(f"{message}; use the same --weights, or force it (--force)")
            warnings.append(f"{message} (forced)")
    return warnings


def _load(args: argparse.Namespace) -> Runtime:
    from vggish.network.loader import load_model

    settings = settings_of(args)
    return load_model(settings.weights or None, **settings.load_kwargs())


def _embed(args: argparse.Namespace, s: _Set, model: Runtime, mode: Mode) -> None:
    from vggish.extract.progress import Progress
    from vggish.fad import embed_set, embed_set_parallel, save_stats

    assert s.paths is not None
    keep = s.label == "eval"
    per_file, embeddings = keep and bool(args.contributions), keep and args.inf
    progress = Progress(len(s.paths))
    try:
        if args.workers:
            settings = settings_of(args)

            def chunk_done(files: int, seconds: float, failed: int) -> None:
                for i in range(files):
                    progress.update(seconds if i == 0 else 0.0, failed=i < failed)

            s.result = embed_set_parallel(
                s.paths, mode, settings.weights or None, settings.load_kwargs(), args.workers,
                keep_per_file=per_file, keep_embeddings=embeddings, on_files=chunk_done,
            )  # fmt: skip
        else:
            s.result = embed_set(
                model, s.paths, mode, keep_per_file=per_file, keep_embeddings=embeddings,
                on_file=lambda seconds, failed: progress.update(seconds, failed),
            )  # fmt: skip
    finally:
        progress.close()
    for path, error in s.result.failures:
        print(f"vggish: {s.label}: failed: {path}: {error}", file=sys.stderr)
    try:
        s.stats = s.result.stats(model.weights_info.get("sha256", ""), mode)
    except ValueError as e:
        raise ValueError(f"{s.label} ({s.source}): {e}") from None
    if s.save:
        save_stats(s.save, s.stats)


def _report(args: argparse.Namespace, sets: list[_Set], warnings: list[str]) -> int:
    """Prints the FAD (text or JSON) and returns the exit status."""
    from vggish.fad import contributions, fad, fad_infinity

    background, evaluation = sets
    assert background.stats is not None and evaluation.stats is not None
    for warning in warnings:
        print(f"vggish: warning: {warning}", file=sys.stderr)
    value = fad(background.stats, evaluation.stats, force=True)  # origins were checked above
    out: dict[str, Any] = {
        "fad": value,
        "mode": background.stats.mode,
        "weights_sha256": background.stats.weights_sha256,
        **{s.label: _describe(s) for s in sets},
    }
    result = evaluation.result
    if args.contributions and result is not None and result.per_file is not None:
        top = contributions(background.stats, result.sums, result.per_file)[: args.contributions]
        out["contributions"] = [{"file": c.name, "examples": c.examples, "delta": c.delta} for c in top]
    if args.inf and result is not None:
        inf = fad_infinity(background.stats, result.all_embeddings())
        out["fad_inf"] = {"value": inf.value, "slope": inf.slope, "r2": inf.r2, "points": inf.points}
    failed = sum(len(s.result.failures) for s in sets if s.result is not None)
    total = sum(len(s.paths) for s in sets if s.paths is not None)
    if args.json:
        print(json.dumps(out))
    else:
        _print_text(out)
    for s in sets:
        if s.result is not None and s.result.empty:
            print(
                f"vggish: {s.label}: {len(s.result.empty)} files gave no example (too short)", file=sys.stderr
            )
    if failed:
        print(
            f"vggish: {failed} of {total} inputs failed (listed above); the FAD is of the others",
            file=sys.stderr,
        )
    return 2 if failed else 0


def _describe(s: _Set) -> dict[str, Any]:
    assert s.stats is not None
    info: dict[str, Any] = {"source": s.source, "count": s.stats.count, "files": s.stats.files}
    if s.result is not None:
        info["failed"] = [{"file": f, "error": e} for f, e in s.result.failures]
        info["no_examples"] = s.result.empty
    if s.save:
        info["saved"] = s.save
    return info


def _print_text(out: dict[str, Any]) -> None:
    print(f"FAD: {out['fad']:f}")
    for label in ("background", "eval"):
        info = out[label]
        print(f"{label}: {info['count']} examples from {info['files']} files ({info['source']})")
    print(f"mode {out['mode']}, weights {out['weights_sha256'][:12]}")
    if "contributions" in out:
        print("evaluation files that move the FAD most (FAD minus the FAD without the file):")
        for c in out["contributions"]:
            print(f"  {c['delta']:+.6f}  {c['file']} ({c['examples']} examples)")
    if "fad_inf" in out:
        inf = out["fad_inf"]
        print(f"FAD-inf: {inf['value']:f} (slope {inf['slope']:.3f}, r2 {inf['r2']:.4f})")
