"""Downloading files, checked while they stream: transfer only (docs/vggish.md §6 for the official ones).

Only the standard library speaks HTTP here (``urllib.request``); tqdm draws the progress bar.
A download goes to ``NAME.part`` beside its destination and is moved into place with
``os.replace`` only after its MD5 (and SHA-256, when known) match, so an interrupted or corrupt
transfer never leaves a file that looks finished. A later run resumes a ``.part`` file with an
HTTP ``Range`` request; servers that ignore ranges (200) restart cleanly, and a 416 is resolved
from the file's known size. Failures that another attempt may heal (time-outs, reset connections,
transfers shorter than their ``Content-Length``, HTTP 5xx, 408 and 429) are retried with
exponential backoff, resuming each time. Failures that a retry cannot heal fail at once, in one
line naming the cause: a host name that does not resolve (offline, no DNS), no route to the host,
a refused connection, and HTTP errors such as 404.

The constants below are the single source of truth for the official files; ``weights/manifest.json``
mirrors them for readers and tools, and a test keeps the two in agreement.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tqdm import tqdm

from vggish.version import __version__
from vggish.weights.location import OFFICIAL_CHECKPOINT_NAME, OFFICIAL_PCA_NAME

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20  # bytes read from the socket and written per step
MAX_BACKOFF_SECONDS = 60.0  # cap on the wait between attempts (backoff doubles each retry)
RETRYABLE_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
PART_SUFFIX = ".part"
# The MD5s are published by a third party (cosmir/openmic-2018); Google publishes none.
MD5_SOURCE = "cosmir/openmic-2018 (GitHub)"
_HEX = re.compile(r"[0-9a-f]+")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


@dataclass(frozen=True)
class RemoteFile:
    """A file to download and the digests it must have.

    Attributes:
        name: file name in the destination folder (no path separators).
        url: http(s) address.
        size: exact size in bytes, or None when unpublished.
        md5: expected MD5, 32 lowercase hex digits.
        sha256: expected SHA-256, 64 lowercase hex digits, once recorded (see weights/README.md).
    """

    name: str
    url: str
    size: int | None
    md5: str
    sha256: str | None = None


OFFICIAL_CHECKPOINT = RemoteFile(
    name=OFFICIAL_CHECKPOINT_NAME,
    url="https://storage.googleapis.com/audioset/vggish_model.ckpt",
    size=None,  # about 277 MiB; the exact size is not published
    md5="d1c7011e6366aa34176bb05c705e31a8",
)
OFFICIAL_PCA = RemoteFile(
    name=OFFICIAL_PCA_NAME,
    url="https://storage.googleapis.com/audioset/vggish_pca_params.npz",
    size=73_020,
    md5="c80cae691033abe7c7ecd11ea39fc834",
)
OFFICIAL_FILES = (OFFICIAL_CHECKPOINT, OFFICIAL_PCA)


@dataclass(frozen=True)
class Downloaded:
    """A verified file in place: its path, size and digests."""

    path: Path
    size: int
    md5: str
    sha256: str


class ChecksumError(RuntimeError):
    """The downloaded bytes are not the expected file (wrong digest or size)."""


class _TransferError(Exception):
    """A transfer failed in a way that another attempt may fix."""


class _RangeNotSatisfiableError(Exception):
    """HTTP 416: the server will not send bytes from the part file's length on."""

    def __init__(self, total: int | None) -> None:
        super().__init__(f"range not satisfiable (file size {total})")
        self.total = total  # the server's file size, from ``Content-Range: bytes */TOTAL``


_RETRYABLE = (_TransferError, http.client.HTTPException, urllib.error.URLError, ConnectionError, TimeoutError)
# Connection failures that retrying within the next minute cannot heal: the machine has no route
# (offline, no interface up) or nothing listens on the port. Time-outs and resets are retried.
_PERMANENT_ERRNOS = {
    errno.ENETUNREACH: "the network is unreachable",
    errno.ENETDOWN: "the network is down",
    errno.EHOSTUNREACH: "there is no route to the host",
    errno.ECONNREFUSED: "the connection was refused",
}


