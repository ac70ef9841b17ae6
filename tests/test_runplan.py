"""One run plan (moclip.runplan): workers, decoder processes, shard size, CLIP batch and resources decided in one
place, from the run's settings, the device and the machine (usable cores, visible GPUs)."""

from __future__ import annotations

import os

from moclip.config import RunConfig
from moclip.runplan import Machine, plan_run, usable_cores, visible_gpus

EIGHT_CORES_THREE_GPUS = Machine(8, ["0", "1", "2"])


def test_cpu_workers_one_per_core_each_decoding_its_own_videos():
    plan = plan_run(RunConfig(), "cpu", Machine(2))
    assert (plan.workers, plan.decoders, plan.shard_size, plan.clip_batch_size, plan.resources) == (2, 0, 16, 64, {})
    assert plan_run(RunConfig(workers=3, decode_workers=5), "cpu", Machine(2)).decoders == 5  # the user's wins
    assert plan_run(RunConfig(workers=2), "cpu", Machine(2)).shard_size_for(100) == 16
    assert "2 local workers (one per core by default: 2 usable cores)" in plan.describe()


def test_gpu_workers_share_the_machine_one_formula_locally_and_on_a_worker():
    local = plan_run(RunConfig(device="cuda"), "cuda", EIGHT_CORES_THREE_GPUS)
    assert (local.workers, local.decoders, local.shard_size, local.clip_batch_size) == (3, 1, 128, 512)
    assert local.resources == {}  # a local cluster's workers all have a GPU
    # an existing cluster: the flow leaves decoders to each worker, which plans for its own machine the same way
    remote = plan_run(RunConfig(device="cuda", dask_address="tcp://h:1"), "cuda", EIGHT_CORES_THREE_GPUS)
    assert (remote.workers, remote.decoders, remote.resources) == (None, -1, {"GPU": 1.0})
    assert remote.run(RunConfig(dask_address="tcp://h:1")).decode_workers is None
    on_worker = plan_run(remote.run(RunConfig(device="cuda", dask_address="tcp://h:1")), "cuda",
                         EIGHT_CORES_THREE_GPUS, on_worker=True)
    assert on_worker.decoders == local.decoders == 1  # 8 cores, 3 GPU workers: was 1 locally and 2 on a worker
    assert plan_run(RunConfig(device="cuda", decode_workers=0), "cuda", EIGHT_CORES_THREE_GPUS).decoders == 0
    assert plan_run(RunConfig(device="cuda", dask_address="tcp://h:1", resources={"GPU": 2}), "cuda",
                    EIGHT_CORES_THREE_GPUS).resources == {"GPU": 2}
    assert plan_run(RunConfig(shard_size=3, clip_batch_size=7), "cuda", EIGHT_CORES_THREE_GPUS).shard_size == 3


def test_few_videos_on_several_gpu_workers_give_each_a_shard():
    four = plan_run(RunConfig(device="cuda", workers=4, decode_workers=3), "cuda", EIGHT_CORES_THREE_GPUS)
    assert four.shard_size_for(100) == 25 and four.shard_size_for(10_000) == 128
    assert "each fed by 3 decoder processes" in four.describe()


def test_the_machine_is_read_honouring_affinity_and_visible_gpus(monkeypatch):
    if hasattr(os, "sched_getaffinity"):
        assert usable_cores() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,7")
    assert visible_gpus() == ["2", "7"]
    assert plan_run(RunConfig(device="cuda"), "cuda").workers == 2
    assert plan_run(RunConfig(device="cuda", workers=1), "cuda").workers == 1
    assert plan_run(RunConfig(device="cuda", dask_address="tcp://h:1"), "cuda").workers is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus() == []
