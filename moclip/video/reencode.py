"""Motion vectors for any codec: re-encode the decoded frames as MPEG-4 Part 2 in memory, read that stream's MVs.

FFmpeg exports motion vectors only from the decoders of H.264, MPEG-4 Part 2, MPEG-1/2 and H.263; HEVC, VP9, AV1,
VP8, MJPEG and GIF videos have none to give. Their frames are scaled to a fixed working size and encoded as
MPEG-4 Part 2 with a fixed GOP and no B-frames, the protocol of CoViAR and of the paper's own preprocessing (340 x
256, ``-q:v 1``), and a second decoder reads the motion vectors of that stream, frame by frame: nothing is written
to disk and memory stays bounded for any length. The same path serves ``mv_source="reencode"`` for every video,
so that a model sees one encoder's motion statistics whatever the archive's encoders were.

Re-encoded MVs are a function of the decoded pixels (and of this encoder), so they differ from a file's native
MVs; their direction and magnitude agree on real motion (``docs/MOTION_VECTORS.md``).
"""

from __future__ import annotations

import math
from collections import deque
from fractions import Fraction

import av
import numpy as np
from av.video.frame import PictureType
from av.video.reformatter import VideoReformatter

from moclip.video.av_records import mv_array, pict_letter
from moclip.video.frames import EMPTY_MVS

SIZE = (340, 256)  # (width, height): CoViAR's re-encode size


def size_for(width: int, height: int) -> tuple[int, int]:
    """The re-encode size of a ``width`` x ``height`` picture: ``SIZE``, turned for a portrait one (a phone's coded
    240 x 320 squeezed into 340 x 256 read 20 % less motion than the same scene coded landscape)."""
    return SIZE if width >= height else SIZE[::-1]
GOP = 12  # an I-frame every 12 frames (MPEG-4 Part 2 P-frames in between, no B-frames), placed by time: at the
# first frame of every 12 frame durations of the stream's average rate (0.48 s at 25 fps)
MAX_GOP = 250  # the encoder's own limit, for frames without timestamps and long bursts between two times
QSCALE = 1  # fixed quantiser, best quality: MVs follow the picture, not a bit budget
_EPS = 1e-6


class Reencoder:
    """Frames in (any size, any pixel format), (picture type, MV records) out, one per frame, in order.

    The encoder's state starts again at each of its I-frames (fixed quantiser, no B-frames): a P-frame's MVs depend
    only on the frames since the last one. So the I-frames are placed by the frames' times, at the first frame of
    every ``gop`` frame durations (at the stream's average ``fps``) since ``origin`` (the video's first frame), which
    a decode that starts in the middle of the video (a range of a long one, ``moclip.video.ranges``) places on the
    same frames: from its first such I-frame on, its MVs are the whole decode's, bit for bit. Frames without a
    timestamp: every ``gop``-th."""

    def __init__(self, size: tuple[int, int] = SIZE, gop: int = GOP, qscale: int = QSCALE,
                 origin: float | None = None, fps: float = 25.0) -> None:
        self.gop, self.gop_s, self.origin = gop, gop / (fps if fps > 0 else 25.0), origin
        self._next_i: int | None = None  # the GOP (durations since origin) whose first frame is the next I-frame
        self.width, self.height = size
        enc = av.CodecContext.create("mpeg4", "w")
        enc.width, enc.height, enc.pix_fmt = self.width, self.height, "yuv420p"
        enc.time_base, enc.framerate = Fraction(1, 25), Fraction(25, 1)  # nominal: MVs are per frame, not per second
        enc.gop_size, enc.max_b_frames = MAX_GOP, 0
        enc.qscale = True
        enc.global_quality = qscale * 118  # FF_QP2LAMBDA x q, as ffmpeg's -q:v sets it
        enc.thread_count = 1
        enc.open()
        dec = av.CodecContext.create("mpeg4", "r")
        dec.thread_count = 1
        dec.options = {"flags2": "+export_mvs"}
        self._enc, self._dec = enc, dec
        self._scaler = VideoReformatter()  # one swscale context per video
        self._out: deque[tuple[str, np.ndarray]] = deque()
        self._n = 0

    def intra(self, time_s: float | None) -> bool:
        """Whether the frame shown at ``time_s`` (seconds; None: no timestamp) starts a GOP of the re-encode."""
        if time_s is None:
            return self._n % self.gop == 0
        if self.origin is None:
            self.origin = time_s
        gops = (time_s - self.origin) / self.gop_s  # GOP durations since the first frame
        if self._next_i is not None and gops < self._next_i - _EPS:
            return False
        self._next_i = math.floor(gops + _EPS) + 1
        return True

    def push(self, frame: av.VideoFrame) -> list[tuple[str, np.ndarray]]:
        """Encode ``frame``; the (picture type, MVs) of every re-encoded frame that is ready (normally this one)."""
        small = self._scaler.reformat(frame, width=self.width, height=self.height, format="yuv420p",
                                      interpolation="BICUBIC")  # ffmpeg scale's default
        small.pts, small.time_base = self._n, self._enc.time_base  # the source's time base would rescale it
        # the source's own type (all I for MJPEG) is never forced on the encoder: only the GOP's by time
        small.pict_type = PictureType.I if self.intra(frame.time) else PictureType.NONE
        self._n += 1
        self._decode(self._enc.encode(small))
        return self._ready()

    def finish(self) -> list[tuple[str, np.ndarray]]:
        """Flush the encoder and the decoder: the frames still in them."""
        self._decode(self._enc.encode(None))
        for out in self._dec.decode(None):
            self._keep(out)
        return self._ready()

    def _decode(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            for out in self._dec.decode(packet):
                self._keep(out)

    def _keep(self, out: av.VideoFrame) -> None:

        pict = pict_letter(out.pict_type)
        self._out.append((pict, mv_array(out) if pict != "I" else EMPTY_MVS))

    def _ready(self) -> list[tuple[str, np.ndarray]]:
        ready = list(self._out)
        self._out.clear()
        return ready
