"""Progress of a long job: a bar in a terminal, a line every few seconds anywhere else (cron, CI, log files).

tqdm turns itself off when its stream is not a terminal (``disable=None``), so a job run under cron printed nothing
for its whole length. ``Progress`` keeps the bar for terminals and otherwise prints a plain line every
``MOCLIP_PROGRESS_SECONDS`` (default 10) and one at the end.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
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


class Epochs:
    """A model's training epochs, called as ``fit``'s ``on_epoch``: when a person watches the `moclip` command in a
    terminal, one bar with the latest loss and validation top-1; anywhere else (deployments, logs, CI), a line per
    epoch through ``log``."""

    def __init__(self, name: str, total: int, log: Callable[[str], None], stream: TextIO | None = None) -> None:
        self.name, self.log = name, log
        stream = stream or sys.stderr
        tty = bool(os.environ.get(CONSOLE_ENV)) and getattr(stream, "isatty", lambda: False)()
        self.bar = tqdm(total=total, desc=name, unit="epoch", file=stream) if tty else None

    def __call__(self, epoch: int, loss: float, val_top1: float) -> None:
        if self.bar is None:
            self.log(f"{self.name} epoch {epoch}: loss {loss:.3f} val top-1 {val_top1:.3f}")
            return
        self.bar.set_postfix_str(f"loss {loss:.3f}, val top-1 {val_top1:.3f}", refresh=False)
        self.bar.update(1)

    def __enter__(self) -> Epochs:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            if self.bar.n < (self.bar.total or 0):  # stopped early: the bar ends where training did
                self.bar.total = self.bar.n
                self.bar.refresh()
            self.bar.close()
