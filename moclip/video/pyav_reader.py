"""PyAV backend: one decode pass with FFmpeg's motion-vector export; RGB only for the frames CLIP needs.

Decoding is single-threaded (``thread_count=1``): FFmpeg's frame threading makes H.264 B-frame MVs
nondeterministic, and a Dask worker already owns one core.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from collections import deque
from collections.abc import Callable, Iterator

import av
import numpy as np
from av.sidedata.sidedata import SideDataContainer
from av.video.reformatter import VideoReformatter

from moclip.video.av_records import mv_array, pict_letter
from moclip.video.frames import EMPTY_MVS, DecodedFrame, DecodeError, VideoInfo
from moclip.video.h264 import max_reference_frames
from moclip.video.orientation import UPRIGHT, Orientation, from_display_matrix
from moclip.video.reencode import Reencoder, size_for

av.logging.set_level(av.logging.PANIC)  # FFmpeg chatter ("packed B-frames" ...) is not our users' problem


def open_video(path: str) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    try:
        container = av.open(path, metadata_errors="ignore")
    except av.error.InvalidDataError as e:
        raise DecodeError(f"not a readable video file ({e.strerror or e})") from e
    except PermissionError as e:  # av.error.PermissionError is one too
        raise DecodeError(f"permission denied: {path}") from e
    except (av.error.FFmpegError, OSError) as e:
        raise DecodeError(f"cannot open: {getattr(e, 'strerror', None) or e}") from e
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise DecodeError(f"no video stream (streams: {', '.join(kinds)})")
    return container, container.streams.video[0]


def probe(path: str) -> VideoInfo:
    container, stream = open_video(path)
    try:
        return _info(container, stream)
    finally:
        container.close()


def _info(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    n_hint = int(stream.frames or 0)
    if n_hint <= 0 and duration > 0 and fps > 0:
        n_hint = int(round(duration * fps))
    cc = stream.codec_context
    sar = stream.sample_aspect_ratio or cc.sample_aspect_ratio
    return VideoInfo(  # the codec, not the decoder that FFmpeg picked for it ("av1", not "libdav1d")
        codec=cc.codec.canonical_name, width=int(cc.width), height=int(cc.height), fps=fps, n_frames_hint=n_hint,
        duration_s=duration, container=container.format.name,
        sar=float(sar) if sar and 0.1 <= float(sar) <= 10 else 1.0,  # 0/1 (unknown) and nonsense: square pixels
    )


def _ffmpeg_message(e: av.error.FFmpegError) -> str:
    """FFmpeg's words without the errno and C function, e.g. "Invalid data found when processing input
    (h264: Error splitting the input into NAL units.)"; ``e.log`` is FFmpeg's last (level, component, message)."""
    log = getattr(e, "log", None)
    detail = f" ({log[1]}: {str(log[2]).strip()})" if isinstance(log, tuple) and len(log) == 3 else ""
    return f"{e.strerror or e}{detail}"


# Codecs whose blocks may refer to other frames than the nearest anchor (multiple references, B-pyramids): their
# luma planes go with the MVs, for mv_tensor.References to find each block's reference, unless the stream keeps
# a single reference frame (its SPS says so: moclip.video.h264).
MULTI_REFERENCE_CODECS = frozenset({"h264"})


def may_refer_further_back(codec: str, reference_frames: int | None) -> bool:
    """Whether a block of this stream may refer to another frame than the nearest anchor (``reference_frames``: what
    its SPS says, None when it does not: then it may)."""
    return codec in MULTI_REFERENCE_CODECS and (reference_frames is None or reference_frames > 1)


