"""Both MV backends reproduce the mv-extractor project's reference motion vectors exactly."""

from __future__ import annotations

import numpy as np
import pytest

from moclip.video import BACKENDS
from moclip.video.frames import mv_columns

CASES = [("vid_h264.mp4", "h264"), ("vid_mpeg4_part2.mp4", "mpeg4_part2")]


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("video,ref", CASES)
def test_reference_mvs_match_exactly(shared_data, backend, video, ref):
    base = shared_data / "peer" / "mv-extractor"
    if not (base / video).exists():
        pytest.skip(f"{base / video} missing")
    types = (base / "reference" / ref / "frame_types.txt").read_text().split()
    _, frames = BACKENDS[backend](str(base / video))
    n = 0
    for frame in frames:
        if frame.index >= 60:
            break
        expected = np.load(base / "reference" / ref / "motion_vectors" / f"mvs-{frame.index}.npy")
        mvs = mv_columns(frame.mvs)
        assert mvs.shape == expected.shape, f"frame {frame.index}"
        assert np.array_equal(mvs, expected.astype(mvs.dtype)), f"frame {frame.index}"
        assert frame.pict_type == types[frame.index], f"frame {frame.index}"
        n += 1
    assert n == 60
