"""Are two `moclip demo` outputs the same result? Compares test numbers, feature values and trained weights.

    python bench/compare_runs.py OUT_A OUT_B

Checks: every method's test metrics in results.json; the dataset's features per video (MV tensor, MV validity,
CLIP frame embeddings: exact equality, rows matched by video_id), its settings (read as today's FeatureSettings,
so a field added since counts at its default) and settings hash; the SHA-256 of every weights file of the model
bundle. Exits 1 and says what differs, else 0. Timestamps, paths and run times are
not compared (they always differ).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from moclip.config import FeatureSettings
from moclip.dataset import load_features, read_manifest


def compare(a: Path, b: Path) -> list[str]:
    diffs: list[str] = []
    ra, rb = (json.loads((p / "results.json").read_text()) for p in (a, b))
    for key in ("methods", "per_class", "confusion", "calibration"):
        if ra[key] != rb[key]:
            diffs.append(f"results.json: {key} differs")
    fa, fb = load_features(str(a / "dataset")), load_features(str(b / "dataset"))
    ida, idb = fa.meta["video_id"].tolist(), fb.meta["video_id"].tolist()
    if ida != idb:
        diffs.append(f"dataset: other videos ({len(ida)} vs {len(idb)})")
    else:
        for name in ("mv", "mv_valid", "clip"):
            x, y = getattr(fa, name), getattr(fb, name)
            if x.shape != y.shape or not np.array_equal(x, y):
                diffs.append(f"dataset: {name} differs")
    ma, mb = read_manifest(str(a / "dataset")), read_manifest(str(b / "dataset"))
    for key in ("settings_hash", "clip_weights_id"):
        if ma[key] != mb[key]:
            diffs.append(f"manifest: {key} differs ({ma[key]} vs {mb[key]})")
    sa, sb = (FeatureSettings.model_validate(m["settings"]) for m in (ma, mb))  # a new field: its default
    if sa != sb:
        diffs.append(f"manifest: settings differ ({sa} vs {sb})")
    ba, bb = (json.loads((p / "model" / "bundle.json").read_text()) for p in (a, b))
    if ba["train_config"] != bb["train_config"]:
        diffs.append("bundle: train_config differs")
    if ba["files"] != bb["files"]:
        diffs.append(f"bundle weights differ: {ba['files']} vs {bb['files']}")
    return diffs


def main() -> int:
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    diffs = compare(a, b)
    r = json.loads((a / "results.json").read_text())
    n = len(load_features(str(a / "dataset")).meta)
    top1 = ", ".join(f"{k} {v['top1'] * 100:.1f}%" for k, v in r["methods"].items())
    files = json.loads((a / "model" / "bundle.json").read_text())["files"]
    weights = ", ".join(f"{k} {v[:12]}" for k, v in files.items())
    print(f"test top-1: {top1}\nfeatures of {n} videos; weights {weights}")
    print("\n".join(diffs) if diffs else f"identical: {a} and {b} (metrics, features, settings hash, weights)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
