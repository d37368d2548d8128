"""Decode one input to log-mel examples; runs in worker processes (or in-process with 0 workers).

A worker never raises for a bad input: it returns a :class:`Failure` holding a one-line reason,
so that one corrupt file never stops a run of thousands.
"""

from __future__ import annotations

from dataclasses import dataclass

from vggish import params
from vggish.pipeline.options import EmbedOptions
from vggish.pipeline.source import ExampleSource, InputExamples


@dataclass(frozen=True)
class Failure:
    """An input that could not be processed, and why (one line)."""

    path: str
    error: str


def one_line(error: BaseException) -> str:
    """The error's type and message on one line."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def decode_file(path: str, options: EmbedOptions) -> InputExamples | Failure:
    """Decodes ``path`` to its examples (NumPy), named by its path, through the one example source.

    Returns:
        The examples, or a Failure for unreadable, corrupt or empty files and for clips too short
        to give an example (without ``options.pad``).
    """
    try:
        decoded = ExampleSource(path, options, name=path).collect()
    except Exception as e:  # any fault of one input is that input's failure, never the run's
        return Failure(path, one_line(e))
    if decoded.examples.shape[0] == 0:
        if decoded.num_samples == 0:
            return Failure(path, "the file holds no audio samples")
        return Failure(
            path,
            f"{decoded.duration:.3f} s is shorter than one example ({params.EXAMPLE_SPAN_SECONDS} s); "
            "--pad zero-pads it to one",
        )
    return decoded
