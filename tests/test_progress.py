"""Long jobs show progress without a terminal too (cron, CI): a line every few seconds and one at the end."""

from __future__ import annotations

import io
import re

from moclip.progress import Progress


def test_lines_without_a_terminal():
    out = io.StringIO()  # not a TTY
    with Progress(4, "index", stream=out, interval_s=0) as p:
        for _ in range(4):
            p.update(1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and lines[0].startswith("index: 1/4 videos (25 %)") and "left" in lines[0]
    assert re.fullmatch(r"index: 4/4 videos \(100 %\), \d+ s elapsed", lines[-1])


def test_interval_limits_the_lines_and_the_end_is_always_said():
    out = io.StringIO()
    with Progress(1000, "index", stream=out, interval_s=3600) as p:
        for _ in range(999):
            p.update(1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("index: 999/1000 videos")  # said at close, not per update


def test_a_terminal_gets_a_bar():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    with Progress(3, "index", stream=out) as p:
        p.update(3)
    assert p.bar is not None and "3/3" in out.getvalue()
