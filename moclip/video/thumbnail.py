"""Pictures of a moment of a video, found by seeking (never by decoding from the start): thumbnails of search hits
and timeline segments, and the frames of a query by example (``--like VIDEO@SECONDS``).

Frames come as displayed (rotation from the display matrix, anamorphic pixels widened), scaled to a given short
side: what a person sees in a player at that moment.
"""

from __future__ import annotations

from collections.abc import Sequence

import av
import numpy as np

from moclip.video.frames import DecodeError
from moclip.video.pyav_reader import _info, frame_orientation, open_video, probe

SEEK_SLACK_S = 0.001  # a frame whose time is this close before the target counts as at it


def duration_of(path: str) -> float:
    """The video's duration in seconds from its container (0.0 when it does not say)."""
    return probe(path).duration_s


def frames_at(path: str, times: Sequence[float], short_side: int = 224) -> list[np.ndarray]:
    """uint8 RGB pictures [H, W, 3] of ``path`` at each of ``times`` (seconds; the frame shown at that time: the
    last one starting at or before it), short side ``short_side``. Seeks to the keyframe before each time.
    ``DecodeError`` when the file cannot be read or a time is past the last frame."""
    if not times:
        return []
    try:
        container, stream = open_video(path)
    except DecodeError as e:
        raise DecodeError(f"{path}: {e}") from e
    out: list[np.ndarray] = []
    try:
        stream.codec_context.thread_count = 1
        base = stream.time_base
        info = _info(container, stream)  # the frame rate and pixel shape as decoding reads them
        frame_s, sar = (1.0 / info.fps if info.fps else 0.0), info.sar
        start = float(stream.start_time * base) if stream.start_time is not None and base else 0.0
        for t in times:
            if t < 0:
                raise DecodeError(f"{path}: time {t:g} s is before the start")
            container.seek(int((start + t) / base) if base else int(t * av.time_base), stream=stream if base else None,
                           backward=True, any_frame=False)
            shown, shown_t = None, None
            for frame in container.decode(stream):
                ft = (float(frame.pts * base) - start) if frame.pts is not None and base else None
                if shown is not None and ft is not None and ft > t + SEEK_SLACK_S:
                    break
                shown, shown_t = frame, ft
                if ft is None:
                    break
            if shown is None or (shown_t is not None and shown_t + max(frame_s, SEEK_SLACK_S) < t):
                end = "" if shown_t is None else f" at {shown_t + frame_s:.2f} s"
                raise DecodeError(f"{path}: no frame at {t:g} s: the video ends before it{end}")
            out.append(_picture(shown, sar, short_side))
    except av.error.FFmpegError as e:
        raise DecodeError(f"{path}: cannot decode ({e})") from e
    finally:
        container.close()
    return out


def _picture(frame: av.VideoFrame, sar: float, short_side: int) -> np.ndarray:
    w = max(1, round(frame.width * sar))
    h = frame.height
    scale = short_side / min(w, h)
    rgb = frame.reformat(width=max(2, round(w * scale)), height=max(2, round(h * scale)), format="rgb24",
                         interpolation="BICUBIC").to_ndarray()
    return frame_orientation(frame).image(rgb)
