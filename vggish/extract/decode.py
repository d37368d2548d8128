"""Decode one input to log-mel examples; runs in worker processes (or in-process with 0 workers).

A worker never raises for a bad input: it returns a :class:`Failure` holding a one-line reason,
so that one corrupt file never stops a run of thousands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vggish import audio, params
from vggish.pipeline import CountingBlocks, EmbedOptions, iter_examples


@dataclass(frozen=True)
class Decoded:
    """One input's examples.

    Attributes:
        path: the input's absolute path.
        examples: (N, 96, 64) float32 log-mel examples, N >= 1.
        sample_rate: the file's own rate in Hz.
        channels: the file's channel count.
        num_samples: samples per channel.
    """

    path: str
    examples: np.ndarray
    sample_rate: int
    channels: int
    num_samples: int

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return self.num_samples / self.sample_rate


@dataclass(frozen=True)
class Failure:
    """An input that could not be processed, and why (one line)."""

    path: str
    error: str


def one_line(error: BaseException) -> str:
    """The error's type and message on one line."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def decode_file(path: str, options: EmbedOptions) -> Decoded | Failure:
    """Decodes ``path`` to examples as :func:`vggish.pipeline.embed_source` does.

    Returns:
        The examples, or a Failure for unreadable, corrupt or empty files and for clips too short
        to give an example (without ``options.pad``).
    """
    try:
        info, blocks = audio.stream(path)
        counted = CountingBlocks(blocks)
        examples = np.concatenate(list(iter_examples(counted, info.sample_rate, options)))
    except Exception as e:  # any fault of one input is that input's failure, never the run's
        return Failure(path, one_line(e))
    if examples.shape[0] == 0:
        if counted.num_samples == 0:
            return Failure(path, "the file holds no audio samples")
        seconds = counted.num_samples / info.sample_rate
        return Failure(
            path,
            f"{seconds:.3f} s is shorter than one example ({params.EXAMPLE_SPAN_SECONDS} s); "
            "--pad zero-pads it to one",
        )
    return Decoded(path, examples, info.sample_rate, info.channels, counted.num_samples)
