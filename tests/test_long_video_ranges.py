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


def test_a_range_that_fails_or_whose_worker_dies_fails_its_video_alone_naming_the_range(prefect_api, corpus,
                                                                                         tmp_path, monkeypatch):
    # long.mp4: 0.1 s a frame, past the 3 s decode limit; long_vfr.mp4: a real SIGSEGV in the worker, every time
    monkeypatch.setenv("MOCLIP_FAULT_INJECT", "slow:long.mp4;crash:long_vfr")
    s = index(corpus, tmp_path / "ds", range_s=7.0, decode_timeout_s=3.0)  # 3 ranges and 2
    assert s.indexed_ok == 1 and s.failed == 2 and not s.crashed_shards
    reasons = dict((f.video_id, f.reason) for f in s.failures)
    slow, crashed = reasons["a/long.mp4"], reasons["a/long_vfr.mp4"]
    assert re.match(r"range 1 of 3 \(0\.0-\d+\.\d s\): decoding took longer than 3 s", slow), slow
    assert re.match(r"range 1 of 2 \(0\.0-\d+\.\d s\): \w+.* \(twice\)", crashed), crashed  # tried again first
    r = rows(tmp_path / "ds")
    assert list(r["status"]) == ["failed", "failed", "ok"] and r.index[-1] == "b/short.mp4"
