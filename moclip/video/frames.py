"""What a decoder backend yields: one record per displayed frame, in display order."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from moclip.video.orientation import UPRIGHT, Orientation

# Columns of an MV array, identical to mv-extractor's layout.
MV_COLUMNS = (
    "source", "w", "h", "src_x", "src_y", "dst_x", "dst_y", "motion_x", "motion_y", "motion_scale",
)
EMPTY_MVS = np.zeros((0, len(MV_COLUMNS)), dtype=np.int32)


def mv_column(mvs: np.ndarray, name: str) -> np.ndarray:
    """One MV column by name, from an (N, 10) array or from FFmpeg's structured record array."""
    return mvs[name] if mvs.dtype.names else mvs[:, MV_COLUMNS.index(name)]


def mv_columns(mvs: np.ndarray) -> np.ndarray:
    """MVs as an (N, 10) int32 array in MV_COLUMNS order (mv-extractor's layout)."""
    if not mvs.dtype.names:
        return mvs
    out = np.empty((mvs.shape[0], len(MV_COLUMNS)), dtype=np.int32)
    for i, name in enumerate(MV_COLUMNS):
        out[:, i] = mvs[name]
    return out


class DecodeError(RuntimeError):
    """A video could not be decoded; the message says why in words a user understands."""


@dataclass
class VideoInfo:
    codec: str
    width: int
    height: int
    fps: float
    n_frames_hint: int  # from the container; 0 when unknown (may be wrong either way)
    duration_s: float
    container: str = ""
    mv_source: str = "native"  # where the MVs came from: "native" (the stream's own) or "reencoded"
    # how the decoded pictures are turned for display (the display matrix; width and height are the coded ones)
    orientation: Orientation = UPRIGHT
    # sample (pixel) aspect ratio: a coded pixel is this many times as wide as tall (anamorphic DVD, broadcast);
    # the picture is shown width x sar wide
    sar: float = 1.0
    # two fields per frame (the first frame says; None: not known, e.g. the mv-extractor backend)
    interlaced: bool | None = None
    # H.264: the reference frames its SPS keeps (max_num_ref_frames; None: not H.264, or not known)
    reference_frames: int | None = None

    @property
    def has_mvs(self) -> bool:
        return self.codec in MV_CODECS


# Codecs whose FFmpeg decoders export motion vectors.
MV_CODECS = frozenset({"h264", "mpeg4", "mpeg2video", "mpeg1video", "h263", "h263p", "msmpeg4v2", "msmpeg4v3",
                       "msmpeg4", "wmv1", "wmv2", "flv1"})


@dataclass
class DecodedFrame:
    index: int  # display-order index, 0-based
    pict_type: str  # "I", "P", "B", ...
    mvs: np.ndarray  # (N, 10) int32 in MV_COLUMNS order, or FFmpeg's record array (see mv_columns); may be empty
    rgb: np.ndarray | None = field(default=None)  # uint8 HxWx3 when requested
    time_s: float | None = None  # presentation time (pts x time base) when the stream has one
    # the decoded luma plane (H.264: which frame each block refers to is found by matching it, mv_tensor.References)
    luma: np.ndarray | None = field(default=None)


def sample_indices(n_frames: int, k: int) -> list[int]:
    """K frame indices at the centres of K equal segments (TSN test-time sampling)."""
    if n_frames <= 0:
        return []
    return [min(n_frames - 1, int((i + 0.5) * n_frames / k)) for i in range(k)]
