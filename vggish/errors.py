"""The library's exceptions, in the caller's terms and without HTTP. Bad input is a ``ValueError``
of a more precise kind; the service maps each kind to a status in one table (``app/errors.py``)."""

from __future__ import annotations


class InvalidInputError(ValueError):
    """Input data or parameters that cannot be used as they are (the message names the fix)."""


class UndecodableAudioError(InvalidInputError):
    """No decoder reads the input: not audio, an unsupported container, or an empty file."""


class InvalidAudioError(InvalidInputError):
    """Audio that decodes only partly, or samples that are not audio (NaN, a bad shape or rate)."""


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


def one_line(error: BaseException) -> str:
    """The error's message on one line (its type's name when it has none)."""
    return " ".join(str(error).split()) or type(error).__name__
