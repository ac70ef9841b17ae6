"""Where flows run: the Prefect API they report to and the Dask cluster their tasks run on."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import importlib
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from multiprocessing import forkserver, resource_tracker
from typing import Any

import dask
from distributed import LocalCluster
from prefect_dask import DaskTaskRunner

from flows import preload as clip_preload
from moclip.config import ClipConfig, RunConfig
from moclip.runplan import RunPlan, plan_run


def local_plan(run: RunConfig) -> RunPlan:
    """The run's plan on this machine (``moclip.runplan``): worker and decoder processes, shard size, resources."""
    from moclip.precision import device_type  # torch: imported when needed, not before the server launches

    return plan_run(run, device_type(run.device))


def dask_runner(run: RunConfig) -> DaskTaskRunner:
    """An existing scheduler when an address is given; else a LocalCluster of single-threaded processes, one per
    core, or with CUDA one per GPU (``GpuCluster``). This process is the cluster's client: a Ctrl-C here does not
    log distributed's stray NameError (``InterruptedSync``)."""
    quiet_interrupted_sync()
    if run.dask_address:
        return DaskTaskRunner(address=run.dask_address)
    plan = local_plan(run)
    kwargs: dict[str, Any] = {"n_workers": plan.workers, "threads_per_worker": 1, "processes": True,
                              "dashboard_address": None}
    if plan.device_type == "cuda":
        kwargs["gpus"] = plan.machine.gpus
    return DaskTaskRunner(cluster_class=local_cluster, cluster_kwargs=kwargs)


def needs(resources: dict[str, float]) -> contextlib.AbstractContextManager:
    """Tasks submitted in this block run only on Dask workers that declare ``resources`` (e.g. GPU=1)."""
    return dask.annotate(resources=dict(resources)) if resources else contextlib.nullcontext()


def check_resources(address: str, resources: dict[str, float], timeout_s: float = 30.0) -> None:
    """Refuse a run whose shards would wait forever: no worker of the cluster at ``address`` declares
    ``resources``. (A worker that joins later still gets them; one must be there when the run starts.)"""
    if not resources:
        return
    from distributed import Client

    with Client(address, timeout=timeout_s) as client:
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
    if not any(all(w.get("resources", {}).get(k, 0) >= v for k, v in resources.items()) for w in workers):
        wanted = " ".join(f"{k}={v:g}" for k, v in resources.items())
        raise ValueError(
            f"no worker of the Dask cluster at {address} declares the resources {wanted} that index shards need "
            f"({len(workers)} workers); start GPU workers with `dask worker {address} --nthreads 1 --resources "
            f"\"{wanted}\"`, or run with --device cpu")


