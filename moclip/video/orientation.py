"""Display orientation: a phone held upright writes landscape pictures and a display matrix that says "turn me a
quarter turn"; some cameras mirror. Players show the turned picture, and so must moclip: CLIP sees upright frames
and the MV tensor describes the motion a viewer sees (its grid over the displayed picture, x to the right and y
down of the displayed picture, each in % of the displayed width and height).

The matrix is read as FFmpeg's own autorotate reads it (``fftools``: ``get_rotation`` and the transpose / hflip /
vflip it inserts), so moclip turns a video exactly as ``ffmpeg`` and ``ffplay`` do. A matrix that is no multiple of
90 degrees gets the nearest quarter turn and a note on the row (``Orientation.note``); a malformed one (zero
scale) is treated as upright, with a note. Every turn and mirror is one of the 8 symmetries of a rectangle, so it
maps each axis of the coded picture onto one axis of the displayed one: ``linear`` says how (a signed
permutation matrix), for positions and for motion vectors alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

# FFmpeg's transpose filter directions and flips, as array operations on an [H, W, ...] picture
_OPS = {
    "clock": lambda a: np.rot90(a, -1),  # 90 degrees clockwise
    "cclock": lambda a: np.rot90(a, 1),  # 90 degrees counter-clockwise
    "cclock_flip": lambda a: np.swapaxes(a, 0, 1),  # counter-clockwise, then vertical flip: the transpose
    "clock_flip": lambda a: np.rot90(a, -1)[::-1],  # clockwise, then vertical flip
    "hflip": lambda a: a[:, ::-1],
    "vflip": lambda a: a[::-1],
}


@dataclass(frozen=True)
class Axis:
    """One coded picture axis of ``pixels`` as it is displayed: ``cells`` grid cells along it (``reversed``: the
    displayed axis runs the other way), cell ``k`` at flat index ``stride * k``."""

    pixels: int
    cells: int
    stride: int
    reversed: bool

    def spans(self, centre: np.ndarray, size: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Blocks of ``size`` pixels centred at ``centre`` (coded pixels) -> [(flat index, overlap in pixels)], one
        pair per cell offset: every block's share of each displayed cell it overlaps (clipped to the picture, so a
        padded macroblock past the edge counts for its visible part)."""
        n, m = float(self.pixels), self.cells
        lo = np.clip(centre - size / 2.0, 0.0, n)
        hi = np.clip(centre + size / 2.0, 0.0, n)
        if self.reversed:
            lo, hi = n - hi, n - lo
        step = n / m
        first = np.minimum((lo / step).astype(np.int64), m - 1)
        reach = int(np.max((hi - lo) / step, initial=0.0)) + 2  # cells a block can touch, at most
        out = []
        for j in range(reach):
            k = first + j
            overlap = np.minimum(hi, (k + 1) * step) - np.maximum(lo, k * step)
            if j and not (overlap > 0).any():
                break
            out.append((np.minimum(k, m - 1) * self.stride, np.maximum(overlap, 0.0)))
        return out


