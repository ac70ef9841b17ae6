"""kill -9 of a whole index run midway, then a rerun: the dataset equals one from an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import MOCLIP, cli_env
from helpers.datasets import motion_corpus
from helpers.procs import stop

from moclip.dataset import load_features, read_manifest, read_metadata, read_run_details

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def index_cmd(corpus: Path, out: Path) -> list[str]:
    return [MOCLIP, "index", str(corpus), "--out", str(out), "--clip-weights", "none", "--frames", "2",
            "--workers", "2", "--shard-size", "1", "--precision", "fp32"]


def env(tmp_path: Path, run: str) -> dict:
    """Each run its own Prefect home: the SIGKILL below must not leave a database another run depends on."""
    return cli_env(tmp_path / f"prefect-{run}")


def test_kill_9_then_rerun_equals_uninterrupted(tmp_path):
    corpus = motion_corpus(tmp_path / "corpus", per_class=4, n_frames=30)  # 16 videos, 16 shards
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    # the uninterrupted reference runs alongside the run that is killed (its own output and Prefect home)
    ref_log = tmp_path / "ref.log"
    with ref_log.open("w") as log:
        reference = subprocess.Popen(index_cmd(corpus, ref), env=env(tmp_path, "ref"), stdout=log, stderr=log,
                                     start_new_session=True)
    try:
        proc = subprocess.Popen(index_cmd(corpus, killed), env=env(tmp_path, "killed"), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while len(list(killed.glob("part-*.parquet"))) < 3:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its Prefect server, the Dask scheduler and workers
        proc.wait(30)
        partial = len(list(killed.glob("part-*.parquet")))
        assert 3 <= partial < 16 and not (killed / "_manifest.json").exists()
        assert reference.wait(600) == 0, ref_log.read_text()[-2000:]
    finally:
        stop(reference)  # the whole process group, if it still runs

    r = subprocess.run(index_cmd(corpus, killed), env=env(tmp_path, "rerun"), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"16 videos: {16 - partial} indexed, 0 failed, {partial} unchanged" in r.stdout  # resumed, not redone

    a, b = read_metadata(str(ref)), read_metadata(str(killed))
    assert list(a["video_id"]) == list(b["video_id"]) and b["video_id"].is_unique
    assert list(a["status"]) == list(b["status"]) == ["ok"] * 16
    fa, fb = load_features(str(ref)), load_features(str(killed))
    assert np.array_equal(fa.mv, fb.mv) and np.array_equal(fa.clip, fb.clip)
    assert not list(killed.glob(".tmp-*"))
    assert_same_manifest(read_manifest(str(ref)), read_manifest(str(killed)), partial, killed)


def assert_same_manifest(ref: dict, got: dict, partial: int, out: Path) -> None:
    """The whole manifest equals the uninterrupted run's, but for timestamps, run ids in shard names and the run
    history, which records what each run did (the rerun indexed only what the killed run had not written)."""
    stable = set(ref) - {"created_at", "updated_at", "shards", "runs"}
    assert set(got) == set(ref) and {k: got[k] for k in stable} == {k: ref[k] for k in stable}
    assert got["shards"] == sorted(p.name for p in out.glob("part-*.parquet")) and len(got["shards"]) == 16
    assert len(got["runs"]) == 1  # the killed run never got to write a manifest
    a, b = ref["runs"][-1], got["runs"][-1]
    assert (a["corpus_videos"], a["indexed_ok"], a["unchanged"]) == (16, 16, 0)
    assert (b["corpus_videos"], b["indexed_ok"], b["unchanged"], b["failed"]) == (16, 16 - partial, partial, 0)
    assert b["crashed_shards"] == [] and b["settings_hash"] == a["settings_hash"] == got["settings_hash"]
    a, b = read_run_details(str(out.parent / "ref"), a), read_run_details(str(out), b)  # the runs' id lists
    assert len(b["changes"]["new"]) == 16 - partial and set(b["changes"]["new"]) < set(a["changes"]["new"])
