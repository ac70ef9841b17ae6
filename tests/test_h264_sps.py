"""moclip.video.h264 reads how many reference frames an H.264 stream keeps, from MP4's avcC or Annex B start codes,
and says "unknown" (None) for anything it cannot parse; 10-bit H.264 gets its reference matching too."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from helpers.recordings import TRUTH, disagreement, displayed, mean_motion

from moclip.config import MVConfig
from moclip.video import pyav_reader
from moclip.video.extract import extract_video
from moclip.video.h264 import max_reference_frames


def x264(path, refs: int, pix_fmt: str = "yuv420p", n: int = 12, **options: str) -> bytes:
    """A small x264 clip of the recordings' pan; its extradata (avcC)."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 320, 240, pix_fmt
        s.codec_context.time_base = Fraction(1, 25)
        s.options = {"refs": str(refs), "threads": "1", **options}
        for i, picture in enumerate(displayed([i / 25 for i in range(n)])):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            out.mux(s.encode(frame))
        out.mux(s.encode())
    with av.open(str(path)) as c:
        return bytes(c.streams.video[0].codec_context.extradata)


@pytest.mark.parametrize("refs", [1, 3, 5])
def test_avcc_and_annex_b_give_the_reference_count(tmp_path, refs):
    avcc = x264(tmp_path / "a.mp4", refs, bf="0")
    assert avcc[0] == 1 and max_reference_frames(avcc) == refs
    sps = avcc[8:8 + int.from_bytes(avcc[6:8], "big")]
    assert max_reference_frames(b"\x00\x00\x00\x01" + sps + b"\x00\x00\x01\x68\xce") == refs  # SPS, then a PPS


def ue(v: int) -> str:
    code = bin(v + 1)[2:]
    return "0" * (len(code) - 1) + code


def test_high_profile_scaling_lists_and_garbage():
    # High profile (100): sps_id, 4:2:0, 8 bit, no bypass, a scaling matrix with list 0 sent (16 deltas of 0) and
    # lists 1-7 not, log2_max_frame_num, POC type 2, then max_num_ref_frames 4
    bits = ue(0) + ue(1) + ue(0) + ue(0) + "0" + "1" + "1" + ue(0) * 16 + "0" * 7 + ue(0) + ue(2) + ue(4) + "1"
    bits = bits.ljust((len(bits) + 7) // 8 * 8, "0")
    sps = bytes([0x67, 100, 0, 30]) + int(bits, 2).to_bytes(len(bits) // 8, "big")
    assert max_reference_frames(b"\x00\x00\x01" + sps) == 4
    for junk in (None, b"", b"\x01\x02", b"\x00\x00\x01\x67", b"\x00\x00\x01\x67" + b"\x00" * 12):
        assert max_reference_frames(junk) is None


def test_ten_bit_h264_is_matched_on_its_16_bit_luma(tmp_path):
    path = tmp_path / "ten.mp4"
    x264(path, 3, pix_fmt="yuv420p10le", n=50)
    _, frames = pyav_reader.iter_frames(str(path))
    first = next(frames)
    assert first.luma is not None and first.luma.dtype == np.uint16 and first.luma.max() > 255
    f = extract_video(str(path), MVConfig(), 2)
    assert disagreement(mean_motion(f.motion.values, f.motion.valid), np.array(TRUTH)) < 0.05