class GpuCluster(LocalCluster):
    """A ``LocalCluster`` of one worker process per GPU, as dask-cuda's ``LocalCUDACluster`` makes it: each worker
    sees only its own GPU (``CUDA_VISIBLE_DEVICES``, set before it starts CUDA) and declares the Dask resource
    ``GPU=1``; more workers than GPUs share them in turn."""

    def __init__(self, gpus: list[str], n_workers: int, **kwargs: Any) -> None:
        if not gpus:
            raise ValueError("a GPU cluster needs at least one GPU; none is visible (CUDA_VISIBLE_DEVICES, drivers)")
        from distributed.worker_memory import parse_memory_limit

        self.gpus = list(gpus)
        # as LocalCluster does for n_workers (started here at 0, then scaled): the machine's memory shared out
        kwargs.setdefault("memory_limit", parse_memory_limit("auto", 1, n_workers, logger=logging.getLogger(__name__)))
        super().__init__(n_workers=0, resources={"GPU": 1}, **kwargs)
        self.scale(n_workers)
        self.wait_for_workers(n_workers)

    def new_worker_spec(self) -> dict:
        spec = super().new_worker_spec()
        name, worker = next(iter(spec.items()))
        gpu = self.gpus[len(self.worker_spec) % len(self.gpus)]
        options = {**worker["options"], "env": {**worker["options"].get("env", {}), "CUDA_VISIBLE_DEVICES": gpu}}
        return {name: {**worker, "options": options}}


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Set, to this process's id, only while it starts its workers' fork server: that server then dies with it (see the
# end of this module, which the fork server imports).
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


def _die_with_me() -> Any:
    """A ``preexec_fn`` that has a child process die with this one, or None where it cannot (off Linux, or off the
    main thread, whose end would kill the child early)."""
    if _prctl() is None or threading.current_thread() is not threading.main_thread():
        return None
    return functools.partial(die_with_parent, os.getpid())


# Imported once by the process Dask worker processes are forked from (see start_worker_forkserver).
WORKER_PRELOAD = ["distributed", "torch", "open_clip", "prefect", "moclip.indexing.shard", "flows.runtime",
                  "flows.index_flow", "flows.preload"]
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


def preload_clip_in_workers(clip: ClipConfig, device: str) -> None:
    """Have local workers start with this CLIP encoder already built (``flows.preload``). It takes effect
    only when the fork server has not started yet (``prefect_api(workers_clip=...)`` asks before it starts it)."""
    from moclip.precision import resolve_device  # torch only: open_clip imports elsewhere

    if _forkserver_env is None:
        try:
            clip_preload.request(clip, resolve_device(device).type)
        except ValueError:  # e.g. cuda asked for without CUDA: the flow reports it
            pass


# Set by a process for itself, so not a reason to spawn workers instead of forking them: by torch and open_clip when
# they are imported (the fork server imports them too), and by moclip's Hugging Face hub probe
# (moclip.clip.pretrained.ensure_hub_mode), which the fork server's preload and each worker run themselves.
IMPORT_SET_ENV = {"TORCHINDUCTOR_CACHE_DIR", "TOKENIZERS_PARALLELISM", "HF_HUB_OFFLINE"}


def _env_for_workers(env: Any) -> dict[str, str] | None:
    """The environment as workers would see it, less what Dask's nanny sets itself before starting them."""
    if env is None:
        return None
    own = set(dask.config.get("distributed.nanny.pre-spawn-environ", {})) | set(
        dask.config.get("distributed.nanny.environ", {}))
    own |= {"PYTHONHASHSEED", clip_preload.ENV}  # also set by the nanny, with "__DASK_*" markers; a cache hint
    own |= IMPORT_SET_ENV
    return {k: v for k, v in env.items() if k not in own and not k.startswith("__DASK")}


def local_cluster(gpus: list[str] | None = None, **kwargs: Any) -> LocalCluster:
    """A ``LocalCluster`` where a task that kills its worker fails at once (allowed-failures 0) instead of being
    tried on 3 more workers, and a worker holds one task at a time (worker-saturation 1.0), so a crashing decoder
    takes down its own shard only; the flow then retries that shard in isolation. Workers are forked from the
    warm fork server when its environment is still this process's, spawned otherwise. Without a dashboard, the
    workers' statistical profiler is off and the system monitor samples every 2 s (in paired demo runs, 2 workers
    did 1-3 % less work). With ``gpus``: a ``GpuCluster``, one worker per GPU."""
    start_worker_forkserver()
    method = "forkserver" if _env_for_workers(_forkserver_env) == _env_for_workers(os.environ) else "spawn"
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.scheduler.worker-saturation": 1.0,
                          "distributed.worker.multiprocessing-method": method,
                          # no dashboard here, so nobody reads the worker's stack sampler (10 ms) or system monitor
                          "distributed.worker.profile.enabled": False,
                          "distributed.admin.system-monitor.interval": "2s"}):
        return GpuCluster(gpus, **kwargs) if gpus is not None else LocalCluster(**kwargs)


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
            preexec_fn=_die_with_me())
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


class _ShutdownHeartbeat(logging.Filter):
    """Local workers only: a heartbeat that finds the scheduler gone. The CLI stopping its own cluster (Ctrl-C,
    SIGTERM) closes the scheduler while a worker may be mid-heartbeat; that worker then logged an ERROR with a
    traceback on the CLI's stderr, under "interrupted; rerun the same command to resume". Nothing is lost: the
    nanny stops the worker right after."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to communicate with scheduler during heartbeat")


class InterruptedSync(logging.Filter):
    """The client side: Ctrl-C in the instant after ``distributed.utils.sync`` queued its coroutine and before that
    coroutine made its future. ``sync`` then queues a ``cancel`` that reads the unset future, and tornado logs its
    NameError with a traceback (distributed 2026.8.0, seen once in a full CI run). There was nothing to cancel yet:
    the CLI's own shutdown stops the cluster right after. Drops exactly that record."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, NameError) or "'future'" not in str(exc) or exc.__traceback__ is None:
            return True
        last = traceback.extract_tb(exc.__traceback__)[-1]
        return not (last.name == "cancel" and last.filename.endswith(os.path.join("distributed", "utils.py")))


def quiet_interrupted_sync() -> None:
    """Install ``InterruptedSync`` on tornado's callback logger (idempotent)."""
    logger = logging.getLogger("tornado.application")
    if not any(isinstance(f, InterruptedSync) for f in logger.filters):
        logger.addFilter(InterruptedSync())


if os.environ.get(DIE_WITH_ENV) == str(os.getppid()):  # in the fork server (start_worker_forkserver)
    die_with_parent(os.getppid())
    logging.getLogger("distributed.worker").addFilter(_ShutdownHeartbeat())  # inherited by every worker it forks
