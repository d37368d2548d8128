"""The Ray engine: the same rows as the local engine, from a Ray Data pipeline.

paths -> decode + log-mel in CPU tasks (``map_batches``, one input per task, one row per example)
-> the model in an actor pool (a callable class; ``num_gpus=1`` per actor with ``device="cuda"``)
-> rows streamed back to this process, regrouped per input and written by the same writers (so
resuming and failures work as with the local engine). A failed input travels as one row holding
its error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vggish import params
from vggish.extract.batching import Embedded
from vggish.extract.decode import Decoded, Failure, decode_file
from vggish.pipeline import EmbedOptions

INSTALL_RAY = "the ray engine needs Ray: pip install 'vggish[ray]'"
_EMPTY_EXAMPLES = np.empty((0, params.NUM_FRAMES, params.NUM_BANDS), dtype=np.float32)


def import_ray() -> Any:
    """Ray, or a RuntimeError saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise RuntimeError(INSTALL_RAY) from e
    return ray


def decode_batch(batch: dict[str, np.ndarray], options: EmbedOptions) -> dict[str, np.ndarray]:
    """Ray task: ``{"path": (k,)}`` -> one row per example (a failed input: one row, count 0)."""
    rows: list[dict[str, Any]] = []
    for path in batch["path"]:
        result = decode_file(str(path), options)
        if isinstance(result, Failure):
            blank = np.zeros(_EMPTY_EXAMPLES.shape[1:], np.float32)
            rows.append(_row(result.path, 0, 0, blank, result.error))
            continue
        for index, example in enumerate(result.examples):
            info = (result.sample_rate, result.channels, result.num_samples)
            rows.append(_row(result.path, result.examples.shape[0], index, example, "", info))
    return {
        key: np.stack([r[key] for r in rows]) if key == "examples" else np.array([r[key] for r in rows])
        for key in rows[0]
    }


def _row(
    path: str, count: int, index: int, example: np.ndarray, error: str, info: tuple[int, int, int] = (1, 0, 0)
) -> dict[str, Any]:
    rate, channels, samples = info
    return {
        "path": path,
        "count": np.int64(count),
        "index": np.int64(index),
        "examples": example,
        "error": error,
        "sample_rate": np.int64(rate),
        "channels": np.int64(channels),
        "num_samples": np.int64(samples),
    }


class Embedder:
    """Ray actor: embeds the ``examples`` column of a batch and drops it (failed rows get zeros)."""

    def __init__(
        self, weights: str | None, device: str, postprocess: bool, backend: str | None, precision: str
    ) -> None:
        from vggish.weights import load_model

        self._model = load_model(weights, device=device, backend=backend, precision=precision)  # type: ignore[arg-type]
        self._postprocess = postprocess

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from vggish.pipeline import run_model

        examples = batch.pop("examples")
        ok = batch["count"] > 0
        size = params.EMBEDDING_SIZE
        embeddings = np.zeros((examples.shape[0], size), np.float32)
        post = np.zeros((examples.shape[0], size), np.uint8)
        if ok.any():
            good = np.ascontiguousarray(examples[ok], dtype=np.float32)
            embeddings[ok] = run_model(self._model, [good], good.shape[0])
            if self._postprocess:
                post[ok] = self._model.postprocess(embeddings[ok]).cpu().numpy()
        return {**batch, "embedding": embeddings, "postprocessed": post}


@dataclass
class _Gathered:
    count: int
    info: tuple[int, int, int]
    rows: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def run_ray(
    weights: str | None,
    paths: list[str],
    options: EmbedOptions,
    postprocess: bool,
    *,
    device: str = "cpu",
    backend: str | None = None,
    precision: str = "fp32",
    workers: int = 1,
    address: str | None = None,
    on_result: Callable[[Embedded | Failure], None],
) -> None:
    """Embeds ``paths`` with Ray Data, calling ``on_result`` once per input.

    Args:
        weights: what :func:`vggish.load_model` loads in each actor.
        paths: inputs to process.
        options: hop, padding, resampler and batch size.
        postprocess: also compute AudioSet's uint8 features.
        device: ``cpu``, or ``cuda`` for one GPU per model actor.
        backend: the actors' backend (see :func:`vggish.load_model`).
        precision: the actors' precision.
        workers: CPUs of a local Ray started here (plus one for the model actor); decode tasks.
        address: an existing cluster's address; None starts a local Ray.
        on_result: receives each input's embeddings or failure.
    """
    ray = import_ray()
    with _ray_session(ray, address, workers):
        ray.data.DataContext.get_current().enable_progress_bars = False
        dataset = ray.data.from_items([{"path": p} for p in paths])
        dataset = dataset.map_batches(decode_batch, fn_kwargs={"options": options}, batch_size=1)
        dataset = dataset.map_batches(
            Embedder,
            fn_constructor_kwargs={
                "weights": weights,
                "device": device,
                "postprocess": postprocess,
                "backend": backend,
                "precision": precision,
            },
            batch_size=options.batch_size,
            concurrency=1,
            num_gpus=1 if device.startswith("cuda") else 0,
            batch_format="numpy",
        )
        for result in _regroup(dataset.iter_batches(batch_format="numpy", batch_size=None), postprocess):
            on_result(result)


@contextlib.contextmanager
def _ray_session(ray: Any, address: str | None, workers: int) -> Iterator[None]:
    if ray.is_initialized():
        yield
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=max(2, workers + 1), include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _regroup(batches: Iterator[dict[str, np.ndarray]], postprocess: bool) -> Iterator[Embedded | Failure]:
    """Rows in any order -> each input whole, once its last row has arrived."""
    gathering: dict[str, _Gathered] = {}
    for batch in batches:
        for i in range(len(batch["path"])):
            path, count = str(batch["path"][i]), int(batch["count"][i])
            if count == 0:
                yield Failure(path, str(batch["error"][i]))
                continue
            info = (int(batch["sample_rate"][i]), int(batch["channels"][i]), int(batch["num_samples"][i]))
            entry = gathering.setdefault(path, _Gathered(count, info))
            entry.rows[int(batch["index"][i])] = (batch["embedding"][i], batch["postprocessed"][i])
            if len(entry.rows) == count:
                del gathering[path]
                yield _embedded(path, entry, postprocess)


def _embedded(path: str, entry: _Gathered, postprocess: bool) -> Embedded:
    ordered = [entry.rows[k] for k in range(entry.count)]
    embeddings = np.stack([e for e, _ in ordered]).astype(np.float32)
    post = np.stack([p for _, p in ordered]).astype(np.uint8) if postprocess else None
    return Embedded(Decoded(path, _EMPTY_EXAMPLES, *entry.info), embeddings, post)
