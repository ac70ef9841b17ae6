"""Routing index shards to GPU workers, tested on CPU workers that declare resources: on a mixed cluster (one worker
started with ``--resources GPU=1``, one without) every shard runs on the GPU worker; a run asking for resources no
worker has is refused before any work; the local GPU cluster gives each worker its own GPU and GPU=1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from helpers.cli import run_moclip
from helpers.procs import free_port, stop, wait_for_port
from helpers.videos import make_video

from moclip.params import IndexParams

pytestmark = [pytest.mark.integration]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def mixed_cluster(prefect_api):
    """A scheduler, a worker that declares GPU=1 and one that declares nothing: (address, gpu pid, cpu pid)."""
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    quiet = {"env": env, "start_new_session": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], **quiet)]
    try:
        wait_for_port(port)
        common = [str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"]
        procs.append(subprocess.Popen([*common, "--name", "gpu", "--resources", "GPU=1"], **quiet))
        procs.append(subprocess.Popen([*common, "--name", "cpu"], **quiet))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
            pids = client.run(os.getpid)
            names = {w["name"]: addr for addr, w in client.scheduler_info(n_workers=-1)["workers"].items()}
        yield address, pids[names["gpu"]], pids[names["cpu"]]
    finally:
        for proc in reversed(procs):
            stop(proc)


def corpus(root: Path, n: int) -> Path:
    for i in range(n):
        make_video(root / "a" / f"v{i}.mp4", n_frames=12, width=160, height=120, seed=i)
    return root


@pytest.mark.slow
def test_shards_that_need_a_gpu_run_only_on_gpu_workers(mixed_cluster, tmp_path):
    from flows.index_flow import index_corpus

    address, gpu_pid, cpu_pid = mixed_cluster
    params = IndexParams(corpus={"root": str(corpus(tmp_path / "corpus", 6))}, out=str(tmp_path / "ds"),
                         features={"clip": {"weights": "none", "frames": 2, "precision": "fp32"}},
                         run={"shard_size": 1, "dask_address": address, "device": "cpu", "resources": {"GPU": 1},
                              "decode_workers": 2})  # the GPU worker's path: a decoder pool feeding its CLIP
    summary = index_corpus(params)
    assert summary.indexed_ok == 6 and summary.failed == 0
    ran_on = {int(w.rsplit(":", 1)[1]) for w in summary.workers}
    assert ran_on == {gpu_pid}  # six one-video shards, none on the idle worker without the resource
    assert "wall" in summary.worker_seconds  # the pooled path's own timing made it into the summary
    from moclip.report.index_summary import to_markdown

    assert "Limited by: " in to_markdown(summary)


def test_resources_no_worker_has_are_refused_before_any_work(mixed_cluster, tmp_path):
    from flows.index_flow import index_corpus

    address, _, _ = mixed_cluster
    params = IndexParams(corpus={"root": str(corpus(tmp_path / "corpus", 1))}, out=str(tmp_path / "ds"),
                         features={"clip": {"weights": "none", "frames": 2, "precision": "fp32"}},
                         run={"dask_address": address, "device": "cpu", "resources": {"GPU": 2}})
    with pytest.raises(ValueError, match=r"no worker of the Dask cluster at .* declares the resources GPU=2"):
        index_corpus(params)
    assert not list((tmp_path / "ds").glob("*.parquet"))
    # the same from the command line (--resources KEY=VALUE)
    r = run_moclip("index", str(tmp_path / "corpus"), "--out", str(tmp_path / "ds"), "--clip-weights", "none",
                   "--dask-address", address, "--device", "cpu", "--resources", "GPU=2", home=tmp_path / "home")
    assert r.returncode != 0 and "declares the resources GPU=2" in r.stderr, r.stderr[-2000:]
    assert not list((tmp_path / "ds").glob("*.parquet"))


def test_the_local_gpu_cluster_gives_each_worker_its_own_gpu():
    from distributed import Client

    from flows.cluster import local_cluster

    with local_cluster(gpus=["3", "5"], n_workers=3, threads_per_worker=1, processes=True,
                       dashboard_address=None) as cluster, Client(cluster) as client:
        seen = sorted(client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES")).values())
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
    assert seen == ["3", "3", "5"]  # three workers share two GPUs in turn
    assert [w["resources"] for w in workers] == [{"GPU": 1}] * 3
    total = psutil.virtual_memory().total  # the machine's memory shared among them, as LocalCluster does
    assert all(abs(w["memory_limit"] - total / 3) < 0.05 * total for w in workers)
