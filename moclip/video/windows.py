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

import numpy as np

from moclip.config import MVConfig, WindowConfig
from moclip.video import pyav_reader
from moclip.video.extract import extract_video, motion_accumulator, open_frames
from moclip.video.features import VideoFeatures, WindowLayout
from moclip.video.frames import DecodeError, VideoInfo
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
    """Seconds since the first frame, by timestamp (checked to rise) or by frame index."""

    def __init__(self, mode: str, fps: float):
        self.mode, self.fps = mode, fps
        self.t0: float | None = None
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


def _decode(
    path: str, mv: MVConfig, window: WindowConfig, rgb_size: Callable[[int, int], tuple[int, int]] | None,
    timeout_s: float | None, on_frame: Callable[[int], None] | None, embed: Embed | None, clock_mode: str,
    probed: VideoInfo,
) -> VideoFeatures:
    if clock_mode == CLOCK_INDEX and probed.fps <= 0:
        raise DecodeError("no frame rate: cannot place time windows by frame index")
    T, K = mv.segments, window.frames
    bin_s, grid_s = window.seconds / T, window.seconds / K
    tol = 0.5 / probed.fps if probed.fps > 0 else 0.0  # a grid point takes the frame within half a frame of it
    clock = _Clock(clock_mode, probed.fps)
    grid: list[int] = []  # decoded frame index taken for grid point j

    def rgb_wanted(index: int, time_s: float | None) -> bool:
        rel = clock.peek(index, time_s)
        if rel is None:
            return False
        taken = False
        while (len(grid) + 0.5) * grid_s <= rel + tol:
            grid.append(index)
            taken = True
        return taken

    info, frames_it = open_frames(path, mv, rgb_wanted, rgb_size, timeout_s)
    try:
        expected = int(info.duration_s / bin_s) + 1 if info.duration_s > 0 else 0
        acc = motion_accumulator(info, mv, max_bins=1 << 62, expected_frames=expected)  # bins never merge
        rgb: dict[int, np.ndarray] = {}  # frames not embedded yet
        order: list[int] = []  # every frame taken, in order (its embedding's row)
        embedded: list[np.ndarray] = []
        last = 0.0
        for frame in frames_it:
            try:
                last = clock.at(frame.index, frame.time_s)
            except _BrokenClock:
                if frame.index > 0 or probed.fps <= 0:
                    raise
                clock.mode = CLOCK_INDEX  # no timestamp from the first frame on: nothing to decode again
                clock_mode, last = CLOCK_INDEX, clock.at(frame.index, frame.time_s)
            acc.add(frame, key=int(last / bin_s + _EPS))
            if frame.rgb is not None:
                rgb[frame.index] = frame.rgb
                order.append(frame.index)
                if embed is not None and len(rgb) >= EMBED_BATCH:
                    embedded.append(embed(list(rgb.values())))
                    rgb.clear()
            if on_frame is not None:
                on_frame(frame.index)
        if embed is not None and rgb:
            embedded.append(embed(list(rgb.values())))
            rgb.clear()
    except _BrokenClock:
        frames_it.close()
        raise
    except DecodeError as e:
        e.info = info
        raise
    if acc.n_frames == 0:
        err = DecodeError("no decodable frames")
        err.info = info
        raise err
    frame_s = 1.0 / info.fps if info.fps > 0 else 0.0
    duration = last + frame_s
    n_bins = max(1, math.ceil(duration / bin_s - _EPS))
    if n_bins < T:  # shorter than the window (the container said otherwise): one window over the whole video
        return _one_window(path, mv, window, rgb_size, timeout_s, on_frame, embed, duration)
    values, valid = acc.finish_bins(n_bins)
    stride_bins = max(1, round(window.stride_s / bin_s))
    firsts = window_starts(n_bins, T, stride_bins)
    row_of = {index: row for row, index in enumerate(order)}
    grid = [i for i in grid if i in row_of] or order[:1]
    if not grid:
        raise DecodeError("no RGB frames could be decoded")
    layout = WindowLayout(
        bin_s=bin_s, n_bins=T, n_frames=K, clock=clock_mode,
        start_s=[b * bin_s for b in firsts], end_s=[min((b + T) * bin_s, duration) for b in firsts],
        first_bin=firsts,
        first_frame=[max(0, min(int(b * bin_s / grid_s + 0.5), len(grid) - K)) for b in firsts],  # nearest
    )
    motion = MotionTensor(values=values, valid=valid, n_frames=acc.n_frames, n_mv_frames=acc.n_mv_frames)
    feats = VideoFeatures(info=info, motion=motion, frames=[], frame_indices=grid, mv_source=info.mv_source,
                          windows=layout)
    if embed is None:
        feats.frames = [rgb[i] for i in grid]
    else:
        feats.embeddings = np.concatenate(embedded)[[row_of[i] for i in grid]]
    return feats


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
