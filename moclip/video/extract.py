"""One video -> its MV tensor and K RGB frames, in a single decode pass."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from moclip.config import MVConfig
from moclip.video import mvextractor_reader, pyav_reader
from moclip.video.features import VideoFeatures
from moclip.video.frames import DecodedFrame, DecodeError, VideoInfo, sample_indices
from moclip.video.mv_tensor import MotionAccumulator, References
from moclip.video.reencode import size_for as reencode_size

__all__ = ["BACKENDS", "VideoFeatures", "extract_video", "open_frames"]

BACKENDS = {"pyav": pyav_reader.iter_frames, "mvextractor": mvextractor_reader.iter_frames}


def pad_indices(indices: list[int], k: int) -> list[int]:
    """``indices`` stretched to ``k`` entries by repeating each in order ([3, 9] -> [3, 3, 3, 3, 9, 9, 9, 9])."""
    if not indices or len(indices) >= k:
        return indices
    return [indices[i * len(indices) // k] for i in range(k)]


def open_frames(
    path: str, mv: MVConfig, rgb_wanted: Callable[[int, float | None], bool],
    rgb_size: Callable[[int, int], tuple[int, int]] | None, timeout_s: float | None,
    start_pts: int | None = None, origin_s: float | None = None,
) -> tuple[VideoInfo, Iterator[DecodedFrame]]:
    """The file's info and its decoded frames, from the backend and MV source ``mv`` asks for; ``start_pts`` and
    ``origin_s`` (PyAV only): a range of a long video (``pyav_reader.iter_frames``)."""
    source = mv.source
    if mv.backend == "mvextractor" and source != "native":  # mv-extractor reads native MVs; re-encoding is PyAV's
        source = "native" if source == "auto" and pyav_reader.probe(path).has_mvs else "reencode"
    if mv.backend == "pyav" or source == "reencode":
        return pyav_reader.iter_frames(path, rgb_wanted, rgb_size, export_mvs=True, max_frames=mv.max_frames,
                                       timeout_s=timeout_s, mv_source=source, start_pts=start_pts,
                                       origin_s=origin_s)
    if start_pts is not None:
        raise ValueError("only the pyav backend decodes a range of a video")
    return BACKENDS[mv.backend](path, rgb_wanted, rgb_size, export_mvs=True, max_frames=mv.max_frames,
                                timeout_s=timeout_s)


def motion_accumulator(info: VideoInfo, mv: MVConfig, **kwargs) -> MotionAccumulator:
    """The accumulator for a video's MVs (at the re-encode size when they are re-encoded); refuses a codec whose
    native MVs FFmpeg cannot export."""
    if info.mv_source == "native" and not info.has_mvs:
        raise DecodeError(f"codec {info.codec!r} has no motion vectors FFmpeg can export "
                          f"(supported: H.264, MPEG-4 Part 2, MPEG-1/2, H.263; --mv-source auto or reencode "
                          "re-encodes the others)")
    width, height = (info.width, info.height) if info.mv_source == "native" else reencode_size(info.width,
                                                                                               info.height)
    return MotionAccumulator(mv.segments, mv.grid, width, height, orientation=info.orientation, fps=info.fps,
                             reference_depth=References.depth_for(info.reference_frames), **kwargs)


def extract_video(
    path: str,
    mv: MVConfig,
    n_rgb: int,
    rgb_size: Callable[[int, int], tuple[int, int]] | None = None,
    timeout_s: float | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> VideoFeatures:
    """Decode ``path`` once: MVs from every frame, RGB only for ``n_rgb`` evenly spaced frames.

    ``on_frame(index)`` is called after each decoded frame (the fault-injection hook of ``moclip.indexing.decode``).

    The RGB frame indices come from the container's frame count; when that count was wrong and some wanted
    frames never came, a second (MV-free) pass fetches frames at the right indices.
    """
    wanted: set[int] = set()  # filled from the container's frame count before the first frame is decoded

    def rgb_wanted(index: int, time_s: float | None) -> bool:
        return index in wanted

    info, frames_it = open_frames(path, mv, rgb_wanted, rgb_size, timeout_s)
    try:
        wanted.update(sample_indices(info.n_frames_hint, n_rgb))
        acc = motion_accumulator(info, mv, expected_frames=info.n_frames_hint)
        rgb: dict[int, np.ndarray] = {}
        for frame in frames_it:
            acc.add(frame)
            if frame.rgb is not None:
                rgb[frame.index] = frame.rgb
            if on_frame is not None:
                on_frame(frame.index)
        motion = acc.finish()
        if motion.n_frames == 0:
            raise DecodeError("no decodable frames")
        indices = sample_indices(motion.n_frames, n_rgb)
        if any(i not in rgb for i in indices):
            rgb = _rgb_pass(path, set(indices), rgb_size, mv, timeout_s)
            indices = [i for i in indices if i in rgb] or sorted(rgb)
            if not indices:
                raise DecodeError("no RGB frames could be decoded")
            indices = pad_indices(indices, n_rgb)  # always K embeddings per video: one shape for the whole dataset
        return VideoFeatures(info=info, motion=motion, frames=[rgb[i] for i in indices], frame_indices=indices,
                             mv_source=info.mv_source)
    except DecodeError as e:  # the failed row still says what the file is
        e.info = info
        raise


def _rgb_pass(
    path: str, indices: set[int], rgb_size: Callable[[int, int], tuple[int, int]] | None, mv: MVConfig,
    timeout_s: float | None,
) -> dict[int, np.ndarray]:
    _, frames_it = pyav_reader.iter_frames(
        path, lambda i, t: i in indices, rgb_size, export_mvs=False, max_frames=mv.max_frames, timeout_s=timeout_s,
    )
    return {f.index: f.rgb for f in frames_it if f.rgb is not None}
