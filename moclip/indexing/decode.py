"""Decoding one video, the same way in a shard worker and in an isolated child process.

Run as ``python -m moclip.indexing.decode FD`` it is that child: it decodes the videos its parent sends over the
socket FD, one at a time, so a decoder that crashes or hangs takes down this process only (see ``isolated.py``).
It imports no torch: the parent, which holds the CLIP model, answers the decoder's resize questions.

Fault injection, for tests only: ``MOCLIP_FAULT_INJECT="crash:<substring>;hang:<substring>"`` makes the decode of
any video whose path contains ``<substring>`` kill its own process with a real SIGSEGV just before the decoder
starts (``crash``), or block forever inside the frame loop, after the first decoded frame, in a C call that holds
the GIL as a decoder stuck in native code does (``hang``: libc ``sleep`` through ``ctypes.PyDLL``, which never
releases the GIL; no Python thread of the process runs again), or take 0.1 s per frame (``slow``, for the soft
``--decode-timeout``).
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection

import av

from moclip.config import MVConfig, WindowConfig
from moclip.video import DecodeError, VideoFeatures, extract_video

FAULT_ENV = "MOCLIP_FAULT_INJECT"
PARENT_ENV = "MOCLIP_DECODER_PARENT"  # the pid of the process that started this decoder


def describe_error(exc: BaseException) -> str:
    """A one-line reason a user understands."""
    if isinstance(exc, DecodeError):
        return str(exc)
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a video file"
    if isinstance(exc, OSError):
        return f"cannot read file: {exc.strerror or exc}"
    if isinstance(exc, av.error.FFmpegError):
        return f"decoder error: {exc}"
    return f"unexpected {type(exc).__name__}: {exc}"


def failure_reason(exc: BaseException) -> str:
    """``describe_error``, plus the end of the traceback when the error is not an expected input problem."""
    reason = describe_error(exc)
    if not isinstance(exc, (DecodeError, OSError)):
        reason += " | " + traceback.format_exc(limit=3).replace("\n", " ")[-500:]
    return reason


def inject_fault(path: str) -> Callable[[int], None] | None:
    """The test-only fault hook (see the module docstring): crashes here, or returns the per-frame hook of a hang;
    does nothing unless ``MOCLIP_FAULT_INJECT`` is set."""
    for rule in filter(None, os.environ.get(FAULT_ENV, "").split(";")):
        kind, _, needle = rule.partition(":")
        if not needle or needle not in path:
            continue
        if kind == "crash":
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file
            os.kill(os.getpid(), signal.SIGSEGV)
        elif kind == "hang":
            return _hang_after_first_frame
        elif kind == "slow":
            return lambda index: time.sleep(0.1)
        else:
            raise ValueError(f"{FAULT_ENV}: unknown fault {kind!r} in {rule!r} "
                             "(use crash:SUBSTRING, hang:SUBSTRING or slow:SUBSTRING)")
    return None


def _hang_after_first_frame(index: int) -> None:
    if index < 1:
        return
    print("moclip fault injection: hanging in the frame loop, holding the GIL", file=sys.stderr, flush=True)
    libc = ctypes.PyDLL(None)  # PyDLL: the call keeps the GIL, like native decoder code stuck in a loop
    while True:
        libc.sleep(3600)


def decode_video(
    path: str, mv: MVConfig, n_rgb: int, rgb_size: Callable[[int, int], tuple[int, int]], timeout_s: float,
    window: WindowConfig | None = None, embed: Callable[[list], object] | None = None,
) -> VideoFeatures:
    """MVs and ``n_rgb`` RGB frames of one video; ``timeout_s`` is checked between frames. With a ``window`` set:
    the video's time windows (``moclip.video.windows``), frames embedded by ``embed`` while decoding if given."""
    on_frame = inject_fault(path)
    if window is not None and window.enabled:
        from moclip.video.windows import extract_windows

        return extract_windows(path, mv, window, rgb_size, timeout_s, on_frame=on_frame, embed=embed)
    return extract_video(path, mv, n_rgb, rgb_size, timeout_s, on_frame=on_frame)


def die_with_parent() -> None:
    """Have the kernel kill this process when its parent dies (Linux ``PR_SET_PDEATHSIG``), so a child stuck in a
    decoder is never left behind by a worker that was killed or exited without closing its pool."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    parent = os.environ.get(PARENT_ENV, "")
    if parent.isdigit() and os.getppid() != int(parent):  # it died before the call: nobody reads our answers
        os._exit(1)


def child_main(fd: int) -> None:
    """Decode jobs ``(path, mv, n_rgb, timeout_s, window[, embed_remote])`` from the parent until it closes the
    connection.

    Messages to the parent: ``("ready",)`` once, then per job any number of questions, each answered before the
    child goes on: ``("size", w, h)`` (answered with ``(w, h)``) and, with ``embed_remote`` (a long video's
    windows), ``("embed", frames)`` (answered with their embeddings, so the frame grid is never held whole here);
    finally ``("ok", VideoFeatures, seconds)`` or ``("failed", reason, seconds)``.
    """
    conn = Connection(fd)
    die_with_parent()

    def rgb_size(width: int, height: int) -> tuple[int, int]:
        conn.send(("size", width, height))
        return conn.recv()

    def embed(frames: list) -> object:
        conn.send(("embed", frames))
        return conn.recv()

    conn.send(("ready",))
    while True:
        try:
            path, mv, n_rgb, timeout_s, window, *rest = conn.recv()
        except EOFError:
            return
        t0 = time.perf_counter()
        try:
            feats = decode_video(path, mv, n_rgb, rgb_size, timeout_s, window, embed if rest and rest[0] else None)
            conn.send(("ok", feats, time.perf_counter() - t0))
        except Exception as exc:  # noqa: BLE001 - every error is the video's, reported as its reason
            conn.send(("failed", failure_reason(exc), time.perf_counter() - t0))


if __name__ == "__main__":
    child_main(int(sys.argv[1]))
