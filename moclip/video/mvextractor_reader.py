"""mv-extractor backend (``mvextractor.videocap.VideoCap``): the reference implementation of MV reading.

It yields the same MVs as the PyAV backend, but threads its decoder by CPU count, so H.264 B-frame MVs
can differ between runs; use it to cross-check, not by default (see docs/MOTION_VECTORS.md).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator

import cv2
import numpy as np

from moclip.video import pyav_reader
from moclip.video.frames import EMPTY_MVS, DecodedFrame, DecodeError, VideoInfo


def iter_frames(
    path: str,
    rgb_wanted: Callable[[int, float | None], bool] | None = None,
    rgb_size: Callable[[int, int], tuple[int, int]] | None = None,
    *,
    export_mvs: bool = True,
    max_frames: int | None = None,
    timeout_s: float | None = None,
) -> tuple[VideoInfo, Iterator[DecodedFrame]]:
    from mvextractor.videocap import VideoCap

    info = pyav_reader.probe(path)  # VideoCap reports no stream metadata, nor the display matrix
    orientation = pyav_reader.read_orientation(path)
    info = dataclasses.replace(info, orientation=orientation)
    cap = VideoCap()
    if not cap.open(path):
        raise DecodeError("mvextractor could not open the file")

    def gen() -> Iterator[DecodedFrame]:
        start = time.monotonic()
        index = 0
        decoding = None
        try:
            while True:
                if max_frames is not None and index >= max_frames:
                    raise DecodeError(f"more than {max_frames} frames (max_frames cap)")
                if timeout_s is not None and time.monotonic() - start > timeout_s:
                    raise DecodeError(f"decoding took longer than {timeout_s:g} s (decode time limit)")
                want = rgb_wanted is not None and rgb_wanted(index, None)  # VideoCap gives no timestamps
                if want != decoding:
                    cap.set_decode_frames(want)
                    decoding = want
                ok, bgr, mvs, ftype = cap.read()
                if not ok:
                    break
                rgb = None
                if want and bgr is not None:
                    h0, w0 = bgr.shape[:2]
                    w0 = max(1, round(w0 * info.sar))  # anamorphic: CLIP sees the displayed shape
                    w, h = rgb_size(w0, h0) if rgb_size else (w0, h0)
                    rgb = orientation.image(cv2.cvtColor(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_CUBIC),
                                                         cv2.COLOR_BGR2RGB))
                mv = np.ascontiguousarray(mvs, dtype=np.int32) if export_mvs and mvs.size else EMPTY_MVS
                yield DecodedFrame(index=index, pict_type=str(ftype), mvs=mv, rgb=rgb)
                index += 1
        finally:
            cap.release()

    return info, gen()
