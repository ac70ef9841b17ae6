"""Deployments as an operator uses them: `prefect server start` on loopback, a process work pool, `prefect deploy
--all` from prefect.yaml, a worker, and `prefect deployment run ... --watch` for the label flow. Bad parameters are
rejected by the server before any run exists. Everything started here is stopped by PID."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from helpers.datasets import index_in_process, motion_corpus
from helpers.procs import free_port, stop
from helpers.videos import make_video

from moclip.train.pipeline import TrainConfig, train

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).parent / "prefect")


def bundle(tmp: Path) -> Path:
    corpus = motion_corpus(tmp / "train", per_class=6, motions={"right": (3, 0), "left": (-3, 0)}, n_frames=16)
    ds = index_in_process(corpus, tmp / "ds")
    train(ds, tmp / "model", TrainConfig(flip=False, mv_epochs=10, head_epochs=10), log=lambda m: None)
    return tmp / "model"


def test_label_deployment_end_to_end(tmp_path):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    home = tmp_path / "prefect-home"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    base.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING")
    client_env = {**base, "PREFECT_API_URL": api, "PREFECT_WORKER_QUERY_SECONDS": "1",
                  "MOCLIP_CORPUS": str(tmp_path / "corpus"), "MOCLIP_FEATURES": str(tmp_path / "features")}
    started: list[subprocess.Popen] = []

    def spawn(*args: str, env: dict) -> subprocess.Popen:
        proc = subprocess.Popen([PREFECT, *args], env=env, cwd=REPO, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        return proc

    def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([PREFECT, *args], env=client_env, cwd=REPO, capture_output=True, text=True,
                              timeout=timeout)

    try:
        spawn("server", "start", "--host", "127.0.0.1", "--port", str(port), env=base)
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prefect server did not start"
            time.sleep(0.5)
        assert cli("work-pool", "create", "moclip", "--type", "process").returncode == 0
        r = cli("--no-prompt", "deploy", "--all")
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        listed = cli("deployment", "ls").stdout
        for name in ("nightly-reindex", "train-and-evaluate", "label-archive"):
            assert name in listed

        # the server rejects bad parameters before any flow run exists
        good = {"corpus": str(tmp_path / "archive"), "model": str(tmp_path / "model"), "out": str(tmp_path / "out"),
                "top_k": 2, "extra_classes": ["swimming"], "workers": 1}
        for bad in ({**good, "top_k": -1}, {**good, "top_k": "five"}, {**good, "top_kk": 2}):
            r = cli("deployment", "run", "label-archive/label-archive", "--params", json.dumps({"params": bad}))
            assert r.returncode != 0, bad
        label_runs = {"deployments": {"name": {"any_": ["label-archive"]}}}
        assert httpx.post(f"{api}/flow_runs/filter", json=label_runs).json() == []
        # (the nightly-reindex schedule has put its next runs on the calendar)
        nightly = {"deployments": {"name": {"any_": ["nightly-reindex"]}}}
        assert any(run["state_type"] == "SCHEDULED" for run in httpx.post(f"{api}/flow_runs/filter",
                                                                            json=nightly).json())

        bundle(tmp_path)
        for i, dx in enumerate((3, -3)):
            make_video(tmp_path / "archive" / f"new{i}.mp4", dx=dx, n_frames=16, seed=50 + i)
        spawn("worker", "start", "--pool", "moclip", env=client_env)
        r = cli("deployment", "run", "label-archive/label-archive", "--params", json.dumps({"params": good}),
                "--watch", timeout=400)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        preds = pd.read_parquet(tmp_path / "out" / "predictions.parquet")
        assert sorted(preds["video_id"]) == ["new0.mp4", "new1.mp4"]
        assert all(len(v) == 2 for v in preds["labels"]) and "zero_shot_labels" in preds
    finally:
        for proc in reversed(started):
            stop(proc)
