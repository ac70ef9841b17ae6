"""One long video -> the MV tensors and CLIP frames of its time windows, in a single decode pass.

A window of ``W`` seconds has ``T`` MV segments (``mv.segments``) and ``K`` CLIP frames (``window.frames``). The
decode pools motion vectors into *bins* of ``W / T`` seconds, by each frame's presentation time (so variable frame
rate videos get windows of real seconds), and takes one RGB frame at every point of a grid of ``W / K`` seconds.
A window is then ``T`` consecutive bins and ``K`` consecutive grid frames: overlapping windows share their bins and
frames, each decoded frame is converted (and embedded) once, and memory grows with the video's bins (600 floats
per bin at a 15 x 20 grid: ~17 MB per hour at 4 s windows) and frames, never with decoded pictures.

Windows start every stride (rounded to whole bins); the last one is moved back to end at the video's end, so
every window is full. Documented behaviour for odd input:

* a video shorter than the window is one window over the whole video (its T segments spread over it, as
  without windows);
* a window shorter than one frame is the video's error;
* timestamps that are missing, go backwards or jump by more than ``MAX_GAP_S``: the video is decoded again on
  its frame index (index / fps) and its row says ``window_clock = "frame_index"`` instead of ``"pts"``; the
  mv-extractor backend gives no timestamps: its windows are always by frame index;
* bins of fewer than one frame (a window of fewer than T frames) stay empty (``mv_valid`` 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from moclip.config import MVConfig, WindowConfig
from moclip.video import pyav_reader
from moclip.video.extract import extract_video, motion_accumulator, open_frames
from moclip.video.features import VideoFeatures, WindowLayout
from moclip.video.frames import DecodedFrame, DecodeError, VideoInfo, mv_column
from moclip.video.mv_tensor import MotionTensor

MAX_GAP_S = 60.0  # a jump between two consecutive frames' timestamps longer than this is a broken clock (so is
# one backwards; equal timestamps are not: both frames go to the same bin)
_EPS = 1e-6
CLOCK_PTS, CLOCK_INDEX, WHOLE_VIDEO = "pts", "frame_index", "whole_video"
EMBED_BATCH = 64  # frames embedded at once while decoding
Embed = Callable[[list[np.ndarray]], np.ndarray]


class _BrokenClock(Exception):
    pass


class _Clock:
    """Seconds since the first frame (``t0``: its time, when known before), by timestamp (checked to rise) or by
    frame index."""

    def __init__(self, mode: str, fps: float, t0: float | None = None):
        self.mode, self.fps = mode, fps
        self.t0: float | None = t0
        self.last: float | None = None

    def peek(self, index: int, time_s: float | None) -> float | None:
        """The frame's time, unchecked (None: no timestamp)."""
        if self.mode == CLOCK_INDEX:
            return index / self.fps
        if time_s is None:
            return None
        if self.t0 is None:
            self.t0 = time_s
        return time_s - self.t0

    def at(self, index: int, time_s: float | None) -> float:
        """The frame's time; raises ``_BrokenClock`` where timestamps are missing, go back or jump."""
        rel = self.peek(index, time_s)
        if rel is None:
            raise _BrokenClock(f"frame {index} has no timestamp")
        if self.mode == CLOCK_PTS and self.last is not None and not (0 <= rel - self.last <= MAX_GAP_S):
            raise _BrokenClock(f"timestamps jump from {self.last:.3f} s to {rel:.3f} s at frame {index}")
        self.last = rel
        return rel


def window_starts(n_bins: int, per_window: int, stride_bins: int) -> list[int]:
    """First bin of each window: every ``stride_bins``, the last one ending at the last bin."""
    if n_bins <= per_window:
        return [0]
    n = math.ceil((n_bins - per_window) / stride_bins) + 1
    return [min(k * stride_bins, n_bins - per_window) for k in range(n)]


