"""Scale-out: the index flow on an existing Dask cluster (separate processes on loopback) and output to an
object store URL (a moto S3 server on loopback). Everything started here is stopped by PID."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers.procs import free_port, stop, wait_for_port
from helpers.videos import make_video

from moclip.params import IndexParams

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent


@pytest.fixture()
def corpus(tmp_path):
    for i in range(3):
        make_video(tmp_path / "corpus" / "a" / f"v{i}.mp4", n_frames=16, seed=i)
    return tmp_path / "corpus"


def test_index_on_an_existing_dask_scheduler(prefect_api, corpus, tmp_path):
    from distributed import Client

    from flows.index_flow import index_corpus

    port = free_port()
    env = {**os.environ, "PREFECT_API_URL": prefect_api}  # the worker reports its task runs to our server
    scheduler = subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                  "--no-dashboard"], env=env, start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        wait_for_port(port)
        worker = subprocess.Popen([str(BIN / "dask"), "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1",
                                   "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1"], env=env,
                                  start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with Client(f"tcp://127.0.0.1:{port}", timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
            worker_pids = set(client.run(os.getpid).values())
        params = IndexParams(corpus={"root": str(corpus)}, out=str(tmp_path / "ds"),
                             features={"clip": {"weights": "none", "frames": 2}},
                             run={"shard_size": 2, "dask_address": f"tcp://127.0.0.1:{port}"})
        summary = index_corpus(params)
        assert summary.indexed_ok == 3
        ran_on = {int(w.rsplit(":", 1)[1]) for w in summary.workers}
        assert ran_on and ran_on <= worker_pids  # every shard ran in the external worker process
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                stop(proc)


def test_index_to_s3_url(prefect_api, corpus, tmp_path):
    from flows.index_flow import index_corpus

    port = free_port()
    server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in creds}
    os.environ.update(creds)
    try:
        wait_for_port(port)
        import boto3

        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="feats")
        opts = {"client_kwargs": {"endpoint_url": endpoint}}
        params = IndexParams(corpus={"root": str(corpus)}, out="s3://feats/run1",
                             features={"clip": {"weights": "none", "frames": 2}}, run={"workers": 1},
                             storage_options=opts)
        summary = index_corpus(params)
        assert summary.indexed_ok == 3
        df = pd.read_parquet("s3://feats/run1", storage_options=opts)
        assert len(df) == 3 and set(df["status"]) == {"ok"}
        from moclip.dataset import load_features, read_manifest

        assert read_manifest("s3://feats/run1", opts)["clip_random_init"] is True
        assert load_features("s3://feats/run1", opts).mv.shape[0] == 3
        again = index_corpus(params)  # incremental against the object store too
        assert again.unchanged == 3 and again.frames_decoded == 0
    finally:
        stop(server)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
