"""On the demo corpus, each stream is needed for the classes built for it, and fusion gets both.

Random CLIP weights (all this machine can load offline): the appearance classes carry a colour family that even
a random encoder passes to the trained heads; the motion classes share appearance exactly and need MVs.
"""

from __future__ import annotations

import numpy as np
import pytest

from moclip.config import ClipConfig, FeatureSettings, RunConfig
from moclip.corpus import load_folder
from moclip.dataset import Store, plan_index, write_manifest
from moclip.demo import DEMO_CLASSES, generate_demo_corpus
from moclip.train.pipeline import TrainConfig, evaluate, train
from moclip.workers.shard_worker import index_shard

pytestmark = pytest.mark.slow


def group_accuracy(results: dict, method: str, group: str) -> float:
    classes = results["dataset"]["classes"]
    wanted = {c.name for c in DEMO_CLASSES if c.stream == group}
    accs = [a for c, a in zip(classes, results["per_class"][method]) if c in wanted and a is not None]
    return float(np.mean(accs))


def test_fusion_needs_and_uses_both_streams(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    generate_demo_corpus(root / "corpus")
    settings = FeatureSettings(clip=ClipConfig(weights="none", frames=2, precision="fp32"))  # same on every CPU
    h = settings.settings_hash("random-init")
    store = Store(str(root / "ds"))
    plan = plan_index(load_folder(root / "corpus"), store, h)
    res = index_shard(plan.to_index, settings, str(root / "ds"), "part-demo-00000.parquet", RunConfig(), h)
    assert res.n_failed == 0 and res.n_ok == 200
    write_manifest(store, settings, h, "random-init", True, {})

    # direction matters in these classes (left/right, clockwise/counter-clockwise): no flip augmentation
    train(str(root / "ds"), root / "model", TrainConfig(flip=False, seed=0), log=lambda m: None)
    r = evaluate(str(root / "ds"), root / "model")
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
    # overall, fusion beats both single streams
    assert top1["fusion"] >= top1["mv_only"] + 0.1 and top1["fusion"] >= top1["clip_linear_probe"] + 0.2
