"""Progress of a run: a tqdm bar on a terminal, else a plain line every ``interval`` seconds."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

LOG_INTERVAL_SECONDS = 30.0


class Progress:
    """Counts finished inputs and audio seconds; shows files, audio hours, speed and ETA.
    ``started``: the run's ``time.perf_counter()``, so its speed is the summary's."""

    def __init__(
        self,
        total: int,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float = LOG_INTERVAL_SECONDS,
        started: float | None = None,
    ) -> None:
        self._stream = stream or sys.stderr
        self._total, self._enabled, self._interval = total, enabled, interval
        self.files = self.failed = 0
        self.audio_seconds = 0.0
        self.seconds: float | None = None  # the run's wall time, once closed
        self._last_log = time.perf_counter()
        self._started = self._last_log if started is None else started
        self._bar: Any = None
        if enabled and self._stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="file", file=self._stream, dynamic_ncols=True)

    def update(self, audio_seconds: float, failed: bool = False) -> None:
        self.files += 1
        self.failed += failed
        self.audio_seconds += audio_seconds
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(1)
        elif self._enabled and time.perf_counter() - self._last_log >= self._interval:
            self._log()

    def close(self) -> None:
        """Closes the bar, or logs the last line; :attr:`seconds` is then the run's wall time."""
        self.seconds = time.perf_counter() - self._started
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.close()
        elif self._enabled:
            self._log()

    def _elapsed(self) -> float:
        return max(self.seconds if self.seconds is not None else time.perf_counter() - self._started, 1e-9)

    def _postfix(self) -> str:
        speed = self.audio_seconds / self._elapsed()
        return f"{self.audio_seconds / 3600:.2f} h audio, {speed:.0f}x realtime"

    def _log(self) -> None:
        self._last_log = time.perf_counter()
        rate = self.files / self._elapsed()
        eta = (self._total - self.files) / rate if rate > 0 else float("inf")
        print(
            f"vggish: {self.files}/{self._total} files ({self.failed} failed), {self._postfix()}, "
            f"{rate:.1f} files/s, ETA {eta:.0f} s",
            file=self._stream,
            flush=True,
        )
