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


def test_training_epochs_are_a_bar_in_a_terminal_and_lines_in_logs(monkeypatch):
    from moclip.progress import CONSOLE_ENV, Epochs

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    logged: list[str] = []
    monkeypatch.setenv(CONSOLE_ENV, "1")  # the `moclip` command, in a terminal
    out = Tty()
    with Epochs("mv-net", 40, logged.append, stream=out) as epochs:
        for e in range(12):  # early stopping after 12 of 40
            epochs(e, 2.0 - e / 10, 0.1 * e / 2)
    assert logged == [] and "val top-1 0.550" in out.getvalue() and "12/12" in out.getvalue()
    monkeypatch.delenv(CONSOLE_ENV)  # a deployment's log: a line per epoch, no bar
    with Epochs("mv-net", 40, logged.append, stream=Tty()) as epochs:
        epochs(0, 2.0, 0.25)
    assert logged == ["mv-net epoch 0: loss 2.000 val top-1 0.250"] and epochs.bar is None
