"""PyAV frame -> moclip's per-frame records: the picture type's letter and the exported motion vectors as FFmpeg's
record array. The one reader of both, for the decoder (``pyav_reader``) and the re-encoder (``reencode``)."""

from __future__ import annotations

import av
import numpy as np
from av.sidedata.sidedata import SideDataContainer

from moclip.video.frames import EMPTY_MVS

# FFmpeg's AVPictureType; PyAV returns either this int or an enum whose name is the letter.
_PICT_TYPES = {0: "?", 1: "I", 2: "P", 3: "B", 4: "S", 5: "SI", 6: "SP", 7: "BI"}


def pict_letter(pict_type: object) -> str:
    name = getattr(pict_type, "name", None)
    return name if name is not None else _PICT_TYPES.get(int(pict_type), "?")


_MV_DTYPE: np.dtype | None = None


def mv_array(frame: av.VideoFrame) -> np.ndarray:
    """The frame's exported MVs as FFmpeg's record array (fields source, w, h, ..., motion_scale).

    Kept as is (no per-frame copy into columns); ``frames.mv_columns`` gives mv-extractor's (N, 10) layout.
    """
    # A fresh container, not ``frame.side_data``: that one is cached on the frame and refers back to it, a cycle
    # that frees each decoded frame only when the cycle collector runs (~150-200 live 1080p frames, +500 MB).
    sd = SideDataContainer(frame).get("MOTION_VECTORS")
    if sd is None:
        return EMPTY_MVS
    global _MV_DTYPE
    if _MV_DTYPE is None:
        _MV_DTYPE = sd.to_ndarray().dtype  # PyAV's record layout of AVMotionVector (40 bytes, aligned)
    # A copy (buffered MVs must not pin frames), made as one memcpy: ndarray.copy() of this padded record dtype
    # goes field by field (~10x slower, 16 % of the MV stage at 720p).
    rec = np.frombuffer(bytes(sd), dtype=_MV_DTYPE)
    return rec if rec.size else EMPTY_MVS
