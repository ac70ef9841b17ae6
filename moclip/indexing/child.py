"""The child process that decodes one video at a time (``python -m moclip.indexing.decode``), started again on
demand after a crash: used by the isolated retry (``isolated.py``) and the decoder pool (``pool.py``)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from moclip.config import MVConfig, WindowConfig
from moclip.indexing.decode import PARENT_ENV
from moclip.video import DecodeError, VideoFeatures

log = logging.getLogger(__name__)


class DecoderCrash(DecodeError):
    """The child process decoding a video died or hung; the message is the video's ``failed`` reason."""


class DecoderProcess:
    """A child process that decodes one video at a time; started (again) on demand, e.g. after a crash."""

    start_timeout_s = 120.0

    def __init__(self, rgb_size: Callable[[int, int], tuple[int, int]],
                 embed: Callable[[list], object] | None = None) -> None:
        self.rgb_size = rgb_size  # answered here: the child has no CLIP model (and imports no torch)
        self.embed = embed  # with it, a long video's frames are embedded here as the child decodes them
        self.proc: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.deaths = 0  # children that crashed or were killed as hung

    def decode(self, path: str, mv: MVConfig, n_rgb: int, timeout_s: float, hard_timeout_s: float,
               window: WindowConfig | None = None) -> VideoFeatures:
        """Decode ``path`` in the child; raises ``DecoderCrash`` if it dies or has no answer in ``hard_timeout_s``."""
        self.send_job((path, mv, n_rgb, timeout_s, window, self.embed is not None))
        status, payload, *_ = self._receive(hard_timeout_s)
        if status == "failed":
            raise DecodeError(payload)
        return payload

    def send_job(self, job: tuple) -> None:
        """Hand the child one video: ``(path, mv, n_rgb, timeout_s, window, embed_remote)``. A child that is not
        running, or died while idle (nothing of a video's is lost then), is started first."""
        if self.proc is not None and self.proc.poll() is not None:
            self.close()
        if self.proc is None:
            self.launch()
            self.wait_ready()
        try:
            self.conn.send(job)
        except OSError:
            raise DecoderCrash(self._died()) from None

    def next_answer(self) -> tuple:
        """The child's next message, read now: ``("question",)`` once a question (frame size, embeddings) is
        answered, else ``("ok", VideoFeatures, seconds)`` or ``("failed", reason, seconds)``; ``DecoderCrash`` if
        the child died."""
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            raise DecoderCrash(self._died()) from None
        if msg[0] not in ("size", "embed"):
            return msg
        try:
            answer = self.rgb_size(*msg[1:]) if msg[0] == "size" else self.embed(msg[1])
        except BaseException:  # e.g. CUDA out of memory: the child waits for an answer that never comes
            self.kill()  # (else it would take the next video's job for that answer)
            raise
        try:
            self.conn.send(answer)
        except OSError:
            raise DecoderCrash(self._died()) from None
        return ("question",)

    def kill(self) -> None:
        """Stop the child now, whatever it is doing (a caller that gave up on its answer)."""
        if self.proc is not None:
            self.proc.kill()
            self.close()

    def kill_hung(self, limit_s: float) -> DecoderCrash:
        """Kill a child that has had no answer for ``limit_s``; the error that is its video's reason."""
        self.proc.kill()
        self.close()
        self.deaths += 1
        return DecoderCrash(f"decoder hung: no result within {limit_s:g} s (hard limit)")

    def close(self) -> int | None:
        """Stop the child (killed if still running); its exit status, negative for a signal."""
        if self.proc is None:
            return None
        self.conn.close()
        try:
            self.proc.wait(timeout=5)  # an idle child exits when its connection closes
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        code, self.proc, self.conn = self.proc.returncode, None, None
        return code

    def launch(self) -> None:
        """Start the child process (not waiting for it: ``wait_ready``), so many children can boot at once."""
        ours, theirs = socket.socketpair()
        with theirs:
            self.proc = subprocess.Popen([sys.executable, "-m", "moclip.indexing.decode", str(theirs.fileno())],
                                         pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                         env={**os.environ, PARENT_ENV: str(os.getpid())})
        self.conn = Connection(ours.detach())

    def wait_ready(self) -> None:
        try:
            self._receive(self.start_timeout_s)
        except DecoderCrash as exc:
            raise RuntimeError(f"could not start a decoder process ({sys.executable}): {exc}") from None

    def _receive(self, limit_s: float) -> tuple:
        """The child's next answer, serving its frame-size questions meanwhile."""
        deadline = time.monotonic() + limit_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.conn.poll(remaining):
                raise self.kill_hung(limit_s)
            msg = self.next_answer()
            if msg[0] != "question":
                return msg

    def _died(self) -> str:
        code = self.close()
        self.deaths += 1
        if code is not None and code < 0:
            return f"decoder crashed (killed by {signal.Signals(-code).name})"
        return f"decoder crashed (its process exited with status {code})"