def extract_windows(
    path: str,
    mv: MVConfig,
    window: WindowConfig,
    rgb_size: Callable[[int, int], tuple[int, int]] | None = None,
    timeout_s: float | None = None,
    on_frame: Callable[[int], None] | None = None,
    embed: Embed | None = None,
) -> VideoFeatures:
    """Decode ``path`` once into per-bin MV tensors (``motion.values`` [B, 2, H, W], ``motion.valid`` [B]) and the
    grid's frames, with ``windows`` saying which of them each window takes.

    ``embed`` (frames -> [N, D] embeddings): frames are embedded in batches while decoding and only their
    embeddings kept (``embeddings``, one row per grid point); without it, the grid's RGB frames are returned."""
    info = pyav_reader.probe(path)
    if info.fps > 0 and window.seconds < 1.0 / info.fps - _EPS:
        raise DecodeError(f"window {window.seconds:g} s is shorter than one frame (1/{info.fps:g} s)")
    if 0 < info.duration_s < window.seconds - _EPS:
        feats = _one_window(path, mv, window, rgb_size, timeout_s, on_frame, embed)
        if feats.windows.end_s[-1] < window.seconds - _EPS:
            return feats
        # the container said shorter than one window, the frames say otherwise: windows after all
    try:
        return _decode(path, mv, window, rgb_size, timeout_s, on_frame, embed,
                       CLOCK_PTS if mv.backend == "pyav" else CLOCK_INDEX, info)
    except _BrokenClock:
        if info.fps <= 0:
            raise DecodeError("broken timestamps and no frame rate: cannot place time windows") from None
        return _decode(path, mv, window, rgb_size, timeout_s, on_frame, embed, CLOCK_INDEX, info)


TICK_S = 1e-6  # two frame times closer than this are the same frame (a stream's tick is 1/90,000 s or longer)


@dataclass(frozen=True)
class Span:
    """What one decode pass covers: the whole video (the default), or one range of a long one, decoded by its own
    task (``moclip.video.ranges``). A range starts at a keyframe and owns the bins from the first one after its
    ``warmup`` frames; it decodes on past the next range's keyframe until that range owns the bins, so each bin is
    one range's and every frame it pools has the same references, anchors and re-encoder GOP as in a whole decode."""

    start_pts: int | None = None  # the range's keyframe, in the stream's time base (None: the video's start)
    start_s: float | None = None  # that keyframe's time (as its frame says: ``DecodedFrame.time_s``)
    end_s: float | None = None  # the next range's keyframe time (None: to the video's end)
    origin_s: float | None = None  # the video's first frame time: the windows' clock and the re-encoder's GOPs
    warmup: int = 0  # frames from a keyframe on before its range owns bins (H.264: the frames a block may refer to)
    mv_source: str | None = None  # "native" / "reencode", decided once for the video (None: by ``mv.source``)


@dataclass
class Part:
    """What one pass gives: its bins (``values``/``valid`` of bins ``own_from`` to ``own_to``, the last one's to the
    video's end), the grid frames it owns, and what the next pass and the assembly check (``moclip.video.ranges``).
    Frame indices are the pass's own (0 = the first frame it decoded)."""

    info: VideoInfo
    clock: str
    own_from: int
    own_to: int | None
    values: np.ndarray
    valid: np.ndarray
    n_mv_frames: int
    grid_points: list[int]  # the grid points this pass owns, in order...
    grid_frames: list[int]  # ...and the frame each is taken from
    frames: list[np.ndarray]  # one per grid point (RGB), or none when embedded...
    embeddings: np.ndarray | None  # ...then one row per grid point
    start_index: int  # this pass's keyframe (0 for the video's start)
    join_index: int | None  # the next range's keyframe (None: the last pass)
    count: int  # frames decoded (the last pass: to the video's end)
    last_s: float  # the time of the last frame it owns (since the video's first frame)
    head: list[tuple] = field(default_factory=list)  # digests of its frames from its keyframe to its first bin
    tail: list[tuple] = field(default_factory=list)  # ...and of the next range's


class RangeMismatch(Exception):
    """A range did not start or end where its plan said, or two ranges saw different frames where they overlap:
    the video is decoded whole instead."""


