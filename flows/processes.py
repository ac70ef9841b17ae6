"""The fork server local Dask workers start from (torch, open_clip, Prefect and moclip imported once, the CLIP
encoder built once: ``flows.preload``), and processes that die with the `moclip` command that started them, however
it ends (``die_with_parent``)."""

from __future__ import annotations

import ctypes
import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading
from multiprocessing import forkserver, resource_tracker
from typing import Any

from flows import preload as clip_preload
from moclip.config import ClipConfig

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Set, to this process's id, only while it starts its workers' fork server: that server then dies with it (see the
# end of this module, which the fork server imports: WORKER_PRELOAD).
DIE_WITH_ENV = "MOCLIP_DIE_WITH_PID"


@functools.cache
def _prctl() -> Any:
    """libc's ``prctl``, or None off Linux. Looked up once in the parent: a child between fork and exec only calls it
    (``dlopen`` takes locks another thread of the parent may have held when it forked)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """Have the kernel send ``sig`` to this process when its parent, ``parent``, ends, however it ends (kill -9
    included, which runs no ``atexit`` or ``finally``): Linux ``PR_SET_PDEATHSIG``; off Linux, nothing.

    The parent is the *thread* that started this process: start it from the main thread, which lives as long as
    the process. If the parent has already gone, ``sig`` comes now.
    """
    prctl = _prctl()
    if prctl is None or prctl(PR_SET_PDEATHSIG, int(sig)) != 0:
        return
    if os.getppid() != parent:  # it died before the call, and nobody would send the signal
        os.kill(os.getpid(), sig)


def die_with_me() -> Any:
    """A ``preexec_fn`` that has a child process die with this one, or None where it cannot (off Linux, or off the
    main thread, whose end would kill the child early)."""
    if _prctl() is None or threading.current_thread() is not threading.main_thread():
        return None
    return functools.partial(die_with_parent, os.getpid())


# Imported once by the process Dask worker processes are forked from (see start_worker_forkserver).
WORKER_PRELOAD = ["distributed", "torch", "open_clip", "prefect", "moclip.indexing.shard", "flows.processes",
                  "flows.cluster", "flows.index_flow", "flows.preload"]
_forkserver_env: dict[str, str] | None = None  # the environment the fork server started with


def start_worker_forkserver() -> None:
    """Start (once per process) the server that local Dask worker processes are forked from.

    It imports torch, open_clip, Prefect and moclip once, in the background; workers forked from it start in
    ~0.3 s instead of each spawning a fresh interpreter and importing all of that (~4 s on 2 cores), and exit as
    fast. The server is single-threaded, so forking it is safe. Call it once the environment the workers need is
    final (``prefect_api`` does, right after it launched the local server and exported its URL; an index flow does
    before it checks the CLIP weights); ``local_cluster`` falls back to spawning workers when the environment has
    changed since.
    """
    global _forkserver_env
    if _forkserver_env is not None or "forkserver" not in multiprocessing.get_all_start_methods():
        return
    multiprocessing.get_context("forkserver").set_forkserver_preload(WORKER_PRELOAD)
    # The fork server outlived a CLI killed by kill -9 or SIGTERM. Told this process's id, it dies with it
    # instead (PR_SET_PDEATHSIG, when it imports this module). Its workers need no more: each exits at once when
    # its Dask nanny, in this process, goes (distributed.process).
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:
        os.environ[DIE_WITH_ENV] = str(os.getpid())
    # Started with SIGINT blocked, it and the workers forked from it never take a terminal's Ctrl-C (sent to the
    # whole foreground process group) as their own, to stop midway and print tracebacks: their nanny stops them.
    # This thread takes a Ctrl-C of that moment once it unblocks it. (First the resource tracker, which the fork
    # server would start and then unblock SIGINT whatever the mask was: multiprocessing.resource_tracker.)
    resource_tracker.ensure_running()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if main_thread:
            os.environ.pop(DIE_WITH_ENV, None)
    _forkserver_env = dict(os.environ)


def environment() -> dict[str, str] | None:
    """The environment the fork server started with (None: not started in this process)."""
    return _forkserver_env


def preload_clip_in_workers(clip: ClipConfig, device: str) -> None:
    """Have local workers start with this CLIP encoder already built (``flows.preload``). It takes effect
    only when the fork server has not started yet (``prefect_api(workers_clip=...)`` asks before it starts it)."""
    from moclip.precision import resolve_device  # torch only: open_clip imports elsewhere

    if _forkserver_env is None:
        try:
            clip_preload.request(clip, resolve_device(device).type)
        except ValueError:  # e.g. cuda asked for without CUDA: the flow reports it
            pass


class _ShutdownHeartbeat(logging.Filter):
    """Local workers only: a heartbeat that finds the scheduler gone. The CLI stopping its own cluster (Ctrl-C,
    SIGTERM) closes the scheduler while a worker may be mid-heartbeat; that worker then logged an ERROR with a
    traceback on the CLI's stderr, under "interrupted; rerun the same command to resume". Nothing is lost: the
    nanny stops the worker right after."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to communicate with scheduler during heartbeat")


if os.environ.get(DIE_WITH_ENV) == str(os.getppid()):  # in the fork server (start_worker_forkserver)
    die_with_parent(os.getppid())
    logging.getLogger("distributed.worker").addFilter(_ShutdownHeartbeat())  # inherited by every worker it forks
