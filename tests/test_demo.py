"""`moclip demo` as `make demo` runs it, through the console script, once per module; then what its results show.

On the demo corpus each stream is needed for the classes built for it, and fusion gets both. Random CLIP weights
(all this machine can load offline): the appearance classes carry a colour family that even a random encoder passes
to the trained heads; the motion classes share appearance exactly and need MVs. CLIP runs in fp32 (the same
features on every CPU) on 2 frames; training uses the demo's defaults (fixed seed, no flips).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import run_moclip

from moclip.demo import DEMO_CLASSES

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("demo")
    out = root / "demo"
    r = run_moclip("demo", "--out", str(out), "--frames", "2", "--clip-weights", "none", "--precision", "fp32",
                   home=root / "prefect-home", timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


def test_demo_command(demo):
    out, r = demo
    assert "200 videos: 200 indexed, 0 failed" in r.stdout and "test top-1 (40 videos)" in r.stdout
    assert "index: 200/200 videos (100 %)" in r.stderr and "mv-net epoch 0: loss" in r.stderr  # progress, no TTY
    md = (out / "report.md").read_text()
    assert "CLIP WEIGHTS ARE RANDOM" in md[:600] and "## Calibration (test set)" in md
    assert (out / "model" / "bundle.json").exists() and (out / "corpus").is_dir() and (out / "report.html").exists()


def group_accuracy(results: dict, method: str, group: str) -> float:
    classes = results["dataset"]["classes"]
    wanted = {c.name for c in DEMO_CLASSES if c.stream == group}
    accs = [a for c, a in zip(classes, results["per_class"][method]) if c in wanted and a is not None]
    return float(np.mean(accs))


def test_fusion_needs_and_uses_both_streams(demo):
    r = json.loads((demo[0] / "results.json").read_text())
    top1 = {k: v["top1"] for k, v in r["methods"].items()}
    acc = {(m, g): group_accuracy(r, m, g) for m in ("mv_only", "clip_linear_probe", "fusion")
           for g in ("motion", "appearance")}
    print(top1, acc)

    # motion-only classes: MVs are needed (CLIP sees the same frames for both partners) and fusion uses them
    assert acc["mv_only", "motion"] >= 0.6
    assert acc["clip_linear_probe", "motion"] <= 0.3
    assert acc["fusion", "motion"] >= acc["clip_linear_probe", "motion"] + 0.3
    # appearance-only classes: CLIP features are needed (identical motion) and fusion uses them
    assert acc["clip_linear_probe", "appearance"] >= 0.6
    assert acc["mv_only", "appearance"] <= 0.5
    assert acc["fusion", "appearance"] >= acc["mv_only", "appearance"] + 0.25
    # overall, fusion beats both single streams. Not by a fixed margin over MV-only: two runs of the same code gave
    # fusion 0.95 and 0.80 against MV-only 0.775 and 0.725 (40 test videos; where the runs differ is not traced yet),
    # so the groups above carry the guarantee
    assert top1["fusion"] > top1["mv_only"] and top1["fusion"] >= top1["clip_linear_probe"] + 0.2
