"""Small real datasets for tests: motion-class corpora of encoded videos, indexed in-process (no Prefect)."""

from __future__ import annotations

from pathlib import Path

from helpers.videos import make_video
from moclip.config import ClipConfig, FeatureSettings, RunConfig, WindowConfig
from moclip.corpus import load_folder
from moclip.dataset import Store, plan_index, write_manifest
from moclip.indexing.shard import ShardTarget, index_shard

MOTIONS = {"right": (3, 0), "left": (-3, 0), "up": (0, -3), "down": (0, 3)}


def motion_corpus(root: Path, per_class: int, motions: dict = MOTIONS, n_frames: int = 20,
                  bframes: bool = False) -> Path:
    """One folder per motion class; speeds vary by clip, texture by seed."""
    k = 0
    for name, (dx, dy) in motions.items():
        for i in range(per_class):
            k += 1
            speed = 0.6 + 0.1 * (i % 5)
            make_video(root / name / f"{name}{i}.mp4", dx=dx * speed, dy=dy * speed, n_frames=n_frames, seed=k,
                       bframes=2 * (i % 2) if bframes else 0)
    return root


def index_in_process(corpus: Path, out: Path, frames: int = 2, window: WindowConfig | None = None,
                     shard: str = "part-test-00000.parquet") -> str:
    """Index a folder-per-class corpus with random-init CLIP, in this process, and write the manifest; with
    ``window``, time windows. A second call with another ``shard`` name indexes only what is new."""
    settings = FeatureSettings(clip=ClipConfig(weights="none", frames=frames, precision="fp32"),
                               window=window or WindowConfig())
    h = settings.settings_hash("random-init")
    store = Store(str(out))
    index_shard(plan_index(load_folder(corpus), store, h).to_index, shard,
                ShardTarget(features=settings, run=RunConfig(), out=str(out), settings_hash=h))
    write_manifest(store, settings=settings, settings_hash=h, clip_weights_id="random-init", clip_random=True,
                   run_summary={})
    return str(out)