class _Digest:
    """MD5 and SHA-256 of the bytes seen so far."""

    def __init__(self) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha256 = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes) -> None:
        self.md5.update(data)
        self.sha256.update(data)
        self.size += len(data)


@dataclass(frozen=True)
class _Plan:
    """How a response's body continues the part file."""

    start: int  # bytes of the part file the body follows (0 when the server sent the whole file)
    body_length: int | None  # bytes the server promised to send, when it said
    total: int | None  # size of the whole file, when the server said


def manifest_entries() -> list[dict[str, Any]]:
    """The official files as ``weights/manifest.json`` lists them (name, url, size, md5, sha256)."""
    return [
        {"name": f.name, "url": f.url, "size": f.size, "md5": f.md5, "sha256": f.sha256}
        for f in OFFICIAL_FILES
    ]


def _check_remote(remote: RemoteFile, retries: int, timeout: float) -> None:
    """Raises ValueError for a malformed RemoteFile or bad retry/timeout settings."""
    if not remote.name or Path(remote.name).name != remote.name or remote.name in (".", ".."):
        raise ValueError(f"RemoteFile.name must be a plain file name; got {remote.name!r}")
    if urlsplit(remote.url).scheme not in ("http", "https"):
        raise ValueError(f"only http(s) URLs can be downloaded; got {remote.url!r}")
    for label, digest, length in (("md5", remote.md5, 32), ("sha256", remote.sha256, 64)):
        if digest is not None and (len(digest) != length or not _HEX.fullmatch(digest)):
            raise ValueError(f"RemoteFile.{label} must be {length} lowercase hex digits; got {digest!r}")
    if remote.size is not None and remote.size < 0:
        raise ValueError(f"RemoteFile.size must be None or >= 0; got {remote.size}")
    if retries < 0 or not timeout > 0:
        raise ValueError(f"retries must be >= 0 and timeout > 0; got {retries} and {timeout}")


def _hash_file(path: Path, limit: int | None = None) -> _Digest:
    """Digest of the first ``limit`` bytes of ``path`` (all of it when None)."""
    digest = _Digest()
    with open(path, "rb") as f:
        while limit is None or digest.size < limit:
            want = CHUNK_BYTES if limit is None else min(CHUNK_BYTES, limit - digest.size)
            block = f.read(want)
            if not block:
                break
            digest.update(block)
    return digest


def _mismatch(remote: RemoteFile, digest: _Digest) -> str | None:
    """Why ``digest`` is not ``remote``'s, or None when it is."""
    if remote.size is not None and digest.size != remote.size:
        return f"{digest.size} bytes, expected {remote.size}"
    if digest.md5.hexdigest() != remote.md5:
        return f"MD5 {digest.md5.hexdigest()}, expected {remote.md5}"
    if remote.sha256 is not None and digest.sha256.hexdigest() != remote.sha256:
        return f"SHA-256 {digest.sha256.hexdigest()}, expected {remote.sha256}"
    return None


def _downloaded(path: Path, digest: _Digest) -> Downloaded:
    return Downloaded(path, digest.size, digest.md5.hexdigest(), digest.sha256.hexdigest())


def _verified_existing(final: Path, remote: RemoteFile) -> Downloaded | None:
    """The destination file when it is already there and verifies; None otherwise."""
    if not final.is_file():
        return None
    digest = _hash_file(final)
    problem = _mismatch(remote, digest)
    if problem is None:
        logger.info("%s is already downloaded and verified", final)
        return _downloaded(final, digest)
    logger.warning("%s is not the expected file (%s); downloading it again", final, problem)
    return None


