"""A decoder that crashes (real SIGSEGV) or hangs costs one video, not its shard or the run.

Faults come from the test-only hook ``MOCLIP_FAULT_INJECT`` (moclip/indexing/decode.py): the process decoding a
video whose path contains the given substring kills itself with SIGSEGV or blocks forever, in the Dask worker and
in the isolated retry's child process alike.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.cli import MOCLIP, cli_env
from helpers.videos import make_video

from moclip.config import ClipConfig, FeatureSettings, RunConfig
from moclip.dataset import load_features, read_metadata
from moclip.indexing.isolated import index_shard_isolated
from moclip.indexing.shard import ShardTarget, index_shard

pytestmark = pytest.mark.integration

REASONS = {"crash": "decoder crashed (killed by SIGSEGV)", "hang": "decoder hung: no result within 3 s (hard limit)"}


def small_corpus(root: Path, names: list[str]) -> list[dict]:
    """Tiny real H.264 videos, one per name: even positions in left/, odd ones in right/; their corpus records."""
    videos = []
    for i, name in enumerate(names):
        label = "right" if i % 2 else "left"
        path = make_video(root / label / f"{name}.mp4", dx=3 if i % 2 else -3, n_frames=12, width=160, height=120,
                          seed=i)
        videos.append({"video_id": f"{label}/{name}.mp4", "path": str(path), "label": label, "split": None,
                       "group": None})
    return videos


def env(tmp_path: Path, faults: str) -> dict:
    """The CLI's environment: a Prefect home of its own, no server URL (it starts its own), the faults."""
    return cli_env(tmp_path / "prefect-home", MOCLIP_FAULT_INJECT=faults)


@pytest.mark.slow
def test_a_crash_and_a_hang_in_workers_cost_one_video_each(tmp_path):
    # 12 videos in 4 shards of 3 (left/a0 a2 a4 | left/a6 a8 crash | right/a1 a3 a5 | right/a7 a9 hang): a culprit
    # kills (SIGSEGV) or hangs its Dask worker, and every shard that worker held is retried in isolation, where
    # only the culprits fail; the run goes on with the restarted workers. Which shards a dying worker held depends
    # on Dask's scheduling, so the hang may meet its hard limit (--decode-hard-timeout, passed through to both) in
    # a Dask worker or in the isolated retry; index_shard's own hard limit on a process stuck in C has its own test.
    small_corpus(tmp_path / "corpus", [f"a{i}" for i in range(10)] + ["crash", "hang"])
    out = tmp_path / "ds"
    cmd = [MOCLIP, "index", str(tmp_path / "corpus"), "--out", str(out), "--clip-weights", "none", "--frames", "2",
           "--workers", "2", "--shard-size", "3", "--precision", "fp32", "--decode-hard-timeout", "3", "--json"]
    r = subprocess.run(cmd, env=env(tmp_path, "crash:/crash.mp4;hang:/hang.mp4"), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]

    culprits = {"crash": "left/crash.mp4", "hang": "right/hang.mp4"}
    summary = json.loads(r.stdout[r.stdout.index("\n{") + 1:])
    assert summary["indexed_ok"] == 10 and summary["failed"] == 2 and not summary["crashed_shards"]
    retries = summary["isolated_retries"]
    assert sorted(c for retry in retries for c in retry["culprits"]) == sorted(culprits.values())
    assert 2 <= len(retries) <= 4 and all("KilledWorker" in retry["error"] for retry in retries)
    assert re.search(r"\b[234] shards retried in isolation \(decoder crashed or hung on: left/crash\.mp4, "
                     r"right/hang\.mp4\)", r.stdout), r.stdout[-2000:]

    df = read_metadata(str(out)).set_index("video_id")
    assert df.index.is_unique and len(df) == 12
    for fault, culprit in culprits.items():
        assert df.loc[culprit, "status"] == "failed" and df.loc[culprit, "error"] == REASONS[fault]
    good = df.drop(list(culprits.values()))
    assert (good["status"] == "ok").all()
    feats = load_features(str(out))
    assert sorted(feats.meta["video_id"]) == sorted(good.index)
    assert feats.mv.shape[0] == 10 and feats.clip.shape == (10, 2, 512) and np.isfinite(feats.clip).all()


