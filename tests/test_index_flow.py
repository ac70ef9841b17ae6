"""The index flow end to end: real videos, real Prefect server, real Dask LocalCluster, real Parquet."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from helpers.videos import make_video

from moclip.dataset import load_features, read_manifest, read_metadata
from moclip.params import IndexParams

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for i in range(3):
        make_video(root / "right" / f"r{i}.mp4", dx=3, n_frames=30, seed=i)
        make_video(root / "left" / f"l{i}.avi", codec="mpeg4", bframes=2, dx=-3, n_frames=30, seed=10 + i)
    (root / "left" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    (root / "right" / "notes.avi").write_text("this is not a video\n")
    return root


def run(corpus: Path, out: Path) -> dict:
    from flows.index_flow import index_corpus

    params = IndexParams(corpus={"root": str(corpus)}, out=str(out), run={"workers": 2, "shard_size": 3},
                         features={"clip": {"weights": "none", "frames": 4}})
    return index_corpus(params)


def test_index_rerun_and_changes(prefect_api, corpus, tmp_path):
    out = tmp_path / "ds"
    s1 = run(corpus, out)
    assert s1.corpus_videos == 8
    assert s1.indexed_ok == 6 and s1.failed == 2 and not s1.crashed_shards
    reasons = {f.video_id: f.reason for f in s1.failures}
    assert set(reasons) == {"left/corrupt.mp4", "right/notes.avi"}
    assert all(r for r in reasons.values())

    # readable as is by pandas, pyarrow.dataset and duckdb
    df = pd.read_parquet(out)
    assert len(df) == 8 and df["video_id"].is_unique
    assert ds.dataset(out, format="parquet").count_rows() == 8
    n_ok = duckdb.sql(f"select count(*) from read_parquet('{out}/*.parquet') where status = 'ok'").fetchall()[0][0]
    assert n_ok == 6
    failed = df[df.status == "failed"]
    assert failed["error"].str.len().min() > 5 and failed["mv"].isna().all()

    feats = load_features(str(out))
    assert feats.mv.shape == (6, 8, 2, 15, 20) and feats.clip.shape == (6, 4, 512)
    # motion direction is in the features: left clips move left, right clips right
    vx = feats.mv[:, :, 0, 2:-2, 2:-2].mean(axis=(1, 2, 3))
    labels = feats.meta["label"].to_numpy()
    assert (vx[labels == "right"] > 0.5).all() and (vx[labels == "left"] < -0.5).all()

    manifest = read_manifest(str(out))
    assert manifest["clip_random_init"] is True and manifest["clip_weights_id"] == "random-init"
    assert manifest["settings_hash"] == df["settings_hash"].iloc[0]
    assert manifest["settings"]["mv"]["segments"] == 8

    # the work ran in Dask worker processes, not in this one
    assert s1.workers and all(not w.endswith(f":{os.getpid()}") for w in s1.workers)
    shard_files = sorted(p.name for p in out.glob("part-*.parquet"))
    assert len(shard_files) == 4  # 8 videos at shard size 3 on 2 workers: 4 shards of 2, no lone tail shard

    # a rerun with nothing new decodes nothing and writes no shard
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    s2 = run(corpus, out)
    assert s2.unchanged == 8 and s2.indexed_ok == 0 and s2.frames_decoded == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")} == mtimes

    # change one file, delete one, add one
    changed = corpus / "right" / "r0.mp4"
    make_video(changed, dx=5, n_frames=40, seed=99)
    shutil.move(corpus / "left" / "l2.avi", tmp_path / "l2.avi")
    make_video(corpus / "up" / "u0.mp4", dy=-3, n_frames=30)
    s3 = run(corpus, out)
    assert (s3.new, s3.reindexed, s3.deleted) == (1, 1, 1)
    assert s3.changes.model_dump() == {"new": ["up/u0.mp4"], "reindexed": ["right/r0.mp4"],
                                       "deleted": ["left/l2.avi"], "restored": []}
    assert s3.indexed_ok == 2
    meta = read_metadata(str(out))
    assert meta["video_id"].is_unique and len(meta) == 9
    row = meta.set_index("video_id")
    assert row.loc["left/l2.avi", "status"] == "deleted"
    assert row.loc["right/r0.mp4", "n_frames"] == 40
    assert row.loc["up/u0.mp4", "status"] == "ok"
    assert np.isfinite(load_features(str(out)).mv).all()
    shutil.move(tmp_path / "l2.avi", corpus / "left" / "l2.avi")


def test_a_plan_bigger_than_the_prefect_parameter_limit_runs(prefect_api, tmp_path):
    """The shard plan is not a flow-run parameter: the Prefect API refuses parameters over 512 KB (a 10,000-video
    corpus makes ~1.3 MB). 300 empty files with ~1,800-character paths make a ~1 MB plan; each must end as a
    `failed` row ("empty file") without decoding anything."""
    deep = tmp_path / "c"
    for level in range(7):
        deep = deep / (f"{level}" * 250)
    deep.mkdir(parents=True)
    for i in range(300):
        (deep / f"v{i:03d}.mp4").write_bytes(b"")
    from flows.index_flow import index_corpus

    s = index_corpus(IndexParams(corpus={"root": str(tmp_path / "c"), "layout": "unlabeled"}, out=str(tmp_path / "ds"),
                                 features={"clip": {"weights": "none", "frames": 1}},
                                 run={"workers": 2, "shard_size": 64}))
    assert s.corpus_videos == 300 and s.failed == 300 and not s.crashed_shards
    assert {f.reason for f in s.failures} == {"empty file (0 bytes)"}


def test_an_index_run_waits_for_another_writer_of_its_dataset(prefect_api, tmp_path):
    """Two runs on one dataset (a label job indexing into it while the nightly re-index runs): the second waits for
    the first's lock, then indexes against the finished state. Here a thread holds the lock, as a run would, until
    the flow says it is waiting; it checks that nothing was written meanwhile."""
    import logging
    import threading

    from filelock import FileLock

    from flows.index_flow import index_corpus
    from moclip.dataset.lock import LOCK_NAME

    corpus = tmp_path / "corpus"
    for i, dx in enumerate((3, -3)):
        make_video(corpus / ("right" if dx > 0 else "left") / f"v{i}.mp4", dx=dx, n_frames=16, seed=i)
    out = tmp_path / "ds"
    out.mkdir()
    waiting, held, seen = threading.Event(), threading.Event(), []

    class Said(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waiting for it to finish" in record.getMessage():
                waiting.set()

    def other_run() -> None:
        lock = FileLock(str(out / LOCK_NAME))
        with lock:
            held.set()
            waiting.wait(120)
            seen.append((waiting.is_set(), sorted(p.name for p in out.iterdir())))

    said = Said()
    logging.getLogger("prefect.flow_runs").addHandler(said)  # the flow's run logger says it waits
    holder = threading.Thread(target=other_run)
    holder.start()
    try:
        assert held.wait(30)
        s = index_corpus(IndexParams(corpus={"root": str(corpus)}, out=str(out), run={"workers": 1},
                                     features={"clip": {"weights": "none", "frames": 2}}))
    finally:
        waiting.set()
        holder.join(30)
        logging.getLogger("prefect.flow_runs").removeHandler(said)
    assert seen == [(True, [LOCK_NAME])]  # the flow waited, and wrote nothing while the other run held the lock
    assert s.indexed_ok == 2 and len(pd.read_parquet(out)) == 2
