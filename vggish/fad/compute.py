"""Audio files -> a set's sums, in one pass through the one driver (``embed_each``) and packer.

Each file's embeddings are added into float64 sums as soon as the file is through (no list of
embeddings is kept unless asked for), so memory is bounded whatever the set's size. A file that
cannot be read is recorded with its error and the others go on, as in ``vggish extract``.

``workers`` > 0 runs the same loop in that many processes, each with its own model and an equal
share of the CPUs, on interleaved chunks of the files; their sums are added in file order.
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vggish import params
from vggish.fad import google
from vggish.fad.stats import Mode, SetStats, Sums
from vggish.pipeline.driver import Embedder, EmbeddingResult, embed_each
from vggish.pipeline.options import EmbedOptions
from vggish.pipeline.source import Waveform

DEFAULT_OPTIONS = EmbedOptions(postprocess=False)
"""The default mode's options: what ``embed_file`` does by default (0.96 s hop, no padding,
reference resampler), float embeddings before PCA."""

OnFile = Callable[[float, bool], None]
"""Called once per finished file with its audio seconds and whether it failed."""


@dataclass
class SetResult:
    """What embedding one set gave.

    Attributes:
        sums: the sums of every example of every file that succeeded.
        files: files that succeeded (with or without examples).
        empty: files that gave no example (shorter than one example).
        failures: (file, error) of the files that failed.
        per_file: each successful file's name and sums, when asked for.
        embeddings: the chunks of every embedding, when asked for.
    """

    sums: Sums = field(default_factory=Sums)
    files: int = 0
    empty: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    per_file: list[tuple[str, Sums]] | None = None
    embeddings: list[np.ndarray] | None = None

    def stats(self, weights_sha256: str, mode: Mode) -> SetStats:
        """The set's statistics (ValueError when it has fewer than two examples)."""
        return SetStats.from_sums(self.sums, self.files, weights_sha256, mode)

    def all_embeddings(self) -> np.ndarray:
        """(N, 128) float32: every embedding (kept only when asked for)."""
        if self.embeddings is None:
            raise RuntimeError("embeddings were not kept: pass keep_embeddings=True")
        return np.concatenate(self.embeddings) if self.embeddings else np.empty((0, 128), np.float32)

    def merge(self, other: SetResult) -> None:
        """Appends ``other``'s files (which come after these)."""
        self.sums.merge(other.sums)
        self.files += other.files
        self.empty += other.empty
        self.failures += other.failures
        if self.per_file is not None and other.per_file is not None:
            self.per_file += other.per_file
        if self.embeddings is not None and other.embeddings is not None:
            self.embeddings += other.embeddings


@dataclass
class _Pending:
    """A file on its way: its sums so far and how many of its pieces are still out."""

    name: str
    sums: Sums = field(default_factory=Sums)
    pieces: int = 0
    done: bool = False
    seconds: float = 0.0
    chunks: list[np.ndarray] = field(default_factory=list)


