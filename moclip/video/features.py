"""What decoding one video gives: ``VideoFeatures`` (its MV tensor and CLIP frames, ``moclip.video.extract``), with a
``WindowLayout`` when it was cut into time windows (``moclip.video.windows``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moclip.video.frames import VideoInfo
from moclip.video.mv_tensor import MotionTensor


@dataclass
class WindowLayout:
    """Where each window's bins and frames are in the video's arrays (all lists have one entry per window)."""

    bin_s: float  # seconds per MV bin (window / T); for a video shorter than the window, its duration / T
    n_bins: int  # T: bins per window
    n_frames: int  # K: grid frames per window
    start_s: list[float]
    end_s: list[float]
    first_bin: list[int]
    first_frame: list[int]
    clock: str  # "pts" (presentation timestamps) or "frame_index" (index / fps: the timestamps were unusable)


@dataclass
class VideoFeatures:
    info: VideoInfo
    motion: MotionTensor
    frames: list[np.ndarray]  # K uint8 HxWx3 RGB frames (short side = CLIP input size)
    frame_indices: list[int]  # K display-order indices; repeated where the video had fewer decodable frames
    mv_source: str = "native"  # "native" or "reencoded" (moclip.video.reencode)
    windows: WindowLayout | None = None  # time windows (moclip.video.windows): motion holds bins, frames a grid
    embeddings: np.ndarray | None = None  # [K, D] when the frames were embedded while decoding (then no frames)

    @property
    def n_real_frames(self) -> int:
        """Distinct decoded frames among the K (the rest repeat them; with windows: all of the video's)."""
        return len(set(self.frame_indices))