def frame_digest(frame: DecodedFrame, reencoded: bool) -> tuple:
    """What two decodes of one frame must agree on: its time, and its picture type and MVs (count and sums) unless
    they were re-encoded (a range's re-encoder starts with an I-frame: the frames before its next GOP differ)."""
    if reencoded:
        return (None if frame.time_s is None else round(frame.time_s, 6),)
    mvs = frame.mvs
    sums = (int(mv_column(mvs, "motion_x").sum()), int(mv_column(mvs, "motion_y").sum())) if len(mvs) else (0, 0)
    return (None if frame.time_s is None else round(frame.time_s, 6), frame.pict_type, len(mvs), *sums)


def decode_pass(
    path: str, mv: MVConfig, window: WindowConfig, rgb_size: Callable[[int, int], tuple[int, int]] | None,
    timeout_s: float | None, on_frame: Callable[[int], None] | None, embed: Embed | None, clock_mode: str,
    probed: VideoInfo, span: Span = Span(),
) -> Part:
    """Decode ``span`` of ``path`` (see ``Span``) into its bins and grid frames."""
    if clock_mode == CLOCK_INDEX and probed.fps <= 0:
        raise DecodeError("no frame rate: cannot place time windows by frame index")
    ranged = span.start_s is not None or span.end_s is not None
    T, K = mv.segments, window.frames
    bin_s, grid_s = window.seconds / T, window.seconds / K
    tol = 0.5 / probed.fps if probed.fps > 0 else 0.0  # a grid point takes the frame within half a frame of it
    clock = _Clock(clock_mode, probed.fps, span.origin_s)

    def points(rel: float, c: int = 0) -> int:
        """Grid points at or before ``rel`` (each taken by the first frame that reaches it, within ``tol``)."""
        c = max(c, int(rel / grid_s) - 2)
        while (c + 0.5) * grid_s <= rel + tol:
            c += 1
        return c

    seen = [0]

    def rgb_wanted(index: int, time_s: float | None) -> bool:
        rel = clock.peek(index, time_s)
        if rel is None:
            return False
        c = points(rel, seen[0])
        taken, seen[0] = c > seen[0], max(c, seen[0])
        return taken

    if span.mv_source is not None:
        mv = mv.model_copy(update={"source": span.mv_source})
    info, frames_it = open_frames(path, mv, rgb_wanted, rgb_size, timeout_s, start_pts=span.start_pts,
                                  origin_s=span.origin_s)
    reencoded = info.mv_source == "reencoded"

    def synced(c: int, frame: DecodedFrame) -> bool:
        """Whether a range that starts ``c`` frames back owns bins from the next one on: its references are all
        decoded (and a re-encode's GOP has started again)."""
        return c >= span.warmup and (not reencoded or frame.pict_type == "I")

    own_from: int | None = None if span.start_s is not None else 0
    own_to: int | None = None
    start_index: int | None = None if span.start_s is not None else 0
    join_index: int | None = None
    head: list[tuple] = []
    tail: list[tuple] = []
    g_prev: int | None = None if span.start_s is not None else 0
    grid_points: list[int] = []
    grid_frames: list[int] = []
    rgb: dict[int, np.ndarray] = {}  # grid frames not embedded yet
    order: list[int] = []  # every grid frame, in order (its embedding's row)
    embedded: list[np.ndarray] = []
    last, count = 0.0, 0
    try:
        expected = int(info.duration_s / bin_s) + 1 if info.duration_s > 0 and not ranged else 0
        acc = motion_accumulator(info, mv, max_bins=1 << 62, expected_frames=expected)  # bins never merge
        for frame in frames_it:
            if start_index is None:  # a range, before its keyframe: frames of the range before (an open GOP's)
                if frame.time_s is None or frame.time_s < span.start_s - TICK_S:
                    continue
                if abs(frame.time_s - span.start_s) > TICK_S:
                    raise RangeMismatch(f"the first frame from {span.start_s:.3f} s is at {frame.time_s:.3f} s")
                start_index = frame.index
            try:
                rel = clock.at(frame.index, frame.time_s)
            except _BrokenClock:
                if frame.index > 0 or probed.fps <= 0 or ranged:
                    raise
                clock.mode = CLOCK_INDEX  # no timestamp from the first frame on: nothing to decode again
                clock_mode, rel = CLOCK_INDEX, clock.at(frame.index, frame.time_s)
            count = frame.index + 1
            key = int(rel / bin_s + _EPS)
            g = points(rel, g_prev or 0)
            if own_from is None:  # a range warming up after its keyframe
                head.append(frame_digest(frame, reencoded))
                if synced(len(head) - 1, frame):
                    own_from = acc.first_key = key + 1
            if span.end_s is not None and join_index is None and frame.time_s is not None \
                    and frame.time_s >= span.end_s - TICK_S:
                if abs(frame.time_s - span.end_s) > TICK_S:
                    raise RangeMismatch(f"no frame at the next range's keyframe ({span.end_s:.3f} s)")
                join_index = frame.index
            if join_index is not None and own_to is None:  # the next range warming up
                tail.append(frame_digest(frame, reencoded))
                if synced(len(tail) - 1, frame):
                    own_to = key + 1
            owned = own_from is not None and key >= own_from and (own_to is None or key < own_to)
            acc.add(frame, key, pool=owned)
            if owned:
                last = rel
                if g_prev is not None and g > g_prev:
                    if frame.rgb is None:
                        raise DecodeError(f"frame {frame.index}: no picture for the CLIP frame at {rel:.3f} s")
                    grid_points.extend(range(g_prev, g))
                    grid_frames.extend([frame.index] * (g - g_prev))
                    rgb[frame.index] = frame.rgb
                    order.append(frame.index)
                    if embed is not None and len(rgb) >= EMBED_BATCH:
                        embedded.append(embed(list(rgb.values())))
                        rgb.clear()
            g_prev = g
            if on_frame is not None:
                on_frame(frame.index)
            if own_to is not None and key >= own_to and frame.pict_type != "B":
                break  # the B-frames of our last bins are pooled: the rest is the next range's
        if embed is not None and rgb:
            embedded.append(embed(list(rgb.values())))
            rgb.clear()
    except DecodeError as e:
        e.info = info
        raise
    finally:
        frames_it.close()
    if span.start_s is not None and start_index is None:
        raise RangeMismatch(f"no frame from the range's keyframe at {span.start_s:.3f} s on")
    if count == 0:
        err = DecodeError("no decodable frames")
        err.info = info
        raise err
    own_from = own_from if own_from is not None else key + 1  # a range shorter than its warm-up owns nothing
    if own_to is not None:
        n = own_to - own_from
    else:  # to the video's end: its bins
        frame_s = 1.0 / info.fps if info.fps > 0 else 0.0
        n = max(1, math.ceil((last + frame_s) / bin_s - _EPS)) - own_from
    values, valid = acc.finish_bins(max(n, 0))
    if embed is not None:
        row_of = {index: row for row, index in enumerate(order)}
        emb = np.concatenate(embedded) if embedded else np.zeros((0, 0), np.float32)
        embeddings, frames = emb[[row_of[i] for i in grid_frames]], []
    else:
        embeddings, frames = None, [rgb[i] for i in grid_frames]  # never cleared without embed
    return Part(info=info, clock=clock_mode, own_from=own_from, own_to=own_to, values=values, valid=valid,
                n_mv_frames=acc.n_mv_frames, grid_points=grid_points, grid_frames=grid_frames, frames=frames,
                embeddings=embeddings, start_index=start_index or 0, join_index=join_index, count=count,
                last_s=last, head=head, tail=tail)


