"""Writing videos: frames into an encoder stream (the demo corpus, benchmark videos and test videos)."""

from __future__ import annotations

from collections.abc import Iterable

import av
import numpy as np


def write_frames(out: av.container.OutputContainer, stream: av.video.stream.VideoStream,
                 frames: Iterable[np.ndarray | av.VideoFrame]) -> None:
    """Encode ``frames`` (uint8 HxWx3 RGB arrays, or ready ``av.VideoFrame``s) with pts 0, 1, 2, ... into
    ``stream``, then flush the encoder."""
    for i, img in enumerate(frames):
        frame = img if isinstance(img, av.VideoFrame) else av.VideoFrame.from_ndarray(
            np.ascontiguousarray(img), format="rgb24")
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