def test_isolated_retry_matches_index_shard(tmp_path, monkeypatch):
    """In process, no Dask: the isolated path gives the culprits their reasons and every other video the very
    features ``index_shard`` gives it."""
    monkeypatch.setenv("MOCLIP_FAULT_INJECT", "crash:/crash.mp4;hang:/hang.mp4")
    videos = small_corpus(tmp_path / "corpus", ["a0", "a1", "crash", "a3", "a4", "hang"])
    settings = FeatureSettings(clip=ClipConfig(weights="none", frames=2))
    res = index_shard_isolated(videos, "part-iso.parquet",
                               ShardTarget(features=settings, run=RunConfig(decode_hard_timeout_s=3),
                                           out=str(tmp_path / "iso"), settings_hash="h"), "KilledWorker: test")
    assert res.first_error == "KilledWorker: test"
    assert res.culprits == ["left/crash.mp4", "right/hang.mp4"]
    assert dict(res.failures) == {"left/crash.mp4": REASONS["crash"], "right/hang.mp4": REASONS["hang"]}
    assert res.n_ok == 4

    good = [v for v in videos if v["video_id"] not in res.culprits]
    index_shard(good, "part-ref.parquet",
                ShardTarget(features=settings, run=RunConfig(), out=str(tmp_path / "ref"), settings_hash="h"))
    iso = pd.read_parquet(tmp_path / "iso")
    ref = pd.read_parquet(tmp_path / "ref")
    iso = iso[iso["status"] == "ok"].reset_index(drop=True)
    assert list(iso["video_id"]) == list(ref["video_id"])
    for col in ("mv", "clip", "mv_valid", "frame_indices"):
        assert all(np.array_equal(a, b) for a, b in zip(iso[col], ref[col])), col


HUNG_WORKER = """
import sys, threading, time
from moclip.config import *
from moclip.indexing.shard import ShardTarget, index_shard

def tick():  # a Python thread: it can only run while nothing holds the GIL
    while True:
        print("tick", file=sys.stderr, flush=True)
        time.sleep(0.1)

threading.Thread(target=tick, daemon=True).start()
index_shard([dict(video_id="v", path=sys.argv[2])], "p.parquet",
            ShardTarget(features=FeatureSettings(clip=ClipConfig(weights="none", frames=2)),
                        run=RunConfig(decode_hard_timeout_s=2), out=sys.argv[1], settings_hash="h"))
"""


def test_hard_time_limit_ends_a_worker_hung_in_c_holding_the_gil(tmp_path):
    """The normal path: a decoder stuck in C inside the frame loop, holding the GIL (no Python thread runs, so no
    Python-level timer could fire), past the hard limit: faulthandler's C watchdog ends the process."""
    small_corpus(tmp_path / "corpus", ["hang"])
    t0 = time.monotonic()
    args = [sys.executable, "-c", HUNG_WORKER, str(tmp_path / "ds"), str(tmp_path / "corpus/left/hang.mp4")]
    r = subprocess.run(args, env=env(tmp_path, "hang:/hang.mp4"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Timeout (0:00:02)!" in r.stderr
    assert "_hang_after_first_frame" in r.stderr and "extract_video" in r.stderr  # stuck inside the frame loop
    hung = r.stderr.index("hanging in the frame loop, holding the GIL")
    assert r.stderr[:hung].count("tick") >= 1 and r.stderr[hung:].count("tick") <= 1  # the GIL never came back
    assert time.monotonic() - t0 < 60 and not list((tmp_path / "ds").glob("*.parquet"))


def test_soft_decode_timeout_fails_the_video_and_keeps_the_shard(tmp_path, monkeypatch):
    """``--decode-timeout`` is checked between frames: a video whose decoding takes longer (here 0.1 s per frame,
    12 frames, against a 0.5 s limit) is a failed row with the reason; the shard's other videos are indexed."""
    monkeypatch.setenv("MOCLIP_FAULT_INJECT", "slow:/slow.mp4")
    videos = small_corpus(tmp_path / "corpus", ["a0", "slow", "a2"])
    settings = FeatureSettings(clip=ClipConfig(weights="none", frames=2))
    res = index_shard(videos, "part-p.parquet",
                      ShardTarget(features=settings, run=RunConfig(decode_timeout_s=0.5),
                                  out=str(tmp_path / "ds"), settings_hash="h"))
    assert res.n_ok == 2 and dict(res.failures) == {"right/slow.mp4": "decoding took longer than 0.5 s (decode time "
                                                                       "limit)"}
    df = read_metadata(str(tmp_path / "ds")).set_index("video_id")
    assert list(df["status"]) == ["ok", "ok", "failed"] and df.loc["right/slow.mp4", "status"] == "failed"
