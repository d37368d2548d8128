"""Decode one input to log-mel examples in a worker; a bad input is a :class:`Failure` holding a
one-line reason, never an exception, so one corrupt file never stops a run."""

from __future__ import annotations

from dataclasses import dataclass

from vggish import params
from vggish.errors import one_line
from vggish.pipeline.options import EmbedOptions
from vggish.pipeline.source import ExampleSource, InputExamples


@dataclass(frozen=True)
class Failure:
    path: str
    error: str


def decode_file(path: str, options: EmbedOptions) -> InputExamples | Failure:
    """``path``'s examples through the one example source, or a Failure (unreadable, empty, too
    short)."""
    try:
        decoded = ExampleSource(path, options, name=path).collect()
    except Exception as e:  # any fault of one input is that input's failure, never the run's
        reason = one_line(e)  # the type's name alone when the message is empty
        return Failure(path, f"{type(e).__name__}: {reason}" if str(e).strip() else reason)
    if decoded.examples.shape[0] == 0:
        if decoded.num_samples == 0:
            return Failure(path, "the file holds no audio samples")
        return Failure(
            path,
            f"{decoded.duration:.3f} s is shorter than one example ({params.EXAMPLE_SPAN_SECONDS} s); "
            "--pad zero-pads it to one",
        )
    return decoded
