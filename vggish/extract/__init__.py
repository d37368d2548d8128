"""Batch feature extraction: many audio files -> Parquet, per-file .npz or AudioSet TFRecords.
Inputs (:mod:`.inputs`) -> decode in workers (:mod:`.decode`) -> full model batches -> parts written
crash-safely, resumable (:mod:`.outputs`); engines :mod:`.local` and :mod:`.ray_engine`; :mod:`.options`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from vggish.extract.decode import Failure
from vggish.extract.inputs import InputFile, find_inputs
from vggish.extract.options import ExtractOptions, default_workers
from vggish.extract.outputs import (
    FailureLog,
    NpzWriter,
    PartWriter,
    completed_inputs,
    npz_paths,
    prepare,
    write_summary,
)
from vggish.extract.progress import Progress
from vggish.network.cpus import available_cpus
from vggish.network.loader import load_model
from vggish.network.runtime import Runtime, default_batch_size
from vggish.pipeline.driver import EmbeddingResult, wants_postprocess

INSTALL_EXTRACT = "--format parquet needs pyarrow: pip install 'vggish[extract]'"

__all__ = ["ExtractOptions", "ExtractSummary", "InputFile", "default_workers", "extract", "find_inputs"]


@dataclass
class ExtractSummary:
    """What a run did; written to ``_summary.json``."""

    files_total: int = 0
    files_skipped: int = 0  # complete before this run
    files_ok: int = 0
    files_failed: int = 0
    examples: int = 0
    audio_hours: float = 0.0
    wall_seconds: float = 0.0
    realtime_factor: float = 0.0  # audio seconds per wall second, this run
    files_per_second: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)


def extract(
    inputs: list[InputFile],
    output: Path,
    weights: str | None,
    options: ExtractOptions,
    progress: bool = False,
) -> ExtractSummary:
    """Embeds every input not yet complete in ``output`` (resumed when its settings match, else
    ValueError); failed inputs are counted and listed in ``_failures.jsonl``."""
    started = time.perf_counter()
    _check_packages(options)
    # .npz names: a clash is refused before the model loads or anything is written.
    npz_files = npz_paths(output, inputs) if options.format == "npz" else {}
    torch_threads = torch.get_num_threads()  # restored at the end: the model's count is for this run
    model = _load_model(weights, options)
    if options.embed.batch_size is None:  # the model's; the Ray actors' device's
        ray = options.engine == "ray"
        batch_size = default_batch_size(options.device) if ray else model.default_batch_size
        options = replace(options, embed=replace(options.embed, batch_size=batch_size))
    postprocess = wants_postprocess(model, options.embed)
    if options.format == "tfrecord" and not postprocess:
        raise ValueError(
            "--format tfrecord stores AudioSet's 8-bit features: it needs weights with PCA and "
            "no --no-postprocess"
        )
    settings = _settings(options, postprocess, str(model.weights_info.get("sha256", "")))
    prepare(output, settings)
    done = completed_inputs(output, options.format, inputs)
    todo = [item.path for item in inputs if item.path not in done]
    writer = (
        NpzWriter(npz_files)
        if options.format == "npz"
        else PartWriter(output, options.format, options.rows_per_part)
    )
    summary = ExtractSummary(len(inputs), len(inputs) - len(todo), settings=settings)
    failures, bar = FailureLog(output), Progress(len(todo), enabled=progress, started=started)

    def on_result(result: EmbeddingResult | Failure) -> None:
        if isinstance(result, Failure):
            failures.add(result)
            bar.update(0.0, failed=True)
        else:
            writer.add(result)
            summary.examples += result.embeddings.shape[0]
            bar.update(result.duration)

    try:
        if todo and options.engine == "ray":
            from vggish.extract.ray_engine import run_ray

            run_ray(weights, todo, options, postprocess, on_result)
        elif todo:
            from vggish.extract.local import run_local

            run_local(model, todo, options.embed, postprocess, options.workers, on_result)
        writer.close()
    finally:
        failures.close()
        bar.close()
        torch.set_num_threads(torch_threads)
    seconds = bar.seconds
    assert seconds is not None  # closed: the time its last line showed the speed for
    summary.files_ok, summary.files_failed = bar.files - bar.failed, bar.failed
    summary.audio_hours = bar.audio_seconds / 3600
    summary.wall_seconds = seconds
    summary.realtime_factor = bar.audio_seconds / seconds if seconds > 0 else 0.0
    summary.files_per_second = bar.files / seconds if seconds > 0 else 0.0
    summary.run = {
        "engine": options.engine,
        "workers": options.workers,
        "batch_size": options.embed.batch_size,
        "device": options.device,
        "backend": model.backend if options.engine == "local" else options.backend,
        "precision": options.precision,
        "rows_per_part": options.rows_per_part,
    }
    write_summary(output, asdict(summary))
    return summary


def _load_model(weights: str | None, options: ExtractOptions) -> Runtime:
    if options.engine == "ray":  # the actors load their own; this one only reads the metadata
        return load_model(weights, backend="torch")
    # Decoding processes keep their CPUs: the model (torch or ONNX Runtime) gets the rest.
    cpu_workers = options.workers if options.device == "cpu" else 0
    threads = options.threads
    if threads is None and cpu_workers:
        threads = max(1, available_cpus() - cpu_workers)
    device, backend, precision = options.device, options.backend, options.precision
    return load_model(weights, device=device, backend=backend, precision=precision, threads=threads)


def _check_packages(options: ExtractOptions) -> None:
    if options.format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as e:
            raise RuntimeError(INSTALL_EXTRACT) from e
    if options.engine == "ray":
        from vggish.extract.ray_engine import import_ray

        import_ray()


def _settings(options: ExtractOptions, postprocess: bool, weights_sha256: str) -> dict[str, Any]:
    embed = options.embed
    settings: dict[str, Any] = {
        "format": options.format,
        "hop_seconds": embed.hop_seconds,
        "pad": embed.pad,
        "postprocess": postprocess,
        "resampler": embed.resampler,
        "weights_sha256": weights_sha256,
    }
    if options.precision != "fp32":  # fp16/bf16 rows differ by ~1e-3: never mixed with fp32 ones
        settings["precision"] = options.precision
    return settings
