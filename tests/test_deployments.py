"""Deployments as an operator uses them: `prefect server start` on loopback, a process work pool, `prefect deploy
--all` from prefect.yaml, a worker, and `prefect deployment run ... --watch` for each of the three deployments, with
the parameters prefect.yaml templates from the environment. Bad parameters are rejected by the server, with its
validation message, before any run exists; a schedule fires and its run completes. One test per check, on one
stack that the module starts and stops (by PID)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
import pytest
from helpers.cli import PREFECT, REPO, prefect_home
from helpers.datasets import motion_corpus
from helpers.procs import free_port, stop
from helpers.videos import make_video

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DEPLOYMENTS = {"nightly-reindex": "index-corpus", "train-and-evaluate": "train-and-evaluate",
               "label-archive": "label-archive", "review-round": "review-round", "retrain": "retrain"}


@dataclass
class Stack:
    api: str
    tmp: Path
    env: dict
    procs: list[subprocess.Popen] = field(default_factory=list)
    deploy: subprocess.CompletedProcess | None = None

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([PREFECT, *args], env=self.env, cwd=REPO, capture_output=True, text=True,
                              timeout=timeout)

    def spawn(self, *args: str, env: dict) -> None:
        self.procs.append(subprocess.Popen([PREFECT, *args], env=env, cwd=REPO, start_new_session=True,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def runs(self, deployment: str) -> list[dict]:
        flt = {"deployments": {"name": {"any_": [deployment]}}}
        return httpx.post(f"{self.api}/flow_runs/filter", json=flt, timeout=10).json()

    def deployment(self, name: str) -> dict:
        return httpx.get(f"{self.api}/deployments/name/{DEPLOYMENTS[name]}/{name}", timeout=10).json()

    def run(self, name: str, params: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        args = ["deployment", "run", f"{DEPLOYMENTS[name]}/{name}", "--watch"]
        if params is not None:
            args += ["--params", json.dumps({"params": params})]
        return self.cli(*args, timeout=timeout)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Server (its scheduler looping every second), pool, `deploy --all` with the corpus/features paths templated
    from the environment, and a worker polling every second."""
    tmp = tmp_path_factory.mktemp("deploy")
    port = free_port()
    home = prefect_home(tmp / "prefect-home")
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    base.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING")
    api = f"http://127.0.0.1:{port}/api"
    env = {**base, "PREFECT_API_URL": api, "PREFECT_WORKER_QUERY_SECONDS": "1",
           "MOCLIP_CORPUS": str(tmp / "corpus"), "MOCLIP_FEATURES": str(tmp / "features"),
           "MOCLIP_CLIP_WEIGHTS": "none"}  # offline here: random CLIP weights
    s = Stack(api, tmp, env)
    motion_corpus(tmp / "corpus", per_class=6, motions={"right": (3, 0), "left": (-3, 0)}, n_frames=16)
    try:
        s.spawn("server", "start", "--host", "127.0.0.1", "--port", str(port),
                env={**base, "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1"})
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prefect server did not start"
            time.sleep(0.5)
        for pool in ("moclip", "moclip-gpu"):  # indexing on CPU machines, training and labelling on the GPU one
            assert s.cli("work-pool", "create", pool, "--type", "process").returncode == 0
        s.deploy = s.cli("--no-prompt", "deploy", "--all", timeout=300)
        for pool in ("moclip", "moclip-gpu"):  # both here: a machine without a GPU trains on its CPU
            s.spawn("worker", "start", "--pool", pool, env=env)
        yield s
    finally:
        for proc in reversed(s.procs):
            stop(proc)


def _deployed(stack: Stack) -> None:
    assert stack.deploy is not None and stack.deploy.returncode == 0, \
        (stack.deploy.stdout[-2000:] + stack.deploy.stderr[-2000:]) if stack.deploy else "not deployed"


def test_deploy_all_creates_the_deployments_with_templated_parameters(stack):
    _deployed(stack)
    listed = stack.cli("deployment", "ls").stdout
    assert all(name in listed for name in DEPLOYMENTS)
    nightly = stack.deployment("nightly-reindex")
    assert nightly["parameters"] == {"params": {"corpus": {"root": str(stack.tmp / "corpus")},
                                                "out": str(stack.tmp / "features"),
                                                "features": {"clip": {"weights": "none"}}}}
    # the parameter schema is the job model's, with its descriptions (the same as `moclip index --help`)
    schema = nightly["parameter_openapi_schema"]
    mv = schema["definitions"]["MVConfig"]["properties"]["segments"]
    assert mv["description"].startswith("T: temporal segments") and mv["minimum"] == 1
    assert nightly["work_pool_name"] == "moclip" and nightly["schedules"][0]["schedule"]["cron"] == "0 2 * * *"
    assert {stack.deployment(n)["work_pool_name"] for n in ("train-and-evaluate", "label-archive", "retrain")} == \
        {"moclip-gpu"}
    assert stack.deployment("review-round")["work_pool_name"] == "moclip"
    # the schedule has put its next runs on the calendar
    assert any(r["state_type"] == "SCHEDULED" for r in stack.runs("nightly-reindex"))