def embed_set(
    model: Embedder,
    paths: Sequence[str],
    mode: Mode = "default",
    *,
    keep_per_file: bool = False,
    keep_embeddings: bool = False,
    on_file: OnFile | None = None,
) -> SetResult:
    """Embeds every file of a set and adds up its statistics' sums.

    Args:
        model: the model (a :class:`vggish.network.runtime.Runtime`).
        paths: the audio files.
        mode: ``default`` (any format, the project's standard examples) or ``google`` (16 kHz
            mono WAV read as Google's tool reads it).
        keep_per_file: also keep each file's sums (128 KiB a file), for
            :func:`vggish.fad.contributions`.
        keep_embeddings: also keep every embedding (512 bytes an example), for FAD-infinity.
        on_file: progress callback.

    Returns:
        The sums, counts and failures.
    """
    result = SetResult(per_file=[] if keep_per_file else None, embeddings=[] if keep_embeddings else None)
    files = [_Pending(str(p)) for p in paths]
    owner: list[int] = []  # driver input index -> file index

    def finish(i: int, error: str | None = None) -> None:
        pending = files[i]
        if error is not None:
            result.failures.append((pending.name, error))
        else:
            result.sums.merge(pending.sums)
            result.files += 1
            if pending.sums.count == 0:
                result.empty.append(pending.name)
            if result.per_file is not None:
                result.per_file.append((pending.name, pending.sums))
            if result.embeddings is not None:
                result.embeddings += pending.chunks
        if on_file is not None:
            on_file(pending.seconds, error is not None)
        files[i] = _Pending(pending.name, done=True)  # frees its sums; its later pieces are ignored

    def inputs() -> Iterator[str | Waveform]:
        for i, pending in enumerate(files):
            if mode == "default":
                owner.append(i)
                pending.pieces = 1
                yield pending.name
                continue
            try:
                wav = google.read_wav(pending.name)
            except (ValueError, OSError) as e:
                finish(i, str(e))
                continue
            pending.seconds = wav.data.shape[0] / params.SAMPLE_RATE
            pending.pieces = wav.num_segments
            if pending.pieces == 0:
                finish(i)
            for segment in wav.segments():
                owner.append(i)
                yield segment

    options = DEFAULT_OPTIONS if mode == "default" else google.OPTIONS
    for index, outcome in embed_each(model, inputs(), options):
        i = owner[index]
        pending = files[i]
        if pending.done:
            continue
        if isinstance(outcome, Exception):
            finish(i, str(outcome) or type(outcome).__name__)
            continue
        error = _add(pending, outcome, mode, keep_embeddings)
        pending.pieces -= 1
        if error is not None or pending.pieces == 0:
            finish(i, error)
    return result


def _add(pending: _Pending, outcome: EmbeddingResult, mode: Mode, keep: bool) -> str | None:
    """Adds one piece's embeddings to its file; returns an error message instead when they are not finite."""
    try:
        pending.sums.add(outcome.embeddings)
    except ValueError as e:
        return str(e)
    if mode == "default":
        pending.seconds = outcome.duration
    if keep:
        pending.chunks.append(outcome.embeddings)
    return None


# ---------------------------------------------------------------------------------------------
# Several processes, each with its own model.

_worker_model: Any = None


def embed_set_parallel(
    paths: Sequence[str],
    mode: Mode,
    weights: str | None,
    load_kwargs: dict[str, Any],
    workers: int,
    *,
    keep_per_file: bool = False,
    keep_embeddings: bool = False,
    on_files: Callable[[int, float, int], None] | None = None,
) -> SetResult:
    """:func:`embed_set` in ``workers`` processes, each loading the model with ``weights`` and
    ``load_kwargs`` (see :func:`vggish.load_model`) and ``threads`` split between them.

    Args:
        on_files: progress callback per chunk of files: (files, audio seconds, failed).
    """
    from vggish.network.cpus import available_cpus

    kwargs = {**load_kwargs, "threads": max(1, (load_kwargs.get("threads") or available_cpus()) // workers)}
    size = max(1, min(32, math.ceil(len(paths) / (workers * 4))))
    chunks = [list(map(str, paths[i : i + size])) for i in range(0, len(paths), size)]
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    result = SetResult(per_file=[] if keep_per_file else None, embeddings=[] if keep_embeddings else None)
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_load, initargs=(weights, kwargs)
    ) as pool:
        futures = [pool.submit(_embed_chunk, c, mode, keep_per_file, keep_embeddings) for c in chunks]
        for chunk, future in zip(chunks, futures, strict=True):
            part, seconds = future.result()
            result.merge(part)
            if on_files is not None:
                on_files(len(chunk), seconds, len(part.failures))
    return result


def _load(weights: str | None, kwargs: dict[str, Any]) -> None:
    import warnings

    from vggish.network.loader import load_model

    global _worker_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the parent has shown the model's warnings once
        _worker_model = load_model(weights, **kwargs)


def _embed_chunk(paths: list[str], mode: Mode, per_file: bool, keep: bool) -> tuple[SetResult, float]:
    seconds = 0.0

    def count(s: float, failed: bool) -> None:
        nonlocal seconds
        seconds += s

    part = embed_set(_worker_model, paths, mode, keep_per_file=per_file, keep_embeddings=keep, on_file=count)
    return part, seconds
