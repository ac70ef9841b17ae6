"""The Dask cluster flows run their tasks on: an existing one (``--dask-address``), or a local one of
single-threaded worker processes, one per core (CPU) or one per GPU (``gpu_cluster``), as ``moclip.runplan``
decides; tasks submitted with the resources they need (``needs``), refused early when no worker has them."""

from __future__ import annotations

import contextlib
import logging
import os
import traceback
from typing import Any

import dask
from distributed import LocalCluster
from prefect_dask import DaskTaskRunner

from flows import preload as clip_preload
from flows import processes
from moclip.config import RunConfig
from moclip.runplan import RunPlan, plan_run


def local_plan(run: RunConfig) -> RunPlan:
    """The run's plan on this machine (``moclip.runplan``): worker and decoder processes, shard size, resources."""
    from moclip.precision import device_type  # torch: imported when needed, not before the server launches

    return plan_run(run, device_type(run.device))


def dask_runner(run: RunConfig) -> DaskTaskRunner:
    """An existing scheduler when an address is given; else a LocalCluster of single-threaded processes, one per
    core, or with CUDA one per GPU (``gpu_cluster``). This process is the cluster's client: a Ctrl-C here does not
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
    ``GPU=1``; more workers than GPUs share them in turn.

    Kept beside ``LocalCUDACluster`` (``gpu_cluster`` prefers it) for what that cannot do here: dask-cuda is not a
    default dependency, because it pins dask and distributed to RAPIDS's release (dask-cuda 26.10 requires
    rapids-dask-dependency 26.10, i.e. dask 2026.7.1), and it refuses more workers than GPUs ("Can not scale
    beyond visible devices"), which ``--workers`` may ask for when decoding, not the GPU, limits a run."""

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
    did 1-3 % less work). With ``gpus``: one worker per GPU (``gpu_cluster``)."""
    processes.start_worker_forkserver()
    method = "forkserver" if _env_for_workers(processes.environment()) == _env_for_workers(os.environ) else "spawn"
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.scheduler.worker-saturation": 1.0,
                          "distributed.worker.multiprocessing-method": method,
                          # no dashboard here, so nobody reads the worker's stack sampler (10 ms) or system monitor
                          "distributed.worker.profile.enabled": False,
                          "distributed.admin.system-monitor.interval": "2s"}):
        return gpu_cluster(gpus, **kwargs) if gpus is not None else LocalCluster(**kwargs)


def gpu_cluster(gpus: list[str], n_workers: int, **kwargs: Any) -> LocalCluster:
    """One worker per GPU: dask-cuda's ``LocalCUDACluster`` when it is installed (``pip install moclip[cuda]``),
    else ``GpuCluster``. Each worker declares the Dask resource ``GPU=1`` (index shards ask for it)."""
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        LocalCUDACluster = None
    if LocalCUDACluster is None or n_workers > len(gpus):
        return GpuCluster(gpus, n_workers=n_workers, **kwargs)
    return LocalCUDACluster(CUDA_VISIBLE_DEVICES=list(gpus), n_workers=n_workers, resources={"GPU": 1}, **kwargs)


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

