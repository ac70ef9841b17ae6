"""A long video in keyframe-aligned time ranges, each decoded by its own task, assembled into the one row a whole
decode gives: the same bins and windows, bit-identical MVs, the same CLIP frames.

    plan_ranges     one cheap look at the file: its first frame (the clock's origin, the MV source) and a keyframe
                    near every ``range_s`` seconds (container seeks, nothing decoded past a packet)
    decode_range    range i: from its keyframe, through a warm-up, to past the next range's keyframe
                    (``moclip.video.windows.decode_pass``)
    assemble        the ranges' bins and grid frames in order, checked where they overlap

Why the result is the whole decode's (``tests/test_ranges.py`` compares both ways): every frame from a keyframe on
decodes to the same picture and MVs as in a whole decode (an IDR frame, or an I-frame of an open GOP, whose leading
frames belong to the range before). A range owns the time bins from the first one after ``warmup`` frames past its
keyframe; the range before decodes on past that keyframe until those bins begin. So each bin is pooled by one range,
with every frame its blocks may refer to (H.264: up to 16 back, ``mv_tensor.References``) and every anchor around it
decoded, in one pass (``MotionAccumulator``), and a re-encoded video's GOP has started again on the same frame
(``reencode.Reencoder``: I-frames by time). The frames both neighbours decode are compared; where they differ, or a
range's clock is broken (timestamps that jump or go back: the whole decode then windows by frame index), the video
is decoded whole instead (``decode_split``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import av

from moclip.config import MVConfig, WindowConfig
from moclip.video import pyav_reader
from moclip.video.extract import open_frames
from moclip.video.features import VideoFeatures
from moclip.video.mv_tensor import References
from moclip.video.windows import (
    CLOCK_PTS,
    Embed,
    Part,
    RangeMismatch,
    Span,
    _BrokenClock,
    assemble,
    decode_pass,
    extract_windows,
)

__all__ = ["RangeMismatch", "VideoRanges", "assemble", "decode_range", "decode_split", "plan_ranges"]

MIN_WARMUP = 2  # frames past a keyframe before its range's bins, whatever the codec


@dataclass(frozen=True)
class VideoRanges:
    """A long video's ranges: the first from the video's start, each next one from a keyframe."""

    path: str
    starts: list[int]  # keyframe of each range after the first (presentation timestamp, stream time base)
    starts_s: list[float]  # their times, as their frames say
    origin_s: float  # the video's first frame time
    warmup: int
    mv_source: str  # "native" or "reencode", decided by the first frame as a whole decode does
    duration_s: float

    def __len__(self) -> int:
        return len(self.starts) + 1

    def span(self, i: int) -> Span:
        return Span(start_pts=self.starts[i - 1] if i else None, start_s=self.starts_s[i - 1] if i else None,
                    end_s=self.starts_s[i] if i < len(self.starts) else None, origin_s=self.origin_s,
                    warmup=self.warmup, mv_source=self.mv_source)

    def describe(self, i: int) -> str:
        """E.g. "range 3 of 30 (360.0-480.0 s)"."""
        lo = self.starts_s[i - 1] - self.origin_s if i else 0.0
        hi = self.starts_s[i] - self.origin_s if i < len(self.starts) else self.duration_s
        return f"range {i + 1} of {len(self)} ({lo:.1f}-{hi:.1f} s)"


def plan_ranges(path: str, mv: MVConfig, range_s: float, min_s: float = 0.0) -> VideoRanges | None:
    """A keyframe near every ``range_s`` seconds of ``path`` (None when it is shorter than ``min_s`` or two ranges,
    has no timestamps, or is not read by PyAV). Raises ``DecodeError`` for a file that does not decode at all."""
    if mv.backend != "pyav":
        return None
    info, frames = open_frames(path, mv, lambda i, t: False, None, None)
    try:
        first = next(frames, None)
    finally:
        frames.close()
    if first is None or first.time_s is None or info.duration_s < max(min_s, 2 * range_s):
        return None
    native = info.mv_source == "native"
    warmup = MIN_WARMUP
    if native and pyav_reader.may_refer_further_back(info.codec, info.reference_frames):
        warmup = References.depth_for(info.reference_frames) + 1
    starts: list[int] = []
    container, stream = pyav_reader.open_video(path)
    try:
        tb = stream.time_base
        t = range_s
        while t < info.duration_s - range_s / 2:  # the last range at least half as long as the others
            container.seek(int((first.time_s + t) / tb), stream=stream, backward=True, any_frame=False)
            packet = next((p for p in container.demux(stream) if p.pts is not None), None)
            if packet is not None and packet.is_keyframe and (not starts or packet.pts > starts[-1]) and \
                    float(packet.pts * tb) > first.time_s + range_s / 2:
                starts.append(packet.pts)
            t += range_s
    except av.error.FFmpegError:
        return None  # a file that cannot seek is decoded whole
    finally:
        container.close()
    if not starts:
        return None
    return VideoRanges(path=path, starts=starts, starts_s=[float(p * tb) for p in starts], origin_s=first.time_s,
                       warmup=warmup, mv_source="native" if native else "reencode", duration_s=info.duration_s)


def decode_range(
    plan: VideoRanges, i: int, mv: MVConfig, window: WindowConfig,
    rgb_size: Callable[[int, int], tuple[int, int]] | None = None, timeout_s: float | None = None,
    on_frame: Callable[[int], None] | None = None, embed: Embed | None = None,
) -> Part:
    """Range ``i`` of ``plan``: its bins and CLIP frames. Raises ``RangeMismatch`` (or a broken clock) when the
    video must be decoded whole instead, ``DecodeError`` when the range does not decode."""
    probed = pyav_reader.probe(plan.path)
    return decode_pass(plan.path, mv, window, rgb_size, timeout_s, on_frame, embed, CLOCK_PTS, probed, plan.span(i))


def whole_instead(exc: BaseException) -> bool:
    """Whether a range's error means "decode the video whole" rather than "the video failed"."""
    return isinstance(exc, (RangeMismatch, _BrokenClock))


def decode_split(
    path: str, mv: MVConfig, window: WindowConfig, range_s: float,
    rgb_size: Callable[[int, int], tuple[int, int]] | None = None, timeout_s: float | None = None,
    embed: Embed | None = None,
) -> VideoFeatures:
    """Every range of ``path`` here, one after another, assembled (what the index flow does across tasks); the
    whole decode where the ranges cannot be used."""
    plan = plan_ranges(path, mv, range_s)
    if plan is None:
        return extract_windows(path, mv, window, rgb_size, timeout_s, embed=embed)
    try:
        parts = [decode_range(plan, i, mv, window, rgb_size, timeout_s, embed=embed) for i in range(len(plan))]
        return assemble(parts, mv, window)
    except (RangeMismatch, _BrokenClock):
        return extract_windows(path, mv, window, rgb_size, timeout_s, embed=embed)
