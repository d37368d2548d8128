"""The Ray engine: the same rows as the local engine, from a Ray Data pipeline: decode tasks (one
input per row) -> a model actor that packs the rows' examples into full batches with the one
driver -> results written here by the same writers (resuming and failures as locally).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from vggish import params
from vggish.extract.decode import Failure, decode_file
from vggish.extract.options import ExtractOptions
from vggish.features.logmel import example_timestamps
from vggish.pipeline.driver import Driver, EmbeddingResult
from vggish.pipeline.options import EmbedOptions
from vggish.pipeline.packer import Job

INSTALL_RAY = "the ray engine needs Ray: pip install 'vggish[ray]'"
INPUTS_PER_CALL = 16  # inputs an actor call packs together into model batches
_NO_EXAMPLES = np.zeros((0, params.NUM_FRAMES, params.NUM_BANDS), dtype=np.float32)
_NO_FEATURES = np.zeros((0, params.EMBEDDING_SIZE), dtype=np.uint8)
_INFO = ("sample_rate", "channels", "num_samples")


def import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise RuntimeError(INSTALL_RAY) from e
    return ray


def decode_batch(batch: dict[str, np.ndarray], options: EmbedOptions) -> dict[str, Any]:
    """Ray task: ``{"path": (k,)}`` -> one row per input: its examples, info, or its error."""
    rows = [decode_file(str(path), options) for path in batch["path"]]
    return {
        "path": np.array([r.path if isinstance(r, Failure) else str(r.name) for r in rows]),
        "error": np.array([r.error if isinstance(r, Failure) else "" for r in rows]),
        "examples": _ragged([_NO_EXAMPLES if isinstance(r, Failure) else r.examples for r in rows]),
        **{key: np.array([0 if isinstance(r, Failure) else getattr(r, key) for r in rows]) for key in _INFO},
    }


def _ragged(arrays: list[np.ndarray]) -> np.ndarray:
    column = np.empty(len(arrays), dtype=object)
    for i, array in enumerate(arrays):
        column[i] = array
    return column


class Embedder:
    """Ray actor: embeds each row's examples, packed across the call's rows into full batches."""

    def __init__(self, weights: str | None, options: ExtractOptions, postprocess: bool) -> None:
        from vggish.network.loader import load_model

        device, backend, precision = options.device, options.backend, options.precision
        self._model = load_model(weights, device=device, backend=backend, precision=precision)
        self._embed, self._postprocess = options.embed, postprocess

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        jobs = [
            (Job(postprocess=self._postprocess), [np.asarray(examples, dtype=np.float32)])
            for examples in batch.pop("examples")
        ]
        # Outputs: a list of examples raises nothing.
        done: dict[Job, Any] = dict(Driver.for_model(self._model, self._embed).drive(jobs))
        outs = [done[job] for job, _ in jobs]
        post = [_NO_FEATURES if out.postprocessed is None else out.postprocessed for out in outs]
        return {
            **batch,
            "embedding": _ragged([out.embeddings for out in outs]),
            "postprocessed": _ragged(post),
        }


def run_ray(
    weights: str | None,
    paths: list[str],
    options: ExtractOptions,
    postprocess: bool,
    on_result: Callable[[EmbeddingResult | Failure], None],
) -> None:
    """Embeds ``paths`` with Ray Data (``options.workers`` CPUs of a local Ray, or the cluster at
    ``options.ray_address``), calling ``on_result`` once per input."""
    ray = import_ray()
    with _ray_session(ray, options.ray_address, max(1, options.workers)):
        ray.data.DataContext.get_current().enable_progress_bars = False
        dataset = ray.data.from_items([{"path": p} for p in paths])
        dataset = dataset.map_batches(decode_batch, fn_kwargs={"options": options.embed}, batch_size=1)
        dataset = dataset.map_batches(
            Embedder,
            fn_constructor_kwargs={"weights": weights, "options": options, "postprocess": postprocess},
            batch_size=INPUTS_PER_CALL,
            concurrency=1,
            num_gpus=1 if options.device.startswith("cuda") else 0,
            batch_format="numpy",
        )
        for batch in dataset.iter_batches(batch_format="numpy", batch_size=None):
            for i in range(len(batch["path"])):
                on_result(_result(batch, i, options.embed.hop_seconds, postprocess))


def _result(
    batch: dict[str, Any], i: int, hop_seconds: float, postprocess: bool
) -> EmbeddingResult | Failure:
    path = str(batch["path"][i])
    if batch["error"][i]:
        return Failure(path, str(batch["error"][i]))
    embeddings = np.asarray(batch["embedding"][i], dtype=np.float32)
    return EmbeddingResult(
        embeddings=embeddings,
        timestamps=example_timestamps(embeddings.shape[0], hop_seconds),
        postprocessed=np.asarray(batch["postprocessed"][i], dtype=np.uint8) if postprocess else None,
        sample_rate=int(batch["sample_rate"][i]),
        channels=int(batch["channels"][i]),
        num_samples=int(batch["num_samples"][i]),
        name=path,
    )


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