@dataclass(frozen=True)
class Orientation:
    """How a decoded picture is turned for display: FFmpeg's autorotate operations, applied in order."""

    ops: tuple[str, ...] = ()
    note: str | None = None  # why the matrix was not taken as it is (not a quarter turn, malformed)

    @property
    def upright(self) -> bool:
        return not self.ops

    @cached_property
    def linear(self) -> np.ndarray:
        """The 2x2 signed permutation matrix A with (u, v) = A (x, y) + offset: a coded pixel's column and row
        (x, y) -> its displayed column and row (u, v); motion vectors turn by A alone."""
        w = 3  # a 3 x 2 picture of pixel numbers, turned: where coded (0, 0), (1, 0) and (0, 1) land
        shown = self.image(np.arange(2 * w).reshape(2, w))
        where = {divmod(int(n), w)[::-1]: (u, v) for (v, u), n in np.ndenumerate(shown)}
        origin = np.array(where[(0, 0)])
        return np.column_stack([np.array(where[(1, 0)]) - origin, np.array(where[(0, 1)]) - origin])

    def image(self, picture: np.ndarray) -> np.ndarray:
        """``picture`` ([H, W, ...]) as displayed (a contiguous copy when turned)."""
        for op in self.ops:
            picture = _OPS[op](picture)
        return np.ascontiguousarray(picture) if self.ops else picture

    @property
    def transposed(self) -> bool:
        """Whether width and height swap (a quarter turn)."""
        return bool(self.linear[0, 0] == 0)

    def display_size(self, width: int, height: int) -> tuple[int, int]:
        return (height, width) if self.transposed else (width, height)

    def axes(self, width: int, height: int, grid: tuple[int, int]) -> tuple[Axis, Axis]:
        """(coded x, coded y): the displayed grid axis each coded axis lies along. ``grid`` = (rows, columns) over
        the displayed picture; a displayed cell's flat index is the sum of its two axes' ``stride * cell``."""
        rows, cols = grid
        a = self.linear
        out = []
        for axis, n in ((0, width), (1, height)):  # coded x, then coded y
            if a[0, axis]:  # lands on the displayed columns
                out.append(Axis(n, cols, 1, bool(a[0, axis] < 0)))
            else:  # on the displayed rows
                out.append(Axis(n, rows, cols, bool(a[1, axis] < 0)))
        return out[0], out[1]

    @property
    def label(self) -> str | None:
        """What the row records: None when upright (and no note), else e.g. "rotate 90 clockwise", "mirror
        left-right", "mirror left-right, then rotate 90 counter-clockwise", with the note in brackets."""
        if self.upright:
            return self.note
        a = self.linear
        mirrored = round(np.linalg.det(a)) < 0
        r = a @ np.diag([-1, 1]) if mirrored else a  # A = R M: the turn R after the mirror M of x is taken out
        # R's first column is where coded +x points on the screen (y down): (1, 0) none, (0, 1) 90 clockwise, ...
        turn = {(1, 0): 0, (0, 1): 90, (-1, 0): 180, (0, -1): 270}[(int(r[0, 0]), int(r[1, 0]))]
        if not mirrored:
            text = {90: "rotate 90 clockwise", 180: "rotate 180", 270: "rotate 90 counter-clockwise"}[turn]
        elif turn in (0, 180):
            text = "mirror left-right" if turn == 0 else "mirror top-bottom"
        else:
            text = f"mirror left-right, then rotate 90 {'clockwise' if turn == 90 else 'counter-clockwise'}"
        return f"{text} ({self.note})" if self.note else text


UPRIGHT = Orientation()


def from_display_matrix(matrix: np.ndarray | None) -> Orientation:
    """The orientation of a display matrix (9 int32: 16.16 fixed point, the last column 2.30), as FFmpeg's
    autorotate reads it; None or the identity: upright."""
    if matrix is None or len(matrix) != 9:
        return UPRIGHT
    m = [float(v) / (1 << 16) for v in matrix]
    scale0, scale1 = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if scale0 == 0 or scale1 == 0:
        return Orientation(note="malformed display matrix (zero scale): shown as coded")
    rotation = -math.degrees(math.atan2(m[1] / scale1, m[0] / scale0))  # av_display_rotation_get
    theta = -round(rotation)  # fftools get_rotation
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    nearest = (round(theta / 90) * 90) % 360
    note = None
    if abs(theta - round(theta / 90) * 90) > 1.0:
        note = f"display matrix turns by {theta:g} degrees, not a quarter turn: the nearest ({nearest}) is used"
    if nearest == 90:
        ops: tuple[str, ...] = ("cclock_flip",) if matrix[3] > 0 else ("clock",)
    elif nearest == 180:
        ops = (("hflip",) if matrix[0] < 0 else ()) + (("vflip",) if matrix[4] < 0 else ())
    elif nearest == 270:
        ops = ("clock_flip",) if matrix[3] < 0 else ("cclock",)
    else:
        ops = ("vflip",) if matrix[4] < 0 else ()
    return Orientation(ops=ops, note=note)
