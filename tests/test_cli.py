"""The `moclip` command as a user runs it: a real process, a real Prefect server, real Dask workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from video_factory import make_video

MOCLIP = Path(sys.executable).parent / "moclip"
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def moclip(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # as a user runs it: the CLI brings its own server and log settings
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_LOGGING_LEVEL")}
    return subprocess.run([str(MOCLIP), *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_index_command(tmp_path):
    corpus = tmp_path / "corpus"
    make_video(corpus / "pan_right" / "a.mp4", dx=3, n_frames=24)
    make_video(corpus / "pan_left" / "b.avi", codec="mpeg4", dx=-3, n_frames=24)
    (corpus / "pan_left" / "broken.mp4").write_bytes(b"garbage" * 100)
    out = tmp_path / "feats"
    r = moclip("index", str(corpus), "--out", str(out), "--clip-weights", "none", "--workers", "1", "--frames", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "3 videos: 2 indexed, 1 failed, 0 unchanged, 0 deleted" in r.stdout
    assert "failed: pan_left/broken.mp4:" in r.stderr
    df = pd.read_parquet(out)
    assert sorted(df["status"]) == ["failed", "ok", "ok"]
    assert (out / "_manifest.json").exists()


def test_bad_parameters_are_rejected_before_any_work(tmp_path):
    r = moclip("index", str(tmp_path), "--out", str(tmp_path / "o"), "--shard-size", "0", timeout=60)
    assert r.returncode == 2 and "shard_size" in r.stderr
    r = moclip("index", str(tmp_path), "--out", str(tmp_path / "o"), "--grid", "15by20", timeout=60)
    assert r.returncode == 2 and "grid must look like 15x20" in r.stderr


def test_missing_corpus_is_a_clear_error(tmp_path):
    r = moclip("index", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--clip-weights", "none", timeout=120)
    assert r.returncode == 1
    assert "nope" in r.stderr and "Traceback" not in r.stderr
