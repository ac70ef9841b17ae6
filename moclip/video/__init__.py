"""Reading videos: compressed-domain motion vectors and the few RGB frames CLIP needs."""

from moclip.video.extract import BACKENDS, VideoFeatures, extract_video
from moclip.video.frames import DecodeError, VideoInfo, sample_indices
from moclip.video.mv_tensor import MotionAccumulator, MotionTensor

__all__ = [
    "BACKENDS", "DecodeError", "MotionAccumulator", "MotionTensor", "VideoFeatures", "VideoInfo",
    "extract_video", "sample_indices",
]