def luma_plane(frame: av.VideoFrame) -> np.ndarray | None:
    """A copy of the frame's luma plane (H x W, uint8, or uint16 above 8 bits); None for RGB and paletted ones."""
    fmt = frame.format
    if not fmt.name.startswith(("yuv", "yuvj", "gray", "nv")) or not fmt.components:
        return None
    plane = frame.planes[0]
    bits = fmt.components[0].bits
    dtype = np.dtype(np.uint8) if bits <= 8 else np.dtype("<u2")
    rows = np.frombuffer(plane, dtype=dtype).reshape(plane.height, plane.line_size // dtype.itemsize)
    return rows[:, :frame.width].copy()


# Codecs whose exported MVs of field-coded blocks are in field lines (FFmpeg doubles only 16x8 partitions'): an
# interlaced stream of theirs gets its MVs from a re-encode under mv_source "auto" (MPEG-2's come in frame lines).
FIELD_MV_CODECS = frozenset({"h264"})


def _rgb(frame: av.VideoFrame, sar: float, rgb_size: Callable[[int, int], tuple[int, int]] | None,
         reformatter: VideoReformatter) -> np.ndarray:
    """The frame as RGB at ``rgb_size`` of its displayed shape (``sar``: anamorphic pixels), bicubic. An interlaced
    frame holds two fields shown 1/50 or 1/60 s apart, combed wherever something moves: CLIP gets its top field
    alone, scaled to the frame's height (what a deinterlacer's spatial mode does, at CLIP's 224 lines no loss)."""
    shown_w = max(1, round(frame.width * sar))  # anamorphic: CLIP sees the displayed shape
    w, h = rgb_size(shown_w, frame.height) if rgb_size else (shown_w, frame.height)
    if not frame.interlaced_frame:
        return reformatter.reformat(frame, width=w, height=h, format="rgb24", interpolation="BICUBIC").to_ndarray()
    full = reformatter.reformat(frame, width=w, height=frame.height, format="rgb24").to_ndarray()
    field = av.VideoFrame.from_ndarray(np.ascontiguousarray(full[::2]), format="rgb24")
    return VideoReformatter().reformat(field, width=w, height=h, interpolation="BICUBIC").to_ndarray()


def frame_orientation(frame: av.VideoFrame) -> Orientation:
    """How ``frame`` is turned for display: its display matrix (FFmpeg puts the stream's on every frame)."""
    sd = SideDataContainer(frame).get("DISPLAYMATRIX")
    return from_display_matrix(None if sd is None else np.frombuffer(bytes(sd), dtype=np.int32))


def read_orientation(path: str) -> Orientation:
    """The display orientation of ``path``'s video: one frame decoded (for backends that do not report it)."""
    container, stream = open_video(path)
    try:
        stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            return frame_orientation(frame)
    except av.error.FFmpegError:
        pass  # the decoder's own pass reports the error
    finally:
        container.close()
    return UPRIGHT


def iter_frames(
    path: str,
    rgb_wanted: Callable[[int, float | None], bool] | None = None,
    rgb_size: Callable[[int, int], tuple[int, int]] | None = None,
    *,
    export_mvs: bool = True,
    max_frames: int | None = None,
    timeout_s: float | None = None,
    mv_source: str = "native",
    start_pts: int | None = None,
    origin_s: float | None = None,
) -> tuple[VideoInfo, Iterator[DecodedFrame]]:
    """Open ``path``; return its info and an iterator over decoded frames in display order.

    ``rgb_wanted(i, time_s)`` says whether frame ``i`` (shown at ``time_s``, None without a timestamp) needs RGB
    (converted at ``rgb_size(w, h)`` with bicubic scaling in swscale), so the other frames skip the colour
    conversion entirely.
    ``mv_source``: "native" (the stream's own MVs), "reencode" (MVs of the frames re-encoded as MPEG-4 Part 2,
    ``moclip.video.reencode``) or "auto" (native where the codec exports them, except interlaced H.264, whose field
    macroblocks' MVs FFmpeg exports in field lines; else re-encoded); the one used is
    ``info.mv_source``. The info describes the file (its codec and size), whichever the MVs came from, and how its
    pictures are turned for display (``info.orientation``, from the first frame's display matrix): the RGB frames
    come turned upright; the MVs stay as coded, for ``MotionAccumulator`` to turn.

    ``start_pts``: start at that keyframe (a presentation timestamp in the stream's time base) instead of the
    beginning; frame indices then count from the first frame decoded there (``moclip.video.ranges``: a long video
    decoded in ranges). ``origin_s``: the time of the video's first frame, which the re-encoder's GOPs count from
    (default: the first frame decoded).
    """
    container, stream = open_video(path)
    info = _info(container, stream)
    if start_pts is not None:
        try:
            container.seek(start_pts, stream=stream, backward=True, any_frame=False)
        except av.error.FFmpegError as e:
            container.close()
            at = float(start_pts * stream.time_base)
            raise DecodeError(f"cannot seek to {at:.3f} s: {_ffmpeg_message(e)}") from e
    cc = stream.codec_context
    cc.thread_type = "SLICE"
    cc.thread_count = 1
    if export_mvs and (mv_source == "native" or (mv_source == "auto" and info.has_mvs)):
        cc.options = {"flags2": "+export_mvs"}

    file_size = os.path.getsize(path)

    def frames() -> Iterator[av.VideoFrame]:
        """Decoded frames; a truncated file ends at its last complete packet (then the decoder is flushed), so a
        cut download keeps the frames before the cut instead of failing on the packet that runs past the end."""
        for packet in container.demux(stream):
            cut = packet.is_corrupt and packet.pos is not None and packet.pos + packet.size >= file_size  # short read
            if cut or (packet.size and packet.pos is not None and packet.pos + packet.size > file_size):
                yield from stream.decode(None)
                return
            yield from stream.decode(packet)

    decoded = frames()
    try:  # the first frame now: its display matrix says how every picture is turned
        first = next(decoded, None)
    except av.error.FFmpegError as e:
        container.close()
        raise DecodeError(f"decoder error at frame 0: {_ffmpeg_message(e)}") from e
    except BaseException:
        container.close()
        raise
    orientation = frame_orientation(first) if first is not None else UPRIGHT
    interlaced = bool(first is not None and first.interlaced_frame)
    if mv_source == "auto":  # H.264's field macroblocks export their MVs in field lines: re-encoded instead
        native = info.has_mvs and not (interlaced and info.codec in FIELD_MV_CODECS)
        mv_source = "native" if native else "reencode"
    reencode = export_mvs and mv_source == "reencode"
    refs = max_reference_frames(cc.extradata) if info.codec in MULTI_REFERENCE_CODECS else None
    with_luma = export_mvs and not reencode and may_refer_further_back(info.codec, refs)
    info = dataclasses.replace(info, orientation=orientation, interlaced=interlaced, reference_frames=refs,
                               mv_source="reencoded" if reencode else "native")

    def gen() -> Iterator[DecodedFrame]:
        start = time.monotonic()
        index = 0
        reformatter = VideoReformatter()  # one swscale context for the whole video (4x faster than per frame)
        reencoder = Reencoder(size_for(info.width, info.height), origin=origin_s, fps=info.fps) if reencode else None
        # frames whose re-encoded MVs are not out yet: (index, rgb, time)
        waiting: deque[tuple[int, np.ndarray | None, float | None]] = deque()

        def paired(ready: list[tuple[str, np.ndarray]]) -> Iterator[DecodedFrame]:
            for pict, mvs in ready:
                i, rgb, t = waiting.popleft()
                yield DecodedFrame(index=i, pict_type=pict, mvs=mvs, rgb=rgb, time_s=t)

        try:
            for frame in itertools.chain([first] if first is not None else [], decoded):
                if max_frames is not None and index >= max_frames:
                    raise DecodeError(f"more than {max_frames} frames (max_frames cap)")
                if timeout_s is not None and time.monotonic() - start > timeout_s:
                    raise DecodeError(f"decoding took longer than {timeout_s:g} s (decode time limit)")
                rgb = None
                t = frame.time
                if rgb_wanted is not None and rgb_wanted(index, t):
                    rgb = orientation.image(_rgb(frame, info.sar, rgb_size, reformatter))
                if reencoder is not None:
                    waiting.append((index, rgb, t))
                    yield from paired(reencoder.push(frame))
                else:
                    mvs = mv_array(frame) if export_mvs else EMPTY_MVS
                    yield DecodedFrame(index=index, pict_type=pict_letter(frame.pict_type), mvs=mvs, rgb=rgb,
                                       time_s=t, luma=luma_plane(frame) if with_luma else None)
                index += 1
            if reencoder is not None:
                yield from paired(reencoder.finish())
                while waiting:  # frames the encoder never gave back: no motion from them
                    i, rgb, t = waiting.popleft()
                    yield DecodedFrame(index=i, pict_type="?", mvs=EMPTY_MVS, rgb=rgb, time_s=t)
        except av.error.FFmpegError as e:
            raise DecodeError(f"decoder error at frame {index}: {_ffmpeg_message(e)}") from e
        finally:
            container.close()

    return info, gen()
