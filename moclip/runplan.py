"""How a run uses the machines, decided in one place: worker processes, decoder processes, shard size, CLIP batch
and the Dask resources its tasks need, from the run's settings (``RunConfig``: what the user set wins), the device
and what the machine has (``Machine``: usable cores, which honours CPU affinity, and visible GPUs).

    CPU     one worker per usable core, each decoding its own videos; shards of 16 videos, CLIP batches of 64
    CUDA    one worker per visible GPU, each fed by decoder processes: the machine's cores less one per worker
            (its feeding process), shared out; shards of 128, CLIP batches of 512 (fewer videos a shard when there
            are too few for every worker); on a Dask cluster, tasks need GPU=1

On an existing Dask cluster the flow does not know the workers' machines: it plans no workers, and each worker
plans its own decoder processes with its own ``Machine`` (``plan_run`` again, on the worker). The index summary
prints the plan (``RunPlan.describe``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from moclip.config import RunConfig

CPU_SHARD, CUDA_SHARD = 16, 128
CPU_CLIP_BATCH, CUDA_CLIP_BATCH = 64, 512


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one, else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES``'s entries when it is set, else all CUDA devices."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


@dataclass(frozen=True)
class Machine:
    cores: int
    gpus: list[str] = field(default_factory=list)

    @classmethod
    def here(cls, device_type: str = "cpu") -> Machine:
        """This machine (its GPUs are looked for only for a CUDA run: that imports torch)."""
        return cls(usable_cores(), visible_gpus() if device_type == "cuda" else [])


@dataclass(frozen=True)
class RunPlan:
    device_type: str  # "cpu" or "cuda"
    workers: int | None  # local Dask worker processes; None: an existing cluster's own
    decoders: int  # decoder processes per worker (0: a worker decodes its own videos); -1: each worker decides
    shard_size: int  # at most, videos per shard (``shard_size_for``)
    clip_batch_size: int
    resources: dict[str, float]
    machine: Machine

    def run(self, run: RunConfig) -> RunConfig:
        """``run`` with the plan's choices filled in (what the workers receive)."""
        return run.model_copy(update={"shard_size": self.shard_size, "clip_batch_size": self.clip_batch_size,
                                      "resources": self.resources,
                                      "decode_workers": None if self.decoders < 0 else self.decoders})

    def shard_size_for(self, n_videos: int) -> int:
        """Videos per shard for ``n_videos``: on local workers fed by decoder processes (GPU workers: few, each
        fast), small enough that each gets a shard (128 would leave 3 of 4 GPUs idle on 100 videos)."""
        if self.workers and self.workers > 1 and self.decoders > 0:
            return max(1, min(self.shard_size, -(-n_videos // self.workers)))
        return self.shard_size

    def describe(self) -> str:
        """One line: what was decided, and from what."""
        where = ("an existing Dask cluster's workers" if self.workers is None else
                 f"{self.workers} local worker{'s' * (self.workers != 1)} "
                 f"({'one per GPU' if self.device_type == 'cuda' else 'one per core'} by default: "
                 f"{self.machine.cores} usable cores" + (f", {len(self.machine.gpus)} GPUs)" if self.device_type ==
                                                          "cuda" else ")"))
        decode = ("each decoding its own videos" if self.decoders == 0 else
                  "decoder processes decided on each worker's machine" if self.decoders < 0 else
                  f"each fed by {self.decoders} decoder process{'es' * (self.decoders != 1)}")
        need = f"; tasks need {self.resources}" if self.resources else ""
        return (f"{self.device_type.upper()}: {where}, {decode}; up to {self.shard_size} videos a shard, CLIP "
                f"batches of {self.clip_batch_size}{need}")


def plan_run(run: RunConfig, device_type: str, machine: Machine | None = None, on_worker: bool = False) -> RunPlan:
    """The plan for ``run`` on ``device_type`` ("cpu" or "cuda") workers (see the module docstring); ``on_worker``:
    planned by a worker of an existing cluster, for its own machine."""
    cuda = device_type == "cuda"
    machine = machine or Machine.here(device_type)
    workers = None if run.dask_address else run.workers or ((len(machine.gpus) or 1) if cuda else machine.cores)
    if run.decode_workers is not None:
        decoders = run.decode_workers
    elif not cuda:
        decoders = 0
    elif workers is not None:  # a local cluster: its workers share this machine
        decoders = _shared(machine.cores, workers)
    else:  # an existing cluster: each worker shares its machine with one worker per GPU it sees
        decoders = _shared(machine.cores, len(machine.gpus) or 1) if on_worker else -1
    resources = dict(run.resources) or ({"GPU": 1.0} if cuda and run.dask_address else {})
    return RunPlan(device_type, workers, decoders, run.shard_size or (CUDA_SHARD if cuda else CPU_SHARD),
                   run.clip_batch_size or (CUDA_CLIP_BATCH if cuda else CPU_CLIP_BATCH), resources, machine)


def _shared(cores: int, workers: int) -> int:
    """Decoder processes per worker: the cores less one per worker (its feeding process), shared out, at least 1."""
    return max(1, cores // workers - 1)
