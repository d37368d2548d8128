"""The library's exceptions: what went wrong, in the caller's terms, with no HTTP in sight.

Every error about bad input is a ``ValueError`` (so ``except ValueError`` keeps working) of a
more precise kind below; the service maps each kind to a status in one table (``app/errors.py``),
the CLI prints the message on one line.
"""

from __future__ import annotations


class InvalidInputError(ValueError):
    """Input data or parameters that cannot be used as they are (the message names the fix)."""


class UndecodableAudioError(InvalidInputError):
    """No decoder reads the input: not audio, an unsupported container, or an empty file."""


class InvalidAudioError(InvalidInputError):
    """Audio that decodes only partly (truncated, corrupt) or samples that are not audio (NaN,
    infinity, a bad shape or sample rate)."""


class LimitExceededError(InvalidInputError):
    """An input is larger than a limit it was given; ``limit`` names that limit."""

    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(f"{limit}: {detail}")
        self.limit = limit
        self.detail = detail


class NotFoundError(LookupError):
    """A named thing (e.g. a classifier head) does not exist."""

    def __str__(self) -> str:  # LookupError's str() would quote the message like a key
        return str(self.args[0]) if self.args else ""


class ConflictError(ValueError):
    """The request conflicts with what exists: a name taken, or a head made for other weights."""


class CancelledError(Exception):
    """Work stopped because its caller gave up (a client went away, a timeout, shutdown)."""


def plural(count: int, noun: str) -> str:
    """A count and its noun for messages: ``1 example``, ``2 examples``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