def _request(url: str, offset: int) -> urllib.request.Request:
    headers = {"User-Agent": f"vggish/{__version__} (+urllib)", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.Request(url, headers=headers)


def _unreachable(error: urllib.error.URLError, url: str) -> str | None:
    """Why the host cannot be reached in a way no retry will heal, or None when a retry may help.

    A host name that does not resolve counts as permanent, whatever the resolver's code: offline
    machines report "temporary failure in name resolution" (EAI_AGAIN) as often as "name not
    known", and neither heals in the seconds a retry waits.
    """
    reason = error.reason
    host = urlsplit(url).hostname
    if isinstance(reason, socket.gaierror):
        detail = reason.strerror or str(reason)
        return f"the host name {host} does not resolve ({detail}): no network or no DNS"
    if isinstance(reason, OSError) and reason.errno in _PERMANENT_ERRNOS:
        return f"{_PERMANENT_ERRNOS[reason.errno]} ({host}: {reason.strerror or reason})"
    return None


def _open(remote: RemoteFile, offset: int, timeout: float) -> http.client.HTTPResponse:
    """Sends the request for the bytes from ``offset`` on.

    Raises:
        _RangeNotSatisfiableError: for a 416 answer to a resume request.
        _TransferError: for answers worth retrying (5xx, 408, 429).
        RuntimeError: for other HTTP errors (404, 403...), a host name that does not resolve, no
            route to the host or a refused connection, which retrying will not fix.
        urllib.error.URLError, OSError: for other connection failures (time-outs...), retried.
    """
    try:
        response: http.client.HTTPResponse = urllib.request.urlopen(
            _request(remote.url, offset), timeout=timeout
        )
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and offset:
            match = _UNSATISFIED_RANGE.fullmatch((e.headers.get("Content-Range") or "").strip())
            raise _RangeNotSatisfiableError(int(match.group(1)) if match else None) from e
        if e.code in RETRYABLE_HTTP_STATUS:
            raise _TransferError(f"{remote.url} answered HTTP {e.code} {e.reason}") from e
        raise RuntimeError(f"could not download {remote.url}: HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        cause = _unreachable(e, remote.url)
        if cause is None:
            raise
        raise RuntimeError(f"could not download {remote.url}: {cause}; not retried") from e
    return response


def _plan(response: http.client.HTTPResponse, offset: int, url: str) -> _Plan | None:
    """Reads the status and headers: where the body goes and how long it should be.

    Returns None for a 206 answer that does not start at ``offset`` (unusable for resuming).
    """
    length_header = response.headers.get("Content-Length")
    length = int(length_header) if length_header and length_header.strip().isdigit() else None
    if response.status == 200:
        if offset:
            logger.warning("%s ignored the request to resume at byte %d; restarting", url, offset)
        return _Plan(0, length, length)
    if response.status != 206:
        raise RuntimeError(f"could not download {url}: unexpected HTTP {response.status}")
    match = _CONTENT_RANGE.fullmatch((response.headers.get("Content-Range") or "").strip())
    if match is None or int(match.group(1)) != offset:
        logger.warning("%s answered a resume request with %s", url, response.headers.get("Content-Range"))
        return None
    first, last, total = match.groups()
    return _Plan(offset, int(last) - int(first) + 1, None if total == "*" else int(total))


def _check_total(remote: RemoteFile, plan: _Plan) -> None:
    """Fails before streaming when the server's file has a size other than the expected one."""
    if remote.size is not None and plan.total is not None and plan.total != remote.size:
        raise ChecksumError(
            f"{remote.url} is {plan.total} bytes, expected {remote.size}: not the expected file"
        )


def _stream(
    response: http.client.HTTPResponse, part: Path, plan: _Plan, digest: _Digest, progress: bool
) -> None:
    """Writes the body to ``part`` after its first ``plan.start`` bytes, hashing as it goes.

    Raises:
        _TransferError: when the connection ends before the promised number of bytes.
    """
    bar = tqdm(
        total=plan.total,
        initial=plan.start,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=part.name.removesuffix(PART_SUFFIX),
        disable=not progress,
    )
    received = 0
    with bar, open(part, "r+b" if plan.start else "wb") as out:
        out.truncate(plan.start)
        out.seek(plan.start)
        while block := response.read(CHUNK_BYTES):
            out.write(block)
            digest.update(block)
            received += len(block)
            bar.update(len(block))
        out.flush()
        os.fsync(out.fileno())
    if plan.body_length is not None and received < plan.body_length:
        raise _TransferError(f"connection closed after {received} of {plan.body_length} bytes")


def _transfer(remote: RemoteFile, part: Path, timeout: float, progress: bool) -> _Digest:
    """Completes ``part`` from the server, resuming what is there; returns the whole file's digest."""
    offset = part.stat().st_size if part.is_file() else 0
    if remote.size is not None and offset > remote.size:
        logger.warning("%s is longer than the expected file; restarting", part)
        offset = 0
    if offset and offset == remote.size:
        return _hash_file(part)  # complete already: only the check remains
    try:
        response = _open(remote, offset, timeout)
    except _RangeNotSatisfiableError as e:
        if e.total == offset:  # the part holds as many bytes as the server's whole file
            return _hash_file(part)
        logger.warning("%s cannot resume %s (%s); restarting", remote.url, part, e)
        offset = 0
        response = _open(remote, offset, timeout)
    with response:
        plan = _plan(response, offset, remote.url)
        if plan is None:
            part.unlink()
            raise _TransferError(f"{remote.url} cannot resume at byte {offset}; restarting")
        _check_total(remote, plan)
        digest = _hash_file(part, plan.start) if plan.start else _Digest()
        _stream(response, part, plan, digest, progress)
    return digest


def _finish(remote: RemoteFile, part: Path, final: Path, digest: _Digest) -> Downloaded:
    """Moves a verified part file into place; deletes it and raises ChecksumError otherwise."""
    problem = _mismatch(remote, digest)
    if problem is not None:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"{remote.url} gave {problem}: the download was deleted; "
            "run again to download afresh, and report it if it persists"
        )
    os.replace(part, final)
    logger.info("%s: %d bytes, md5 %s, sha256 %s", final, digest.size, remote.md5, digest.sha256.hexdigest())
    return _downloaded(final, digest)


def download(
    remote: RemoteFile,
    directory: str | os.PathLike[str],
    *,
    retries: int = 5,
    timeout: float = 30.0,
    progress: bool = True,
    backoff: float = 1.0,
) -> Downloaded:
    """Like :func:`fetch`, and returns the file's size, MD5 and SHA-256 as well."""
    _check_remote(remote, retries, timeout)
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / remote.name
    existing = _verified_existing(final, remote)
    if existing is not None:
        return existing
    part = folder / (remote.name + PART_SUFFIX)
    last_error: BaseException | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(backoff * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS))
        try:
            digest = _transfer(remote, part, timeout, progress)
        except ChecksumError:
            part.unlink(missing_ok=True)
            raise
        except _RETRYABLE as e:
            last_error = e
            logger.warning("attempt %d of %d for %s failed: %s", attempt + 1, retries + 1, remote.url, e)
            continue
        return _finish(remote, part, final, digest)
    kept = f"; the next run resumes {part}" if part.is_file() else ""
    raise RuntimeError(
        f"could not download {remote.url} after {retries + 1} attempts (last error: {last_error}){kept}"
    ) from last_error


