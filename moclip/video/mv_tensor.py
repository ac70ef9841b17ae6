"""Motion vectors of a whole video -> one fixed-shape tensor (T segments x 2 channels x H x W cells).

Rules (docs/MOTION_VECTORS.md explains why):

* Units: every MV becomes a forward-time velocity in **percent of the displayed frame size per second** (x: of
  the width, y: of the height), so any resolution, aspect ratio or frame rate gives the same shape and scale: a
  pan reads the same at 25, 30 or 60 fps, and a variable-frame-rate video gets each frame's own speed.
* Reference distance: FFmpeg's ``source`` is only a direction (-1 past, +1 future). A P-frame in an IBBP GOP
  points 3 frames back, so its raw MVs are 3 frames' motion. We divide by the time to the frame the MV refers to,
  from the frames' timestamps; where those are missing or broken (rising by less than ``MIN_GAP_S``, or a jump
  of more than ``MAX_GAP_S``), by the frame distance / fps. Which frame that is: for MPEG-4 Part 2, MPEG-1/2
  and H.263 the nearest anchor (I/P frame) in that direction; H.264 may refer to any of up to 16 reference frames
  (x264's defaults: 3 references and B-pyramids) and FFmpeg does not export which, so each block's reference is
  found by matching: the decoded picture under the block against each candidate frame's picture where the MV
  points (``References``).
* Usable frames: I-frames and frames without MVs add nothing; B-frames whose MVs are all zero are skipped (FFmpeg
  exports all-zero MVs for MPEG-4 Part 2 B-frames). A P-frame with all-zero MVs is real evidence of no motion
  and counts.
* Pooling: each MV adds ``area * velocity`` to the grid cells its block overlaps, split by overlap area (a frame
  with fewer blocks than the grid has cells still reaches every cell); a cell's value is the area-weighted mean
  over the MVs that reached it across all usable frames of the segment. Cells no MV reached (intra blocks) are
  0 and do not dilute their neighbours; ``valid`` counts usable frames per segment.
* Memory is bounded for any length: frames are pooled into at most ``max_bins`` temporal bins whose width
  doubles when needed; bins are assigned to segments by their centre once the true frame count is known.
* A bin's sums never depend on where decoding began: frames are pooled in chunks (one vectorised pass each) that
  end only between bins, so each bin is summed in one pass, in display order, whatever other bins share it. Two
  decodes of one video that agree on a bin's frames and on the state before them (``add(..., pool=False)``: the
  frames a range of a long video decodes before its own bins, ``moclip.video.ranges``) give bit-identical bins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from moclip.video.frames import DecodedFrame, mv_column
from moclip.video.orientation import UPRIGHT, Orientation

REF_DEPTH = 16  # frames searched for an H.264 block's reference, each way, when the SPS does not say (x264's
# defaults reach ~9 back); with it, 4 display frames per reference frame it keeps (B-frames between them), up to 32
MAX_REF_DEPTH = 32
# a timestamp gap shorter than this is a muxer's nudged duplicate (one tick of 1 ms or 1/90,000 s), not a frame
# time (a 10 ms step of a variable-frame-rate burst is one): frame distance / fps instead
MIN_GAP_S = 0.002
SAMPLE_BLOCKS = 64  # blocks matched against every candidate; the rest only against the candidates they voted for
PATCH = 4  # half the side of the matched square of pixels (8 x 8 around the block centre)
MAX_GAP_S = 60.0  # a longer time between a frame and its reference is a broken clock: frame distance / fps instead
FALLBACK_FPS = 25.0  # for a stream without timestamps that does not say its frame rate either


@dataclass
class MotionTensor:
    values: np.ndarray  # float32 [T, 2, H, W]
    valid: np.ndarray  # int32 [T]: usable MV frames per segment
    n_frames: int
    n_mv_frames: int


def frame_is_usable(pict_type: str, mvs: np.ndarray) -> bool:
    if pict_type == "I" or mvs.shape[0] == 0:
        return False
    if pict_type == "B" and not _any_motion(mvs):
        return False
    return True


def _any_motion(mvs: np.ndarray) -> bool:
    """Whether any MV moves (this runs on every B-frame). FFmpeg's record keeps motion_x and motion_y as two
    adjacent int32 in one aligned 8-byte word, so one strided int64 count tests both."""
    if mvs.ndim == 1 and mvs.flags.c_contiguous:
        word = _motion_word(mvs.dtype)
        if word is not None:
            return np.count_nonzero(mvs.view(np.int64)[word[0]::word[1]]) > 0
    return bool(np.count_nonzero(mv_column(mvs, "motion_x")) or np.count_nonzero(mv_column(mvs, "motion_y")))


_WORDS: dict[np.dtype, tuple[int, int] | None] = {}


def _motion_word(dtype: np.dtype) -> tuple[int, int] | None:
    """(index of the 8-byte word holding motion_x and motion_y, record size in words), or None."""
    if dtype not in _WORDS:
        f, word = dtype.fields, None
        if f is not None and "motion_x" in f and "motion_y" in f:
            off = f["motion_x"][1]
            if f["motion_y"][1] == off + 4 and off % 8 == 0 and dtype.itemsize % 8 == 0:
                word = (off // 8, dtype.itemsize // 8)
        _WORDS[dtype] = word
    return _WORDS[dtype]


class References:
    """The decoded luma planes of recent frames, and which of them each block's MV refers to.

    A block at ``dst`` whose MV points to ``src`` shows, in its reference frame, at ``src`` the picture it shows
    itself at ``dst``; in any other frame it does not (unless the picture is flat or still there, when every
    candidate matches: then the nearest is taken, as without matching). So each candidate frame is scored by the
    sum of absolute differences of the 8 x 8 pixels around ``dst`` and ``src``. ``SAMPLE_BLOCKS`` blocks are scored
    against every candidate within ``depth`` frames; the candidates they pick (most frames: one) are then scored
    for every block on 4 x 4 pixels."""

    def __init__(self, depth: int = REF_DEPTH) -> None:
        self.depth = depth
        self.frames: dict[int, tuple[float | None, np.ndarray]] = {}

    @staticmethod
    def depth_for(reference_frames: int | None) -> int:
        """How far to look, given the SPS's ``max_num_ref_frames`` (None: not known)."""
        return REF_DEPTH if reference_frames is None else min(MAX_REF_DEPTH, max(4, 4 * reference_frames))

    def keep(self, frame: DecodedFrame) -> None:
        if frame.luma is None:
            return
        if self.frames and next(iter(self.frames.values()))[1].shape != frame.luma.shape:
            self.frames.clear()  # the picture size changed mid-stream: earlier frames are no candidates
        self.frames[frame.index] = (frame.time_s, frame.luma)

    def forget_before(self, index: int) -> None:
        for i in [i for i in self.frames if i < index]:
            del self.frames[i]

    def inverse_seconds(self, frame: DecodedFrame, seconds: Callable[[int, float | None, int, float | None], float],
                        ) -> np.ndarray | None:
        """Per MV of ``frame``: ``source`` / the seconds to the frame it refers to (None: no candidates kept)."""
        source = mv_column(frame.mvs, "source")
        out = np.zeros(len(source), dtype=np.float64)  # FFmpeg writes only -1 and +1
        for direction in (-1, 1):
            rows = np.flatnonzero(source == direction)
            if not len(rows):
                continue
            step = -1 if direction < 0 else 1
            cands = [j for j in range(frame.index + step, frame.index + step * (self.depth + 1), step)
                     if j in self.frames]
            if not cands:
                return None
            best = self._match(frame.luma, frame.mvs[rows], cands)
            span = np.array([seconds(j, self.frames[j][0], frame.index, frame.time_s) if j < frame.index else
                             seconds(frame.index, frame.time_s, j, self.frames[j][0]) for j in cands])
            out[rows] = direction / span[best]
        return out

    def _match(self, cur: np.ndarray, mvs: np.ndarray, cands: list[int]) -> np.ndarray:
        """Per MV, the position in ``cands`` of the frame its block is found in (0, the nearest, when unknown)."""
        h, w = cur.shape
        dx, dy = mv_column(mvs, "dst_x").astype(np.int64), mv_column(mvs, "dst_y").astype(np.int64)
        sx, sy = mv_column(mvs, "src_x").astype(np.int64), mv_column(mvs, "src_y").astype(np.int64)
        moving = (mv_column(mvs, "motion_x") != 0) | (mv_column(mvs, "motion_y") != 0)  # still: any reference
        inside = np.flatnonzero(moving & (dx >= PATCH) & (dx < w - PATCH) & (dy >= PATCH) & (dy < h - PATCH)
                                & (sx >= PATCH) & (sx < w - PATCH) & (sy >= PATCH) & (sy < h - PATCH))
        best = np.zeros(len(mvs), dtype=np.int64)
        if not len(inside) or len(cands) == 1:
            return best
        here, there = dy * w + dx, sy * w + sx  # flat pixel index of each block's centre, and where its MV points
        sample = inside[np.linspace(0, len(inside) - 1, min(len(inside), SAMPLE_BLOCKS)).astype(np.int64)]
        sads = self._sads(cur, here[sample], there[sample], cands, self._square(w, PATCH))
        votes = np.bincount(sads.argmin(axis=0), minlength=len(cands))
        kept = np.flatnonzero(votes >= max(2, len(sample) // 10))
        if len(kept) <= 1:
            best[:] = kept[0] if len(kept) else int(votes.argmax())
            return best
        best[:] = kept[int(votes[kept].argmax())]  # blocks at the edges: the most common reference
        # every moving block, between the few candidates the sample picked: a 4 x 4 square tells them apart
        sads = self._sads(cur, here[inside], there[inside], [cands[k] for k in kept], self._square(w, PATCH // 2))
        best[inside] = kept[sads.argmin(axis=0)]
        return best

    @staticmethod
    def _square(width: int, half: int) -> np.ndarray:
        """Flat offsets of the 2 half x 2 half pixels around a pixel, in a plane ``width`` wide."""
        oy, ox = np.mgrid[-half:half, -half:half]
        return (oy * width + ox).reshape(-1)

    def _sads(self, cur: np.ndarray, here: np.ndarray, there: np.ndarray, cands: list[int], square: np.ndarray,
              ) -> np.ndarray:
        """[len(cands), blocks]: each block's sum of absolute differences against each candidate frame."""
        mine = cur.reshape(-1).take(here[:, None] + square).astype(np.int32)
        there = there[:, None] + square  # the same pixels in every candidate
        return np.stack([np.abs(self.frames[j][1].reshape(-1).take(there) - mine).sum(axis=1) for j in cands])


class MotionAccumulator:
    """Feed frames in display order with :meth:`add`; call :meth:`finish` once."""

    def __init__(self, segments: int, grid: tuple[int, int], width: int, height: int, max_bins: int = 1024,
                 expected_frames: int = 0, orientation: Orientation = UPRIGHT, fps: float = 0.0,
                 reference_depth: int = REF_DEPTH):
        """``width`` x ``height``: the coded picture the MVs are in; ``orientation``: how it is turned for display
        (``moclip.video.orientation``): the grid then lies over the displayed picture and x, y are its axes.
        ``fps``: the stream's frame rate, for frames without usable timestamps. ``reference_depth``: how many frames
        back and ahead an H.264 block's reference is looked for (``References.depth_for``)."""
        if width <= 0 or height <= 0:
            raise ValueError(f"bad frame size {width}x{height}")
        self.T = segments
        self.H, self.W = grid
        self.width, self.height = width, height
        self.max_bins = max_bins
        self.bin_width = 1
        # Sized for the container's frame count (``expected_frames``, a hint) and grown by doubling up to max_bins
        # when the hint was short: short clips never allocate all of it, and right-sized ones never copy.
        cap = min(max(64, expected_frames + 1), max_bins)
        # per bin and cell: area-weighted velocity sums (x, y) and the area itself
        self.sums = np.zeros((cap, 3, self.H * self.W), dtype=np.float64)
        self.counts = np.zeros(cap, dtype=np.int64)
        self.n_frames = 0
        self.n_mv_frames = 0
        self._last_anchor: int | None = None
        self._last_anchor_t: float | None = None
        self._frame_s = 1.0 / (fps if fps > 0 else FALLBACK_FPS)
        self._pending_b: list[tuple[DecodedFrame, int, bool]] = []
        self.first_key = 0  # keys are stored from here on (a range of a long video: its first bin)
        self._refs = References(reference_depth)
        self.chunk_frames = 64
        # usable frames not pooled yet: (MVs, -1 / seconds back, 1 / seconds ahead, bin, per MV: source / seconds)
        self._chunk: list[tuple[np.ndarray, float, float, int, np.ndarray | None]] = []
        self._x_axis, self._y_axis = orientation.axes(width, height, grid)  # coded axis -> displayed grid axis
        self._turn = None if orientation.upright else orientation.linear  # motion (x, y) -> displayed (x, y)
        shown_w, shown_h = orientation.display_size(width, height)
        self._sx, self._sy = 100.0 / shown_w, 100.0 / shown_h  # px/s -> % of the displayed size per second

    def add(self, frame: DecodedFrame, key: int | None = None, pool: bool = True) -> None:
        """``key``: the frame's time bin (``moclip.video.windows``); default: its index, binned as said above.
        Keys must not decrease from frame to frame. ``pool=False``: the frame is a reference and an anchor for the
        frames around it, but its own MVs are not counted (a bin another range of the video owns)."""
        i = frame.index
        if i >= self.n_frames:
            self.n_frames = i + 1
        if key is None:
            key = i
        if len(self._chunk) >= self.chunk_frames:  # the bins no frame can reach any more: before this frame's
            self._flush_chunk(below=min([key, *(k for _, k, _ in self._pending_b)]))  # and the waiting B-frames'
        self._refs.keep(frame)
        if frame.pict_type == "B":
            self._pending_b.append((frame, key, pool))
            return
        if frame.pict_type != "I" and pool:  # P, and MPEG-4's S (GMC) frames
            self._pool(frame, key, self._seconds(self._last_anchor, self._last_anchor_t, i, frame.time_s),
                       self._frame_s)
        if self._pending_b:
            self._flush_b(next_anchor=i, next_t=frame.time_s)
        self._last_anchor, self._last_anchor_t = i, frame.time_s
        self._refs.forget_before(i - self._refs.depth)  # the B-frames still to come refer to no older frame

    def _seconds(self, i0: int | None, t0: float | None, i1: int, t1: float | None) -> float:
        """The time from frame ``i0`` (shown at ``t0``) to frame ``i1`` (at ``t1``): from the timestamps where both
        exist and rise by at least ``MIN_GAP_S`` and at most ``MAX_GAP_S``, else the frame distance / fps (one frame
        when ``i0`` is unknown). A muxer that nudges a repeated timestamp by one tick would otherwise make that
        frame's motion tens to thousands of times too fast."""
        if t0 is not None and t1 is not None and MIN_GAP_S <= t1 - t0 <= MAX_GAP_S:
            return t1 - t0
        return max(i1 - i0 if i0 is not None else 1, 1) * self._frame_s

    def _flush_b(self, next_anchor: int | None, next_t: float | None = None) -> None:
        last, last_t, pending = self._last_anchor, self._last_anchor_t, self._pending_b
        for k, (b, key, pool) in enumerate(pending):
            if not pool:
                continue
            d_past = self._seconds(last, last_t, b.index, b.time_s)
            if next_anchor is not None:
                d_future = self._seconds(b.index, b.time_s, next_anchor, next_t)
            else:  # at the end of a stream the next anchor is unknown: assume it directly follows the last B
                d_future = (len(pending) - k) * self._frame_s
            self._pool(b, key, d_past, d_future)
        pending.clear()

    def _pool(self, frame: DecodedFrame, key: int, d_past: float, d_future: float) -> None:
        """``d_past``, ``d_future``: seconds to the frames the MVs refer to, behind and ahead."""
        mvs = frame.mvs
        if not frame_is_usable(frame.pict_type, mvs):
            return
        # forward-time velocity = motion * source / time / scale (FFmpeg: src = dst + motion / scale)
        matched = self._refs.inverse_seconds(frame, self._seconds) if frame.luma is not None else None
        self._chunk.append((mvs, -1.0 / d_past, 1.0 / d_future, key, matched))

    def _flush_chunk(self, below: int | None = None) -> None:
        """Pool the buffered frames in one vectorised pass (per-frame numpy calls cost more than decoding); with
        ``below``: only those of the bins before that key, which no frame still to come can reach, so that each bin
        is pooled in one pass whatever frames came before it."""
        if below is not None:
            chunk = [c for c in self._chunk if c[3] < below]
            self._chunk = [c for c in self._chunk if c[3] >= below]
        else:
            chunk, self._chunk = self._chunk, []
        if not chunk:
            return
        counts = np.fromiter((len(c[0]) for c in chunk), dtype=np.int64, count=len(chunk))
        mvs = _concat_records([c[0] for c in chunk])
        index = np.fromiter((c[3] - self.first_key for c in chunk), dtype=np.int64, count=len(chunk))
        self._make_room(int(index.max()))
        # Only the bins this chunk's frames fall in (an MPEG-4 IBBP chunk skips 2 of every 3 frames).
        bins, local = np.unique(index // self.bin_width, return_inverse=True)
        nb = len(bins)
        hw = self.H * self.W
        col = {n: mv_column(mvs, n) for n in ("source", "w", "h", "dst_x", "dst_y", "motion_x", "motion_y",
                                                  "motion_scale")}
        if any(c[4] is not None for c in chunk):  # H.264: each block's own reference
            inverse = np.concatenate([c[4] if c[4] is not None else
                                      np.where(mv_column(c[0], "source") < 0, c[1], c[2]) for c in chunk])
        else:
            past = np.repeat(np.fromiter((c[1] for c in chunk), dtype=np.float64, count=len(chunk)), counts)
            future = np.repeat(np.fromiter((c[2] for c in chunk), dtype=np.float64, count=len(chunk)), counts)
            inverse = np.where(col["source"] < 0, past, future)
        speed = inverse / col["motion_scale"]  # per pixel of motion: 1/s
        mx, my = col["motion_x"], col["motion_y"]
        if self._turn is not None:  # a signed permutation: each displayed axis is one coded axis, maybe reversed
            (a, b), (c, d) = self._turn
            mx, my = a * mx + b * my, c * mx + d * my
        vx, vy = speed * mx * self._sx, speed * my * self._sy  # % of the displayed size per second
        base = np.repeat(local, counts) * hw
        size = nb * hw
        xs = self._x_axis.spans(col["dst_x"].astype(np.float64), col["w"].astype(np.float64))
        ys = self._y_axis.spans(col["dst_y"].astype(np.float64), col["h"].astype(np.float64))
        for j, (cx, ox) in enumerate(xs):  # each cell a block overlaps, by overlap area (one pass when blocks fit)
            for i, (cy, oy) in enumerate(ys):
                area, flat, wx, wy = ox * oy, base + cx + cy, vx, vy
                if i or j:  # the blocks that straddle a cell edge
                    hit = np.flatnonzero(area)
                    area, flat, wx, wy = area[hit], flat[hit], vx[hit], vy[hit]
                self.sums[bins, 0] += np.bincount(flat, weights=area * wx, minlength=size).reshape(nb, hw)
                self.sums[bins, 1] += np.bincount(flat, weights=area * wy, minlength=size).reshape(nb, hw)
                self.sums[bins, 2] += np.bincount(flat, weights=area, minlength=size).reshape(nb, hw)
        self.counts[bins] += np.bincount(local, minlength=nb)
        self.n_mv_frames += len(chunk)

    def _make_room(self, index: int) -> None:
        while index // self.bin_width >= len(self.counts) and len(self.counts) < self.max_bins:
            cap = min(2 * len(self.counts), self.max_bins)
            self.sums = _grow(self.sums, cap)
            self.counts = _grow(self.counts, cap)
        while index // self.bin_width >= self.max_bins:
            # Halve the temporal resolution: merge bin pairs in place.
            half = self.max_bins // 2
            for arr in (self.sums, self.counts):
                merged = arr[0::2] + arr[1::2]
                arr[:half] = merged
                arr[half:] = 0
            self.bin_width *= 2

    def finish_bins(self, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
        """Every bin's own tensor: values float32 [n_bins, 2, H, W] (area-weighted mean velocity per cell) and
        usable MV frames int32 [n_bins] (for keyed bins, ``add(frame, key)``; ``bin_width`` must still be 1)."""
        self._flush_b(next_anchor=None)
        self._flush_chunk()
        if self.bin_width != 1:
            raise ValueError("bins were merged (more than max_bins): use finish()")
        hw = self.H * self.W
        m = min(n_bins, len(self.counts))
        counts = np.zeros(n_bins, np.int32)
        counts[:m] = self.counts[:m]
        values = np.zeros((n_bins, 2, hw), np.float32)  # written in place from views: no float64 copy
        area = self.sums[:m, 2][:, None, :]
        np.divide(self.sums[:m, :2], area, out=values[:m], where=area > 0, casting="same_kind")
        return values.reshape(n_bins, 2, self.H, self.W), counts

    def finish(self) -> MotionTensor:
        self._flush_b(next_anchor=None)
        self._flush_chunk()
        n = self.n_frames
        hw = self.H * self.W
        out = np.zeros((self.T, 3 * hw), dtype=np.float64)
        valid = np.zeros(self.T, dtype=np.int32)
        bins = np.nonzero(self.counts)[0]
        if len(bins):
            first = bins * self.bin_width
            last = np.minimum((bins + 1) * self.bin_width, n) - 1
            seg = np.minimum(self.T - 1, ((first + last) / 2 * self.T / n).astype(np.int64))  # bin centre's segment
            # Bins are in order, so each segment's bins are one run of rows (rows between them are empty: exact
            # zeros). Reducing the rows along the first axis adds them one after another, as adding bin by bin would
            # (the inner loop runs over the 3*H*W columns); np.add.at is ~10x slower, reduceat sums in another order.
            rows = self.sums.reshape(len(self.sums), 3 * hw)
            segs, starts = np.unique(seg, return_index=True)
            for s, lo, hi in zip(segs, starts, [*starts[1:], len(bins)]):
                np.add.reduce(rows[bins[lo]:bins[hi - 1] + 1], axis=0, out=out[s])
                valid[s] = self.counts[bins[lo]:bins[hi - 1] + 1].sum()
        out = out.reshape(self.T, 3, hw)
        out_sum, out_area = out[:, :2], out[:, 2]
        values = np.divide(out_sum, out_area[:, None, :], out=np.zeros_like(out_sum), where=out_area[:, None, :] > 0)
        values = values.reshape(self.T, 2, self.H, self.W).astype(np.float32)
        return MotionTensor(values=values, valid=valid, n_frames=n, n_mv_frames=self.n_mv_frames)


def _grow(arr: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows, *arr.shape[1:]), dtype=arr.dtype)
    out[:len(arr)] = arr
    return out


def _concat_records(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate arrays of one structured dtype as raw bytes: ``np.concatenate`` on structured dtypes copies them
    field by field, which cost more than the pooling arithmetic itself. The reader's arrays are views of whole
    ``bytes`` objects, which ``bytes.join`` copies 2-3x faster than numpy concatenates them."""
    dtype = parts[0].dtype
    if not dtype.names:
        return np.concatenate(parts)
    raw = [p.base if type(p.base) is bytes and len(p.base) == p.nbytes else np.ascontiguousarray(p).tobytes()
           for p in parts]
    return np.frombuffer(b"".join(raw), dtype=dtype)
