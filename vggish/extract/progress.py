"""Progress of a run: a tqdm bar on a terminal, else a plain line every ``interval`` seconds."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

LOG_INTERVAL_SECONDS = 30.0


class Progress:
    """Counts finished inputs and audio seconds; shows files, audio hours, speed and ETA.

    Args:
        total: inputs to process in this run.
        enabled: show anything at all.
        stream: where to show it (default: stderr).
        interval: seconds between plain log lines when ``stream`` is not a terminal.
    """

    def __init__(
        self,
        total: int,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float = LOG_INTERVAL_SECONDS,
    ) -> None:
        self._stream = stream or sys.stderr
        self._total, self._enabled, self._interval = total, enabled, interval
        self.files = self.failed = 0
        self.audio_seconds = 0.0
        self._started = self._last_log = time.perf_counter()
        self._bar: Any = None
        if enabled and self._stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="file", file=self._stream, dynamic_ncols=True)

    def update(self, audio_seconds: float, failed: bool = False) -> None:
        """Records one finished input."""
        self.files += 1
        self.failed += failed
        self.audio_seconds += audio_seconds
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(1)
        elif self._enabled and time.perf_counter() - self._last_log >= self._interval:
            self._log()

    def close(self) -> None:
        """Closes the bar, or logs the last line."""
        if self._bar is not None:
            self._bar.close()
        elif self._enabled:
            self._log()

    def _postfix(self) -> str:
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        return f"{self.audio_seconds / 3600:.2f} h audio, {self.audio_seconds / elapsed:.0f}x realtime"

    def _log(self) -> None:
        self._last_log = now = time.perf_counter()
        elapsed = max(now - self._started, 1e-9)
        rate = self.files / elapsed
        eta = (self._total - self.files) / rate if rate > 0 else float("inf")
        print(
            f"vggish: {self.files}/{self._total} files ({self.failed} failed), {self._postfix()}, "
            f"{rate:.1f} files/s, ETA {eta:.0f} s",
            file=self._stream,
            flush=True,
        )