@pytest.mark.parametrize(("bad", "message"), [
    ({"top_k": -1}, "Validation failed for field 'params.top_k'. Failure reason: -1 is less than the minimum of 1"),
    ({"top_k": "five"}, "Validation failed for field 'params.top_k'. Failure reason: 'five' is not of type 'integer'"),
    ({"top_kk": 2}, "'top_kk' was unexpected"),
    ({"windows": {"seconds": 4, "stride": 0}},
     "Validation failed for field 'params.windows.stride'. Failure reason: 0 is less than or equal to the minimum "
     "of 0"),
])
def test_the_server_rejects_bad_parameters_with_its_message(stack, bad, message):
    _deployed(stack)
    good = {"corpus": {"root": str(stack.tmp / "archive")}, "model": str(stack.tmp / "model"),
            "out": str(stack.tmp / "out")}
    before = len(stack.runs("label-archive"))
    r = stack.run("label-archive", {**good, **bad}, timeout=120)
    said = " ".join((r.stdout + r.stderr).split())  # the CLI wraps long lines
    assert r.returncode != 0 and message in said, said[-2000:]
    assert len(stack.runs("label-archive")) == before  # no run was created


def test_nightly_reindex_runs_with_its_templated_parameters(stack):
    _deployed(stack)
    r = stack.run("nightly-reindex")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    df = pd.read_parquet(stack.tmp / "features")
    assert len(df) == 12 and (df["status"] == "ok").all()


def test_train_and_evaluate_deployment(stack):
    _deployed(stack)
    if not (stack.tmp / "features" / "_manifest.json").exists():
        pytest.fail("needs the features of test_nightly_reindex_runs_with_its_templated_parameters")
    params = {"dataset": str(stack.tmp / "features"), "model_out": str(stack.tmp / "model"),
              "report_out": str(stack.tmp / "report"),
              "train": {"mv_epochs": 5, "head_epochs": 5, "flip": False, "device": "cpu"}}
    r = stack.run("train-and-evaluate", params)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (stack.tmp / "model" / "bundle.json").exists()
    assert "## Calibration (test set)" in (stack.tmp / "report" / "report.md").read_text()


def test_label_archive_deployment(stack):
    _deployed(stack)
    if not (stack.tmp / "model" / "bundle.json").exists():
        pytest.fail("needs the model of test_train_and_evaluate_deployment")
    for i, dx in enumerate((3, -3)):
        make_video(stack.tmp / "archive" / f"new{i}.mp4", dx=dx, n_frames=16, seed=50 + i)
    good = {"corpus": {"root": str(stack.tmp / "archive")}, "model": str(stack.tmp / "model"),
            "out": str(stack.tmp / "out"), "top_k": 2, "extra_classes": ["swimming"], "run": {"workers": 1}}
    r = stack.run("label-archive", good)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    preds = pd.read_parquet(stack.tmp / "out" / "predictions")
    assert sorted(preds["video_id"]) == ["new0.mp4", "new1.mp4"]
    assert all(len(v) == 2 for v in preds["labels"]) and "zero_shot_labels" in preds
    # the same deployment with time windows (0.64 s clips, 0.4 s windows every 0.2 s: 3 windows each)
    windowed = {**good, "out": str(stack.tmp / "out-windows"), "windows": {"seconds": 0.4, "stride": 0.2}}
    r = stack.run("label-archive", windowed)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    windows = pd.read_parquet(stack.tmp / "out-windows" / "windows.parquet")
    assert windows.groupby("video_id").size().to_dict() == {"new0.mp4": 3, "new1.mp4": 3}
    assert (stack.tmp / "out-windows" / "timelines.html").exists()
    # no model: CLIP zero-shot over class names, with prefect.yaml's example of windows and timeline options
    zero_shot = {"corpus": good["corpus"], "classes": ["diving", "surfing: a person surfing a wave"],
                 "out": str(stack.tmp / "out-zero-shot"), "features": {"clip": {"weights": "none"}},
                 "windows": {"seconds": 0.4, "stride": 0.2}, "timeline": {"min_score": 0.5}, "run": {"workers": 1}}
    r = stack.run("label-archive", zero_shot)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    preds = pd.read_parquet(stack.tmp / "out-zero-shot" / "predictions")
    assert sorted(preds["video_id"]) == ["new0.mp4", "new1.mp4"]
    assert set(preds["top1"]) <= {"diving", "surfing"} and preds["model"].str.startswith("zero-shot:random-init:").all()


def test_a_schedule_fires_and_its_run_completes(stack):
    """An interval schedule (every 10 s) on the nightly re-index: the server's scheduler creates the run and the
    worker runs it, with nobody asking (on an unchanged corpus it decodes nothing)."""
    _deployed(stack)
    name = "index-corpus/nightly-reindex"
    r = stack.cli("deployment", "schedule", "create", name, "--interval", "10")
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        deadline = time.monotonic() + 240
        while True:
            done = [run for run in stack.runs("nightly-reindex")
                    if run["auto_scheduled"] and run["state_type"] == "COMPLETED"]
            if done:
                break
            assert time.monotonic() < deadline, [(x["name"], x["state_type"]) for x in stack.runs("nightly-reindex")]
            time.sleep(1)
    finally:
        stack.cli("deployment", "schedule", "clear", name, "-y")