def fetch(
    remote: RemoteFile,
    directory: str | os.PathLike[str],
    *,
    retries: int = 5,
    timeout: float = 30.0,
    progress: bool = True,
    backoff: float = 1.0,
) -> Path:
    """Downloads ``remote`` into ``directory`` and verifies it; returns the file's path.

    A file already in place that verifies is kept without any request.

    Args:
        remote: what to download and the digests it must have.
        directory: destination folder, created if needed.
        retries: further attempts after the first, for failures that may heal (time-outs, resets,
            short transfers, 5xx); each resumes the part file.
        timeout: seconds for connecting and for each read from the socket.
        progress: draw a tqdm progress bar on stderr.
        backoff: seconds before the first retry; doubles each time, at most 60 s.

    Returns:
        ``directory / remote.name``.

    Raises:
        ValueError: for a malformed ``remote`` or bad settings.
        ChecksumError: (a RuntimeError) when the bytes are not the expected file; nothing is kept.
        RuntimeError: when every attempt failed (naming the URL), or at once for a failure that no
            retry heals: an HTTP error such as 404, a host name that does not resolve, no route to
            the host, a refused connection.
        OSError: when the destination cannot be written.
    """
    found = download(remote, directory, retries=retries, timeout=timeout, progress=progress, backoff=backoff)
    return found.path
