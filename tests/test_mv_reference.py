"""Both MV backends reproduce the mv-extractor project's reference motion vectors exactly."""

from __future__ import annotations

from pathlib import Path

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


# --- golden clips shipped in the repo: the same checks on a fresh clone, without ../shared -----------------------

GOLDEN = Path(__file__).parent / "data" / "golden"
GOLDEN_CLIPS = ["tiny_h264.mp4", "tiny_mpeg4.avi"]  # 24 frames, 160x120, B-frames; made by make_golden.py


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("clip", GOLDEN_CLIPS)
def test_golden_clips_give_their_golden_mvs_and_tensor(backend, clip):
    """Every frame's raw MVs and picture type, and the pooled T x 2 x H x W tensor, bit for bit."""
    from moclip.config import MVConfig
    from moclip.video import extract_video

    path = GOLDEN / clip
    gold = np.load(GOLDEN / f"{path.stem}.{backend}.npz")
    _, frames = BACKENDS[backend](str(path))
    seen = 0
    for frame in frames:
        key = f"{frame.index:03d}"
        assert np.array_equal(mv_columns(frame.mvs), gold[f"mvs_{key}"]), f"{clip} frame {frame.index}"
        assert frame.pict_type == str(gold[f"type_{key}"])
        seen += 1
    assert seen == 24 and "B" in {str(gold[k]) for k in gold if k.startswith("type_")}
    feats = extract_video(str(path), MVConfig(backend=backend), 1)
    assert np.array_equal(feats.motion.values, gold["tensor"]) and np.array_equal(feats.motion.valid, gold["valid"])
    assert feats.motion.values.shape == (8, 2, 15, 20)


@pytest.mark.parametrize("clip", GOLDEN_CLIPS)
def test_backends_agree_on_every_i_and_p_frame(clip):
    """PyAV and mvextractor read the same MVs from I- and P-frames; on H.264 on B-frames too (MPEG-4 Part 2
    B-frames differ: docs/MOTION_VECTORS.md explains why PyAV is the default)."""
    stem = Path(clip).stem
    a, b = np.load(GOLDEN / f"{stem}.pyav.npz"), np.load(GOLDEN / f"{stem}.mvextractor.npz")
    for key in (k for k in a if k.startswith("mvs_")):
        kind = str(a[f"type_{key[4:]}"])
        if kind != "B" or clip.endswith(".mp4"):
            assert np.array_equal(a[key], b[key]), (clip, key, kind)
