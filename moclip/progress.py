"""Progress of a long job: a bar in a terminal, a line every few seconds anywhere else (cron, CI, log files).

tqdm turns itself off when its stream is not a terminal (``disable=None``), so a job run under cron printed nothing
for its whole length. ``Progress`` keeps the bar for terminals and otherwise prints a plain line every
``MOCLIP_PROGRESS_SECONDS`` (default 10) and one at the end.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from tqdm.auto import tqdm

INTERVAL_ENV = "MOCLIP_PROGRESS_SECONDS"
CONSOLE_ENV = "MOCLIP_CONSOLE"  # set by the `moclip` command: job messages also go to its stderr
DEFAULT_INTERVAL_S = 10.0


def _interval() -> float:
    raw = os.environ.get(INTERVAL_ENV, "")
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_INTERVAL_S
    except ValueError:
        return DEFAULT_INTERVAL_S


class Progress:
    """``update(n)`` as work gets done; use as a context manager (the last line or the bar's end on exit)."""

    def __init__(self, total: int, desc: str, unit: str = "video", stream: TextIO | None = None,
                 interval_s: float | None = None) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream or sys.stderr
        self.interval_s = _interval() if interval_s is None else interval_s
        self.done = 0
        self.start = self.last = time.monotonic()
        tty = getattr(self.stream, "isatty", lambda: False)()
        self.bar = tqdm(total=total, unit=unit, desc=desc, file=self.stream) if tty else None
        self._said_done = False

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= self.interval_s or self.done >= self.total:
            self.last = now
            self._line(now)

    def _line(self, now: float) -> None:
        if self._said_done:
            return
        elapsed = now - self.start
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = ""
        if 0 < self.done < self.total:
            eta = f", about {elapsed * (self.total - self.done) / self.done:.0f} s left"
        print(f"{self.desc}: {self.done}/{self.total} {self.unit}s ({pct:.0f} %), {elapsed:.0f} s elapsed{eta}",
              file=self.stream, flush=True)
        self._said_done = self.done >= self.total

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            self._line(time.monotonic())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def console(message: str) -> None:
    """A job's progress message on stderr when a person runs the `moclip` command (which quiets Prefect's own
    logging); deployments, which log through Prefect, leave ``MOCLIP_CONSOLE`` unset and print nothing here."""
    if os.environ.get(CONSOLE_ENV):
        print(message, file=sys.stderr, flush=True)
