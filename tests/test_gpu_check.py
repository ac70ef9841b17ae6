"""bench/gpu_check.py, the one GPU check: its CPU smoke run end to end (``--device cpu --quick``, the real CLI as
subprocesses), its refusal of ``--device cuda`` without a CUDA device, and the parts of its report only a GPU run
fills (nvidia-smi sampling, the throughput limit, the GPU/CPU speed-ups), here on a stand-in nvidia-smi and made-up
numbers. CLIP weights are random init throughout (all this machine can load offline; the check measures speed only).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.cli import cli_env

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_check.py"
CPU_PARTS = {"clip_raw", "clip_stage", "index", "train"}


def run_check(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=REPO)


@pytest.mark.slow
@pytest.mark.integration
def test_quick_cpu_check(tmp_path):
    out = tmp_path / "out"
    r = run_check("--device", "cpu", "--quick", "--out", str(out), env=cli_env(tmp_path / "prefect-home"))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]

    report = json.loads((out / "gpu_check.json").read_text())
    parts = report["parts"]
    assert set(parts) == CPU_PARTS and report["failed"] == []
    assert all(p["ok"] for p in parts.values()), {k: p.get("error") for k, p in parts.items()}
    for name in ("clip_raw", "clip_stage"):
        assert set(parts[name]["images_per_s"]) == {"8", "16"}
        assert all(v > 0 for v in parts[name]["images_per_s"].values())
    assert all(v > 0 for v in parts["clip_stage"]["ratio_to_raw"].values())
    index = parts["index"]
    assert index["videos_per_s"] > 0 and index["indexed_ok"] == 4 and index["failed"] == 0
    assert index["limit"] in ("decode", "CLIP") and index["gpu_util"]["available"] is False
    train = parts["train"]
    assert train["mv_net_seconds"] > 0 and train["fusion_head_seconds"] > 0
    assert train["mv_epochs_run"] == 1 and train["head_epochs_run"] == 1
    assert report["clip_weights"].startswith("none")

    md = (out / "gpu_check.md").read_text()
    assert "random init" in md and "| batch | raw forward images/s |" in md and "| cpu |" in md
    assert "parts failed: none" in md


def test_cuda_without_a_device_exits_2(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    r = run_check("--device", "cuda", "--out", str(tmp_path), timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "no CUDA device" in r.stderr
    assert not (tmp_path / "gpu_check.json").exists()


@pytest.fixture
def gpu_check(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import gpu_check

    return gpu_check


def test_gpu_sampler_and_limit(gpu_check, tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "nvidia-smi"  # what the real one prints for the query: index, util %, MiB used
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nwhile true; do echo '0, 0, 500'; echo '0, 90, 9000'; echo '0, N/A'; sleep 0.02; "
                    "done\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    with gpu_check.GpuSampler() as gpu:
        time.sleep(0.5)
    u = gpu.summary()
    assert u["available"] and u["per_gpu"]["0"]["max_memory_mib"] == 9000
    assert 40 <= u["mean_util"] <= 50 and u["busy_mean_util"] >= 40

    ws = {"decode": 300.0, "embed": 20.0}
    assert gpu_check.throughput_limit(ws, {"available": True, "busy_mean_util": 20.0}, "cuda")[0] == "decode"
    assert gpu_check.throughput_limit(ws, {"available": True, "busy_mean_util": 95.0}, "cuda")[0] == "GPU"
    limit, why = gpu_check.throughput_limit(ws, {"available": False}, "cuda")
    assert limit == "decode" and "no GPU utilisation" in why
    assert gpu_check.throughput_limit(ws, None, "cpu")[0] == "decode"

    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with gpu_check.GpuSampler() as gpu:
        pass
    assert gpu.summary() == {"available": False, "note": "nvidia-smi not found: GPU utilisation not sampled"}


def test_gpu_report_markdown(gpu_check):
    """A CUDA run's report with every part, one failed: speed-ups, the limit, the failure, each in the table."""
    sizes = gpu_check.FULL
    stage = {str(b): 1000.0 * b ** 0.5 for b in sizes.batch_sizes}
    util = {"available": True, "mean_util": 30.0, "busy_mean_util": 41.0}
    index = {"ok": True, "device": "cuda", "videos_per_s": 20.0, "indexed_ok": 192, "wall_seconds": 9.6,
             "worker_seconds": {"decode": 120.0, "embed": 3.0, "write": 1.0, "load_model": 2.0},
             "images_embedded": 1536, "gpu_util": util, "limit": "decode", "limit_reason": "GPU mostly idle"}
    parts = {
        "clip_raw": {"ok": True, "precision": "fp16", "images_per_s": {k: v * 1.1 for k, v in stage.items()}},
        "clip_stage": {"ok": True, "precision": "fp16", "images_per_s": stage,
                       "ratio_to_raw": dict.fromkeys(stage, 0.91)},
        "cpu_clip": {"ok": True, "precision": "bf16", "batch": 64, "stage_images_per_s": 100.0,
                     "raw_images_per_s": 110.0, "ratio_to_raw": 0.9},
        "index": index,
        "cpu_index": {**index, "device": "cpu", "videos_per_s": 5.0, "gpu_util": {"available": False},
                      "limit": "CLIP"},
        "train": {"ok": True, "device": "cuda", "precision": "bf16", "train_videos": 140, "mv_net_seconds": 2.0,
                  "fusion_head_seconds": 1.0},
        "cpu_train": {"ok": False, "error": "RuntimeError: `moclip train` exited with 1\nTraceback ..."},
    }
    report = {"device": "cuda", "quick": False, "sizes": gpu_check.asdict(sizes), "index_options": [],
              "prefect_server": "shared", "created_at": "now", "total_seconds": 250.0, "parts": parts,
              "failed": ["cpu_train"], "speedups": gpu_check.speedups(parts),
              "machine": {"gpu": "NVIDIA H200", "gpus": 1, "cuda": "13.0", "cpu": "x, 16 cores", "torch": "2",
                          "python": "3"}}
    assert report["speedups"]["index_videos_per_s"] == 4.0 and report["speedups"]["mv_net_train"] is None
    assert report["speedups"]["clip_stage_best"] == round(stage["1024"] / 100.0, 2)
    md = "\n".join(gpu_check.markdown(report))
    assert "GPU: NVIDIA H200" in md and "random init" in md and "| 1024 |" in md and "**0.91**" in md
    assert "GPU / CPU videos/s: **4.00x**" in md and "Limit (cuda): **decode**" in md and "30 % / 41 %" in md
    assert "**cpu_train failed**: `RuntimeError: 'moclip train' exited with 1`" in md
