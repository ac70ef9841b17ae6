"""The Prefect API flows report to: ``PREFECT_API_URL``'s server, or a local one that lives as long as the
`moclip` command (``prefect_api``), and flows run without heartbeats where nothing outlives this process."""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

from flows.processes import die_with_me, preload_clip_in_workers, start_worker_forkserver
from moclip.config import ClipConfig


@contextlib.contextmanager
def without_heartbeats() -> Iterator[None]:
    """Run the flows started in this block without Prefect's flow-run heartbeats.

    For subflows (they run in their parent's process, whose own heartbeat already tells Prefect it is alive) and
    for runs against a server that lives only as long as this process. Each heartbeat thread costs up to 1 s when
    its flow ends: it sleeps in 1 s steps and the engine joins it (on the demo corpus, 1.5 of 27 s).
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


STARTUP_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"  # Prefect's own setting, with a longer default
STARTUP_DEFAULT_S = 180  # measured: a cold start (new database) takes 27-29 s on an idle 2-core machine, 10 s warm


def server_startup_budget() -> int:
    """Seconds the local Prefect server may take to answer, per try: Prefect's own setting
    ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` when set, else 180 (not Prefect's default).

    Prefect's own default (20 s, counted in 0.1 s sleeps only) is shorter than a cold start on a small machine whose
    cores are busy importing torch: the first `make demo` on a fresh machine used to fail there.
    """
    raw = os.environ.get(STARTUP_ENV, "")
    try:
        value = int(float(raw)) if raw else STARTUP_DEFAULT_S
    except ValueError as e:
        raise ValueError(f"{STARTUP_ENV}={raw!r}: must be a number of seconds") from e
    if value < 1:
        raise ValueError(f"{STARTUP_ENV}={raw!r}: must be at least 1 second")
    return value


def _prefect_home() -> str:
    from prefect.settings import PREFECT_HOME

    return str(PREFECT_HOME.value())


class LocalServer:
    """Prefect's API server in a subprocess on 127.0.0.1, on a port chosen before it is launched.

    The command is the one Prefect's own ``SubprocessASGIServer`` runs (uvicorn with Prefect's app factory, no UI).
    It is launched here without importing Prefect's server package (~5 s on 2 cores), so the server boots from the
    first second while this process and the workers' fork server import torch and open_clip; and its URL is known
    before it answers, so the fork server can start at once with the URL its workers report to.
    """

    def __init__(self) -> None:
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def launch(self) -> None:
        import prefect
        from prefect.settings import get_current_settings

        env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True),
               "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        env.pop("PREFECT_API_URL", None)
        # In a session of its own, a terminal's Ctrl-C (SIGINT to the whole foreground process group) does not stop
        # the server under the flow engine, which would then retry its last state reports against a dead API for
        # minutes and end with a ConnectError; this process stops it once the flow has unwound. And it dies with
        # this process however that ends (kill -9 and SIGTERM run no atexit hook): die_with_parent.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "error", "--lifespan", "on"], env=env, start_new_session=True,
            preexec_fn=die_with_me())
        atexit.register(self.stop)  # as Prefect's own does: no server outlives this process

    def wait_ready(self, timeout_s: float) -> None:
        """Return once ``/health`` answers 200; RuntimeError if the process ends or ``timeout_s`` passes first."""
        import httpx

        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=5) as client:
            while True:
                code = self.proc.poll() if self.proc else None
                if code is not None:
                    raise RuntimeError(f"the server process exited with code {code}")
                try:
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("timed out while waiting for it to answer")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        terminate(self.proc)
        self.proc = None


def terminate(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """End ``proc``: SIGTERM, then SIGKILL if it is still running after ``grace_s``; reaped either way."""
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_server() -> LocalServer:
    """Launch a local server and export its URL (``PREFECT_API_URL``) before it answers: a fork server started now
    hands it to its workers."""
    server = LocalServer()
    server.launch()
    os.environ["PREFECT_API_URL"] = server.api_url
    return server


def _second_try(budget: int) -> LocalServer:
    """The one retry of a local server that did not answer in time, on a new port (the first start of a new Prefect
    home creates and migrates its database; a second start reuses it). Its URL is in ``PREFECT_API_URL``."""
    server = _launch_server()
    try:
        server.wait_ready(budget)
        return server
    except BaseException as e:
        server.stop()
        if not isinstance(e, RuntimeError):
            raise
        raise RuntimeError(
            f"could not start a local Prefect server (two tries of up to {budget} s each): {e}. Its first "
            f"start creates its database under PREFECT_HOME ({_prefect_home()}), which is slow on a busy or small "
            f"machine: rerun the command, set {STARTUP_ENV}=600 for a longer wait, or run a server yourself "
            "(`prefect server start --host 127.0.0.1`, then export PREFECT_API_URL=http://127.0.0.1:4200/api)"
        ) from e


@contextlib.contextmanager
def prefect_api(preload: tuple[str, ...] = (), workers_clip: tuple[ClipConfig, str] | None = None) -> Iterator[str]:
    """Make sure flows report to a real Prefect API server that Dask worker processes can reach too.

    With ``PREFECT_API_URL`` set, that server is used. Otherwise a local server is started on 127.0.0.1 for the
    duration of the block and its URL exported, so worker processes started inside the block report to it
    instead of each starting a temporary server of its own (5-16 s each). Everything slow starts at once, on all
    cores: the server is launched first; with ``workers_clip`` (the CLIP config and device of the flow's local
    workers) the fork server they are forked from starts next and builds that encoder; then, while both boot,
    this process imports the ``preload`` modules. Flows against that server send no heartbeats: nothing outlives
    this process to watch for them (``without_heartbeats``).
    """
    url = os.environ.get("PREFECT_API_URL")
    if url:
        _warm_up(preload, workers_clip, start_forkserver=False)
        yield url
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry calls from our server
    budget = server_startup_budget()
    server = _launch_server()  # first: it boots while the rest below imports
    ready = False
    try:
        _warm_up(preload, workers_clip, start_forkserver=True)
        try:
            server.wait_ready(budget)
        except RuntimeError:  # workers then start the slow way, their fork server knew the old URL (local_cluster)
            server.stop()
            server = _second_try(budget)
        ready = True
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}), without_heartbeats():
            yield server.api_url
    finally:
        if ready:
            _drain_prefect_services()
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def _warm_up(preload: tuple[str, ...], workers_clip: tuple[ClipConfig, str] | None, start_forkserver: bool) -> None:
    """The local workers' CLIP asked for (and their fork server started, to build it), then ``preload`` imported."""
    if workers_clip is not None:
        preload_clip_in_workers(*workers_clip)
        if start_forkserver:
            start_worker_forkserver()
    for module in preload:
        importlib.import_module(module)


def _drain_prefect_services(timeout_s: float = 10.0) -> None:
    """Flush queued events and logs while the server still listens (else the exit hook retries a dead URL)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=timeout_s, at_exit=False)
        except Exception:  # noqa: BLE001 - best effort: losing a log line must not fail the job
            pass

