"""Local Dask workers start warm: forked from a server that already imported everything and, when asked, already
built the CLIP encoder (shared copy-on-write); flows against the CLI's own server send no heartbeats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from moclip.config import ClipConfig

pytestmark = pytest.mark.integration  # real LocalCluster workers, a Prefect server

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, sys
from distributed import Client
from flows.cluster import local_cluster
from flows.processes import preload_clip_in_workers
from moclip.config import ClipConfig

def cached():
    from moclip.clip.encoder import _load_cached
    return _load_cached.cache_info().currsize

if __name__ == "__main__":
    if sys.argv[1] != "-":
        preload_clip_in_workers(ClipConfig(weights="none", precision=sys.argv[1]), sys.argv[2])
    with local_cluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \\
            Client(cluster) as client:
        print("CACHED", json.dumps(sorted(client.run(cached).values())))
"""


def cached_in_workers(tmp_path: Path, *args: str) -> list[int]:
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "MOCLIP_PRELOAD_CLIP"}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, str(script), *args], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("CACHED "))
    return json.loads(line.split(" ", 1)[1])


def test_workers_start_with_the_requested_clip_encoder_built(tmp_path):
    assert cached_in_workers(tmp_path, "bf16", "cpu") == [1, 1]  # the requested precision, not the default fp32


def test_workers_build_their_own_without_a_request(tmp_path):
    assert cached_in_workers(tmp_path, "-") == [0, 0]


def test_a_gpu_run_asks_for_no_preload(monkeypatch):
    """A process that forks must never initialise CUDA: a GPU request is not preloaded. Without CUDA the request is
    dropped here (the flow reports the bad device); with CUDA it reaches the fork server, which refuses anything but
    "cpu" (next test)."""
    import torch

    import flows.processes as processes
    from flows import preload

    monkeypatch.setattr(processes, "_forkserver_env", None)  # as before the fork server starts
    monkeypatch.delenv(preload.ENV, raising=False)
    processes.preload_clip_in_workers(ClipConfig(weights="none", precision="fp32"), "cuda")
    if torch.cuda.is_available():
        assert json.loads(os.environ[preload.ENV])["device"] == "cuda"
    else:
        assert preload.ENV not in os.environ


def test_preload_refuses_anything_but_the_cpu(monkeypatch):
    from flows import preload

    monkeypatch.setenv(preload.ENV, json.dumps({"model": "ViT-B-32", "weights": "none", "precision": "fp32",
                                                "device": "cuda"}))
    assert preload.preload() is False
    monkeypatch.setenv(preload.ENV, json.dumps({"model": "no-such-model", "weights": "none", "precision": "fp32",
                                                "device": "cpu"}))
    assert preload.preload() is False  # logged, never raised: the workers load it and report the error


def test_flows_on_the_cli_server_and_subflows_send_no_heartbeats(prefect_api):
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings

    from flows.server import without_heartbeats

    assert get_current_settings().flows.heartbeat_frequency is None  # inside the CLI's own server (the fixture)
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 180}):  # e.g. a deployment's run
        with without_heartbeats():  # around its subflows
            assert get_current_settings().flows.heartbeat_frequency is None
        assert get_current_settings().flows.heartbeat_frequency == 180
