"""Long videos across workers, end to end: a real index flow (Prefect, a Dask LocalCluster of 2 workers, Parquet)
decodes each long video's ranges as separate tasks and writes the row a whole decode gives."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from helpers.videos import make_scenes, make_video

from moclip.dataset import read_table
from moclip.params import IndexParams

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FEATURES = {"clip": {"weights": "none", "frames": 2, "precision": "fp32"}, "mv": {"segments": 4},
            "window": {"seconds": 2.0, "stride": 1.0, "frames": 2}}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("long")
    make_scenes(root / "a" / "long.mp4", 24.0)  # x264 defaults: B-pyramid, 3 references
    make_scenes(root / "a" / "long_vfr.mp4", 20.0, vfr=True, size=(160, 120))
    make_video(root / "b" / "short.mp4", n_frames=60)
    return root


def index(root, out, **run) -> object:
    from flows.index_flow import index_corpus

    params = IndexParams(corpus={"root": str(root)}, out=str(out), features=FEATURES,
                         run={"workers": 2, "split_s": 10.0, "range_s": 5.0, **run})
    return index_corpus(params)


def rows(out) -> pd.DataFrame:
    return read_table(str(out)).to_pandas().set_index("video_id").sort_index()


def test_long_videos_are_indexed_in_ranges_into_the_row_of_a_whole_decode(prefect_api, corpus, tmp_path):
    split = index(corpus, tmp_path / "split")
    whole = index(corpus, tmp_path / "whole", split_s=0.0)
    assert split.indexed_ok == whole.indexed_ok == 3 and split.failed == 0
    names = sorted(p.name for p in (tmp_path / "split").glob("part-*.parquet"))
    assert sum("-L" in n for n in names) == 2  # each long video its own shard file
    a, b = rows(tmp_path / "split"), rows(tmp_path / "whole")
    for vid in a.index:
        for col in ("mv", "mv_valid", "mv_shape", "frame_indices", "n_frames", "n_mv_frames", "window_start_s",
                    "window_end_s", "window_first_bin", "window_first_frame", "window_clock", "clip_shape"):
            assert np.array_equal(np.asarray(a.at[vid, col]), np.asarray(b.at[vid, col])), (vid, col)
        assert np.asarray(a.at[vid, "mv"]).tobytes() == np.asarray(b.at[vid, "mv"]).tobytes()  # bit for bit
        # the same frames; CLIP's output may differ in the last bits with the batch the frames came in
        np.testing.assert_allclose(np.asarray(a.at[vid, "clip"]), np.asarray(b.at[vid, "clip"]), atol=1e-4)
    assert len(a.at["a/long.mp4", "window_start_s"]) == 23

    # a rerun decodes nothing; a changed long video is decoded again, in ranges, and replaces its row
    again = index(corpus, tmp_path / "split")
    assert again.unchanged == 3 and again.frames_decoded == 0
    make_scenes(corpus / "a" / "long.mp4", 22.0)
    changed = index(corpus, tmp_path / "split")
    assert changed.indexed_ok == 1 and changed.unchanged == 2
    c = rows(tmp_path / "split")
    assert len(c) == 3 and len(c.at["a/long.mp4", "window_start_s"]) == 21


def test_a_range_that_fails_fails_its_video_with_the_range_named(prefect_api, corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("MOCLIP_FAULT_INJECT", "slow:long_vfr")  # 0.1 s a frame: past the 3 s decode limit
    s = index(corpus, tmp_path / "ds", decode_timeout_s=3.0)
    assert s.indexed_ok == 2 and s.failed == 1
    reason = dict((f.video_id, f.reason) for f in s.failures)["a/long_vfr.mp4"]
    assert re.match(r"range 1 of \d \(0\.0-\d+\.\d s\): decoding took longer than 3 s", reason), reason
    assert rows(tmp_path / "ds").at["a/long_vfr.mp4", "status"] == "failed"


def test_a_range_whose_worker_dies_is_tried_again_then_fails_its_video_alone(prefect_api, corpus, tmp_path,
                                                                             monkeypatch):
    monkeypatch.setenv("MOCLIP_FAULT_INJECT", "crash:long_vfr")  # a real SIGSEGV in the worker, every time
    s = index(corpus, tmp_path / "ds", range_s=7.0)  # 16 s: 2 ranges, each crashes its worker twice
    assert s.indexed_ok == 2 and s.failed == 1 and not s.crashed_shards
    reason = dict((f.video_id, f.reason) for f in s.failures)["a/long_vfr.mp4"]
    assert re.match(r"range 1 of 2 \(0\.0-\d+\.\d s\): \w+.* \(twice\)", reason), reason
    r = rows(tmp_path / "ds")
    assert r.at["a/long.mp4", "status"] == "ok" and r.at["b/short.mp4", "status"] == "ok"
