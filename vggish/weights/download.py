"""Downloading files with pooch: hash-checked, atomic, retried (docs/vggish.md §6 for the official ones).

Failures that another attempt may heal (time-outs, resets, HTTP 5xx, 408, 429) are retried; the
others fail at once, in one line naming the cause. The constants below are the one source of the
official files' facts; ``weights/manifest.json`` mirrors them.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vggish.fileio import current_umask
from vggish.weights.location import OFFICIAL_CHECKPOINT_NAME, OFFICIAL_PCA_NAME

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20  # bytes read from the socket and written per step
BAR_UNITS: dict[str, Any] = {"unit": "B", "unit_scale": True, "unit_divisor": 1024}
RETRYABLE_HTTP_STATUS = frozenset({408, 425, 429})  # and every 5xx
_HEX = re.compile(r"[0-9a-f]+")
# Connection failures that retrying cannot heal: the machine has no route (offline, no interface
# up) or nothing listens on the port. Time-outs and resets are retried.
_PERMANENT_ERRNOS = {
    errno.ENETUNREACH: "the network is unreachable",
    errno.ENETDOWN: "the network is down",
    errno.EHOSTUNREACH: "there is no route to the host",
    errno.ECONNREFUSED: "the connection was refused",
}


@dataclass(frozen=True)
class RemoteFile:
    """A file to download and the digests it must have (weights/README.md: where the official
    files' MD5s come from); ``sha256`` is checked instead of the MD5 when given, ``size`` is
    listed, not checked."""

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


class DownloadError(RuntimeError):
    """The file could not be fetched: the message names the URL and the cause, in one line."""


class ChecksumError(RuntimeError):
    """The downloaded bytes are not the expected file; nothing was kept."""


def _check_remote(remote: RemoteFile, retries: int, timeout: float) -> None:
    if not remote.name or Path(remote.name).name != remote.name or remote.name in (".", ".."):
        raise ValueError(f"RemoteFile.name must be a plain file name; got {remote.name!r}")
    if urlsplit(remote.url).scheme not in ("http", "https"):
        raise ValueError(f"only http(s) URLs can be downloaded; got {remote.url!r}")
    for label, digest, length in (("md5", remote.md5, 32), ("sha256", remote.sha256, 64)):
        if digest is not None and (len(digest) != length or not _HEX.fullmatch(digest)):
            raise ValueError(f"RemoteFile.{label} must be {length} lowercase hex digits; got {digest!r}")
    if retries < 0 or not timeout > 0:
        raise ValueError(f"retries must be >= 0 and timeout > 0; got {retries} and {timeout}")


def _permanent(error: BaseException, url: str) -> str | None:
    """Why ``error`` (from requests) cannot be healed by retrying, or None when a retry may help."""
    response = getattr(error, "response", None)
    if response is not None:
        status = response.status_code
        if status >= 500 or status in RETRYABLE_HTTP_STATUS:
            return None
        return f"HTTP {status} {response.reason}"
    host = urlsplit(url).hostname
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            return f"the host name {host} does not resolve ({cause.strerror or cause}): no network or no DNS"
        if isinstance(cause, OSError) and cause.errno in _PERMANENT_ERRNOS:
            return f"{_PERMANENT_ERRNOS[cause.errno]} ({host}: {cause.strerror or cause})"
        cause = cause.__cause__ or cause.__context__
    return None


def _fetch(remote: RemoteFile, timeout: float, progress: bool, url: str, output: str, pup: object) -> None:
    """pooch's HTTP downloader with a progress bar named after the file; failures no retry heals
    leave as DownloadError, which pooch does not retry."""
    import pooch
    import requests
    from tqdm import tqdm

    # pooch sets the bar's total from Content-Length, and uses a bar only while its total > 0.
    bar = tqdm(total=1, desc=remote.name, disable=not progress, **BAR_UNITS)
    http = pooch.HTTPDownloader(progressbar=bar, chunk_size=CHUNK_BYTES, timeout=timeout)
    try:
        http(url, output, pup)
    except requests.RequestException as e:
        cause = _permanent(e, url)
        if cause is not None:
            raise DownloadError(f"could not download {url}: {cause}; not retried") from e
        logger.warning("downloading %s failed: %s", url, e)
        raise
    finally:
        bar.close()


def _digests(path: Path) -> Downloaded:
    md5, sha256, size = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            md5.update(block)
            sha256.update(block)
            size += len(block)
    return Downloaded(path, size, md5.hexdigest(), sha256.hexdigest())


def download(
    remote: RemoteFile,
    directory: str | os.PathLike[str],
    *,
    retries: int = 3,
    timeout: float = 30.0,
    progress: bool = True,
) -> Downloaded:
    """Downloads ``remote`` into ``directory`` (created if needed) and verifies it; a file already
    in place that verifies is kept without any request.

    Args:
        retries: further attempts after the first, for failures that may heal.
        timeout: seconds for connecting and for each read from the socket.

    Raises:
        ValueError: for a malformed ``remote`` or bad settings.
        ChecksumError: when the bytes are not the expected file.
        DownloadError: when every attempt failed, or at once for a failure no retry heals.
        OSError: when the destination cannot be written.
    """
    import pooch
    import requests

    _check_remote(remote, retries, timeout)
    pooch.get_logger().setLevel(logging.WARNING)  # its "Downloading ..." lines: the bar says it
    known_hash = f"sha256:{remote.sha256}" if remote.sha256 else f"md5:{remote.md5}"
    pup = pooch.Pooch(
        path=Path(directory),
        base_url="",
        registry={remote.name: known_hash},
        urls={remote.name: remote.url},
        retry_if_failed=retries,
    )

    def permissions(path: str, action: str, _: object) -> str:
        if action != "fetch":  # pooch's temporary file was made 0o600
            os.chmod(path, 0o666 & ~current_umask())
        return path

    downloader = functools.partial(_fetch, remote, timeout, progress)
    try:
        path = pup.fetch(remote.name, processor=permissions, downloader=downloader)
    except ValueError as e:  # pooch: the hash does not match
        raise ChecksumError(f"could not download {remote.url}: {e}") from e
    except requests.RequestException as e:
        raise DownloadError(
            f"could not download {remote.url} after {retries + 1} attempts (last error: {e})"
        ) from e
    found = _digests(Path(path))
    logger.info("%s: %d bytes, md5 %s, sha256 %s", found.path, found.size, found.md5, found.sha256)
    return found