def assemble(parts: list[Part], mv: MVConfig, window: WindowConfig) -> VideoFeatures:
    """The video's features from its passes in order (one for a whole decode): bins, grid and windows. Raises
    ``RangeMismatch`` when neighbouring ranges disagree where they overlap."""
    for i, (a, b) in enumerate(zip(parts, parts[1:])):
        if a.own_to != b.own_from or a.tail != b.head or a.join_index is None:
            raise RangeMismatch(f"ranges {i} and {i + 1} disagree where they meet (bin {a.own_to} / {b.own_from}, "
                                f"{len(a.tail)} / {len(b.head)} frames)")
    T, K = mv.segments, window.frames
    bin_s, grid_s = window.seconds / T, window.seconds / K
    offsets = [0]
    for a, b in zip(parts, parts[1:]):
        offsets.append(offsets[-1] + a.join_index - b.start_index)
    info, end = parts[0].info, parts[-1]
    n_frames = offsets[-1] + end.count
    if mv.max_frames is not None and n_frames > mv.max_frames:
        raise DecodeError(f"more than {mv.max_frames} frames (max_frames cap)")
    points = [j for p in parts for j in p.grid_points]
    grid = [off + f for off, p in zip(offsets, parts) for f in p.grid_frames]
    if points != list(range(len(points))):
        raise RangeMismatch("the ranges' CLIP frames do not follow one another")
    if not grid:
        raise DecodeError("no RGB frames could be decoded")
    values = np.concatenate([p.values for p in parts])
    valid = np.concatenate([p.valid for p in parts])
    frame_s = 1.0 / info.fps if info.fps > 0 else 0.0
    duration = end.last_s + frame_s
    n_bins = len(valid)
    stride_bins = max(1, round(window.stride_s / bin_s))
    firsts = window_starts(n_bins, T, stride_bins)
    layout = WindowLayout(
        bin_s=bin_s, n_bins=T, n_frames=K, clock=parts[0].clock,
        start_s=[b * bin_s for b in firsts], end_s=[min((b + T) * bin_s, duration) for b in firsts],
        first_bin=firsts,
        first_frame=[max(0, min(int(b * bin_s / grid_s + 0.5), len(grid) - K)) for b in firsts],  # nearest
    )
    motion = MotionTensor(values=values, valid=valid, n_frames=n_frames,
                          n_mv_frames=sum(p.n_mv_frames for p in parts))
    feats = VideoFeatures(info=info, motion=motion, frames=[f for p in parts for f in p.frames],
                          frame_indices=grid, mv_source=info.mv_source, windows=layout)
    if parts[0].embeddings is not None:
        feats.embeddings = np.concatenate([p.embeddings for p in parts])
    return feats


