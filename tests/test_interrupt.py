"""Stopping an index run: nothing it started outlives the CLI, and Ctrl-C stops it within seconds.

A killed run (kill -9 or SIGTERM of the CLI) used to leave its Prefect server running, and Ctrl-C took minutes
(its server died at once, and the flow engine retried its reports against it) to end with a ConnectError.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from helpers.cli import MOCLIP, cli_env
from helpers.datasets import motion_corpus

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INTERRUPTED = "moclip: interrupted; rerun the same command to resume"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    # 16 videos, one shard each: the run is still busy when the first shard is written
    return motion_corpus(tmp_path_factory.mktemp("interrupt") / "corpus", per_class=4, n_frames=30)


def index_cmd(corpus: Path, out: Path) -> list[str]:
    return [MOCLIP, "index", str(corpus), "--out", str(out), "--clip-weights", "none", "--frames", "2",
            "--workers", "2", "--shard-size", "1", "--precision", "fp32"]


class Run:
    """``moclip index`` in a process group of its own, with a Prefect home that no other process has: each process
    the run starts (its server, the workers' fork server, workers, decoders) inherits it in its environment."""

    def __init__(self, corpus: Path, tmp_path: Path) -> None:
        self.out, self.home, self.log = tmp_path / "out", tmp_path / "prefect", tmp_path / "cli.log"
        self.cmd, self.env = index_cmd(corpus, self.out), cli_env(tmp_path / "prefect")
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=log, stderr=log, start_new_session=True)

    def wait_working(self, timeout_s: float = 600) -> None:
        """Until the first shard is written: the server, the fork server and the workers are all up."""
        deadline = time.monotonic() + timeout_s
        while not list(self.out.glob("part-*.parquet")):
            assert self.proc.poll() is None, f"the run ended early:\n{self.stderr()[-2000:]}"
            assert time.monotonic() < deadline, "no shard written in time"
            time.sleep(0.05)

    def processes(self) -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter():
            try:
                if p.environ().get("PREFECT_HOME") == str(self.home) and p.status() != psutil.STATUS_ZOMBIE:
                    found.append(p)
            except (psutil.Error, OSError):  # gone, a zombie, or not ours to read
                pass
        return found

    def assert_none_left(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, "left running: " + "; ".join(" ".join(p.cmdline())[:100] for p in left)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def cleanup(self) -> None:
        """Whatever a failed test left: the CLI's group, then any process of the run outside it."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        for p in self.processes():
            p.kill()


@pytest.fixture
def run(corpus, tmp_path):
    r = Run(corpus, tmp_path)
    yield r
    r.cleanup()


def test_ctrl_c_stops_within_seconds_and_the_rerun_resumes(run):
    run.wait_working()
    t0 = time.monotonic()
    os.killpg(run.proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole foreground process group
    code = run.proc.wait(60)  # it took 3.5 min before; seconds now
    stopped_s = time.monotonic() - t0
    err = run.stderr()
    assert code == 130, err[-2000:]
    assert INTERRUPTED in err and "ConnectError" not in err and "Traceback" not in err, err[-2000:]
    run.assert_none_left()
    print(f"Ctrl-C to exit: {stopped_s:.1f} s")

    partial = len(list(run.out.glob("part-*.parquet")))
    r = subprocess.run(run.cmd, env=run.env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{partial} unchanged" in r.stdout, r.stdout  # resumed: what was written is not indexed again


def test_kill_9_of_the_cli_leaves_no_process(run):
    run.wait_working()
    before = run.processes()
    assert any("uvicorn" in p.cmdline() for p in before) and len(before) >= 3  # CLI, server, fork server, ...
    os.kill(run.proc.pid, signal.SIGKILL)  # the CLI alone: it runs no exit hook, its children are not signalled
    run.proc.wait(30)
    run.assert_none_left()


def test_sigterm_of_the_cli_stops_cleanly(run):
    run.wait_working()
    os.kill(run.proc.pid, signal.SIGTERM)  # the CLI alone, as a supervisor or `kill` does
    code = run.proc.wait(60)
    err = run.stderr()
    assert code == 128 + signal.SIGTERM, err[-2000:]
    assert INTERRUPTED in err and "Traceback" not in err, err[-2000:]
    run.assert_none_left()
