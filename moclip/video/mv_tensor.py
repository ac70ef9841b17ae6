"""Motion vectors of a whole video -> one fixed-shape tensor (T segments x 2 channels x H x W cells).

Rules (docs/MOTION_VECTORS.md explains why):

* Units: every MV becomes a forward-time velocity in **percent of the frame size per frame**
  (x: of the width, y: of the height), so any resolution or aspect ratio gives the same shape and scale.
* Reference distance: FFmpeg's ``source`` is only a direction (-1 past, +1 future). A P-frame in an IBBP GOP
  points 3 frames back, so its raw MVs are 3x the per-frame motion. We divide by the display-order distance to
  the nearest anchor (I/P frame) in that direction. (Multi-reference H.264 and B-pyramids can still point
  elsewhere; that part is unknowable from the exported MVs and left as is.)
* Usable frames: I-frames and frames without MVs add nothing; B-frames whose MVs are all zero are skipped (FFmpeg
  exports all-zero MVs for MPEG-4 Part 2 B-frames). A P-frame with all-zero MVs is real evidence of no motion
  and counts.
* Pooling: each MV adds ``area * velocity`` to the cell holding its block centre; a cell's value is the
  area-weighted mean over the MVs that landed in it across all usable frames of the segment. Cells with no
  MVs (intra blocks) are 0 and do not dilute their neighbours; ``valid`` counts usable frames per segment.
* Memory is bounded for any length: frames are pooled into at most ``max_bins`` temporal bins whose width
  doubles when needed; bins are assigned to segments by their centre once the true frame count is known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moclip.video.frames import DecodedFrame, mv_column


@dataclass
class MotionTensor:
    values: np.ndarray  # float32 [T, 2, H, W]
    valid: np.ndarray  # int32 [T]: usable MV frames per segment
    n_frames: int
    n_mv_frames: int


def frame_is_usable(pict_type: str, mvs: np.ndarray) -> bool:
    if pict_type == "I" or mvs.shape[0] == 0:
        return False
    if pict_type == "B" and not (mv_column(mvs, "motion_x").any() or mv_column(mvs, "motion_y").any()):
        return False
    return True


class MotionAccumulator:
    """Feed frames in display order with :meth:`add`; call :meth:`finish` once."""

    def __init__(self, segments: int, grid: tuple[int, int], width: int, height: int, max_bins: int = 1024):
        if width <= 0 or height <= 0:
            raise ValueError(f"bad frame size {width}x{height}")
        self.T = segments
        self.H, self.W = grid
        self.width, self.height = width, height
        self.max_bins = max_bins
        self.bin_width = 1
        cap = min(64, max_bins)  # grown by doubling up to max_bins: short clips never allocate all of it
        self.sums = np.zeros((cap, 2, self.H * self.W), dtype=np.float64)
        self.areas = np.zeros((cap, self.H * self.W), dtype=np.float64)
        self.counts = np.zeros(cap, dtype=np.int64)
        self.n_frames = 0
        self.n_mv_frames = 0
        self._last_anchor: int | None = None
        self._pending_b: list[DecodedFrame] = []
        self.chunk_frames = 64
        self._chunk: list[tuple[np.ndarray, float, float, int]] = []  # usable frames not pooled yet
        # pixel -> cell lookups (block centres of padded macroblocks may lie past the visible frame)
        self._xmax, self._ymax = width - 1, height - 1
        self._col_of = np.arange(width) * self.W // width
        self._row_of = (np.arange(height) * self.H // height) * self.W
        self._sx, self._sy = 100.0 / width, 100.0 / height  # px/frame -> % of frame size per frame

    def add(self, frame: DecodedFrame) -> None:
        self.n_frames = max(self.n_frames, frame.index + 1)
        if frame.pict_type == "B":
            self._pending_b.append(frame)
            return
        if frame.pict_type != "I":  # P, and MPEG-4's S (GMC) frames
            d_past = frame.index - self._last_anchor if self._last_anchor is not None else 1
            self._pool(frame, max(d_past, 1), 1)
        self._flush_b(next_anchor=frame.index)
        self._last_anchor = frame.index

    def _flush_b(self, next_anchor: int | None) -> None:
        for k, b in enumerate(self._pending_b):
            d_past = b.index - self._last_anchor if self._last_anchor is not None else 1
            # At the end of a stream the next anchor is unknown: assume it directly follows the last B.
            d_future = (next_anchor - b.index) if next_anchor is not None else len(self._pending_b) - k
            self._pool(b, max(d_past, 1), max(d_future, 1))
        self._pending_b.clear()

    def _pool(self, frame: DecodedFrame, d_past: int, d_future: int) -> None:
        if not frame_is_usable(frame.pict_type, frame.mvs):
            return
        # forward-time velocity = motion * source / distance / scale (FFmpeg: src = dst + motion / scale)
        self._chunk.append((frame.mvs, -1.0 / d_past, 1.0 / d_future, frame.index))
        if len(self._chunk) >= self.chunk_frames:
            self._flush_chunk()

    def _flush_chunk(self) -> None:
        """Pool the buffered frames in one vectorised pass (per-frame numpy calls cost more than decoding)."""
        if not self._chunk:
            return
        chunk, self._chunk = self._chunk, []
        counts = np.fromiter((len(c[0]) for c in chunk), dtype=np.int64, count=len(chunk))
        mvs = _concat_records([c[0] for c in chunk])
        past = np.repeat(np.fromiter((c[1] for c in chunk), dtype=np.float64, count=len(chunk)), counts)
        future = np.repeat(np.fromiter((c[2] for c in chunk), dtype=np.float64, count=len(chunk)), counts)
        index = np.fromiter((c[3] for c in chunk), dtype=np.int64, count=len(chunk))
        self._make_room(int(index.max()))
        frame_bins = index // self.bin_width
        b0 = int(frame_bins.min())
        nb = int(frame_bins.max()) - b0 + 1
        hw = self.H * self.W
        col = {n: mv_column(mvs, n) for n in ("source", "w", "h", "dst_x", "dst_y", "motion_x", "motion_y",
                                                  "motion_scale")}
        area = col["w"].astype(np.float64) * col["h"]
        weight = np.where(col["source"] < 0, past, future) / col["motion_scale"] * area  # area-weighted
        cell = (self._row_of[np.clip(col["dst_y"], 0, self._ymax)]
                + self._col_of[np.clip(col["dst_x"], 0, self._xmax)])
        flat = np.repeat(frame_bins - b0, counts) * hw + cell
        size = nb * hw
        vx = np.bincount(flat, weights=weight * col["motion_x"], minlength=size)
        vy = np.bincount(flat, weights=weight * col["motion_y"], minlength=size)
        self.sums[b0:b0 + nb, 0] += vx.reshape(nb, hw) * self._sx
        self.sums[b0:b0 + nb, 1] += vy.reshape(nb, hw) * self._sy
        self.areas[b0:b0 + nb] += np.bincount(flat, weights=area, minlength=size).reshape(nb, hw)
        self.counts[b0:b0 + nb] += np.bincount(frame_bins - b0, minlength=nb)
        self.n_mv_frames += len(chunk)

    def _make_room(self, index: int) -> None:
        while index // self.bin_width >= len(self.counts) and len(self.counts) < self.max_bins:
            cap = min(2 * len(self.counts), self.max_bins)
            self.sums = _grow(self.sums, cap)
            self.areas = _grow(self.areas, cap)
            self.counts = _grow(self.counts, cap)
        while index // self.bin_width >= self.max_bins:
            # Halve the temporal resolution: merge bin pairs in place.
            half = self.max_bins // 2
            for arr in (self.sums, self.areas, self.counts):
                merged = arr[0::2] + arr[1::2]
                arr[:half] = merged
                arr[half:] = 0
            self.bin_width *= 2

    def finish(self) -> MotionTensor:
        self._flush_b(next_anchor=None)
        self._flush_chunk()
        n = self.n_frames
        out_sum = np.zeros((self.T, 2, self.H * self.W), dtype=np.float64)
        out_area = np.zeros((self.T, self.H * self.W), dtype=np.float64)
        valid = np.zeros(self.T, dtype=np.int32)
        bins = np.nonzero(self.counts)[0]
        if len(bins):
            first = bins * self.bin_width
            last = np.minimum((bins + 1) * self.bin_width, n) - 1
            seg = np.minimum(self.T - 1, ((first + last) / 2 * self.T / n).astype(np.int64))  # bin centre's segment
            # bins are in order, so each segment's bins are one run; cumsum adds them one after another, in the
            # same order as adding bin by bin (np.add.at is ~10x slower; reduceat sums in another order)
            segs, starts = np.unique(seg, return_index=True)
            for s, lo, hi in zip(segs, starts, [*starts[1:], len(bins)]):
                run = bins[lo:hi]
                out_sum[s] = np.cumsum(self.sums[run], axis=0)[-1]
                out_area[s] = np.cumsum(self.areas[run], axis=0)[-1]
                valid[s] = self.counts[run].sum()
        values = np.divide(out_sum, out_area[:, None, :], out=np.zeros_like(out_sum), where=out_area[:, None, :] > 0)
        values = values.reshape(self.T, 2, self.H, self.W).astype(np.float32)
        return MotionTensor(values=values, valid=valid, n_frames=n, n_mv_frames=self.n_mv_frames)


def _grow(arr: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows, *arr.shape[1:]), dtype=arr.dtype)
    out[:len(arr)] = arr
    return out


def _concat_records(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate arrays of one structured dtype as raw records: ``np.concatenate`` on structured dtypes promotes
    them field by field, which cost more than the pooling arithmetic itself."""
    dtype = parts[0].dtype
    if not dtype.names:
        return np.concatenate(parts)
    raw = np.dtype((np.void, dtype.itemsize))
    return np.concatenate([np.ascontiguousarray(p).view(raw) for p in parts]).view(dtype)