def _decode(
    path: str, mv: MVConfig, window: WindowConfig, rgb_size: Callable[[int, int], tuple[int, int]] | None,
    timeout_s: float | None, on_frame: Callable[[int], None] | None, embed: Embed | None, clock_mode: str,
    probed: VideoInfo,
) -> VideoFeatures:
    part = decode_pass(path, mv, window, rgb_size, timeout_s, on_frame, embed, clock_mode, probed)
    if len(part.valid) < mv.segments:  # shorter than the window (the container said otherwise): one window
        return _one_window(path, mv, window, rgb_size, timeout_s, on_frame, embed, part.last_s + (
            1.0 / part.info.fps if part.info.fps > 0 else 0.0))
    return assemble([part], mv, window)


def _one_window(
    path: str, mv: MVConfig, window: WindowConfig, rgb_size: Callable[[int, int], tuple[int, int]] | None,
    timeout_s: float | None, on_frame: Callable[[int], None] | None, embed: Embed | None,
    duration: float | None = None,
) -> VideoFeatures:
    """A video shorter than the window: its whole-video tensor (T segments over it) and K frames, as one window.
    ``duration``: as measured from the timestamps (default: frames / fps, else the container's)."""
    feats = extract_video(path, mv, window.frames, rgb_size, timeout_s, on_frame)
    if embed is not None:
        feats.embeddings, feats.frames = embed(feats.frames), []
    info, n = feats.info, feats.motion.n_frames
    if duration is None:
        duration = n / info.fps if info.fps > 0 else (info.duration_s or 0.0)
    if duration <= 0:
        err = DecodeError("no frame rate and no duration: cannot place time windows")
        err.info = info
        raise err
    feats.windows = WindowLayout(bin_s=duration / mv.segments, n_bins=mv.segments, n_frames=window.frames,
                                 start_s=[0.0], end_s=[duration], first_bin=[0], first_frame=[0], clock=WHOLE_VIDEO)
    return feats
