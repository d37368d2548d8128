"""The local engine: decoding in worker processes (``forkserver``/``spawn``), the model in this
one on full batches. At most ``IN_FLIGHT_PER_WORKER`` inputs per worker are in flight (bounded
memory); a worker ends when this process does, even killed.
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from vggish.extract.decode import Failure, decode_file
from vggish.network.runtime import Runtime
from vggish.pipeline.driver import Driver, EmbeddingResult
from vggish.pipeline.options import EmbedOptions
from vggish.pipeline.packer import Job
from vggish.pipeline.source import InputExamples

IN_FLIGHT_PER_WORKER = 4


def run_local(
    model: Runtime,
    paths: list[str],
    options: EmbedOptions,
    postprocess: bool,
    workers: int,
    on_result: Callable[[EmbeddingResult | Failure], None],
) -> None:
    """Embeds ``paths`` with ``workers`` decoding processes (0: in this one), calling
    ``on_result`` once per input (in completion order) with its embeddings or failure."""

    def jobs() -> Iterator[tuple[Job, list[Any]]]:
        for item in decoded:
            if isinstance(item, Failure):
                on_result(item)
            else:  # the driver holds the examples; the job keeps what else decoding told
                yield Job(dataclasses.replace(item, examples=None), postprocess=postprocess), [item.examples]

    serial = (decode_file(path, options) for path in paths)
    decoded = serial if workers == 0 else _decode_parallel(paths, options, workers)
    for job, out in Driver.for_model(model, options).drive(jobs()):
        assert not isinstance(out, Exception)  # a list of examples raises nothing
        on_result(EmbeddingResult.of(out, job.tag))


def _decode_parallel(
    paths: list[str], options: EmbedOptions, workers: int
) -> Iterator[InputExamples | Failure]:
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    todo = iter(paths)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=end_with, initargs=(os.getpid(),))
    running: set[Future[InputExamples | Failure]] = set()

    def submit(count: int) -> None:
        for path in itertools.islice(todo, count):
            running.add(pool.submit(decode_file, path, options))

    try:
        with pool:
            submit(workers * IN_FLIGHT_PER_WORKER)
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                running.difference_update(done)
                submit(len(done))
                for future in done:
                    yield future.result()
    except BrokenProcessPool as e:  # a worker died (e.g. a decoder crashed, or out of memory)
        raise RuntimeError(f"a decoding worker died ({e}); rerun the same command to resume") from e


def end_with(pid: int) -> None:
    """Worker initializer: ends this process when process ``pid`` ends (POSIX). Its parent is the
    forkserver, so ``PR_SET_PDEATHSIG`` would not tell; a thread waits on ``pid``."""
    if os.name == "posix":
        threading.Thread(target=_exit_when_gone, args=(pid,), name="vggish-end-with", daemon=True).start()


def _exit_when_gone(pid: int) -> None:
    try:
        select.select([os.pidfd_open(pid)], [], [])  # Linux: readable once the process has ended
    except (AttributeError, OSError):  # other systems, or an older kernel: poll
        while _alive(pid):
            time.sleep(1.0)
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:  # gone (or its pid now another user's)
        return False
    return True
