"""Features of an older moclip are never mixed with today's: motion became per second (feature schema 2), so a
dataset of schema 1 is indexed again (with a note) and training or scoring on it is refused until it is; a bundle
trained on schema 1 is refused (tests/test_bundle_meta.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.datasets import index_in_process, motion_corpus

from moclip.config import SCHEMA_VERSION, ClipConfig, CorpusSpec, FeatureSettings
from moclip.corpus import load_folder
from moclip.dataset import MANIFEST_NAME, StaleFeatures, Store, plan_index, read_manifest, read_settings
from moclip.params import IndexParams
from moclip.train.pipeline import train

OLD_HASH = "04dc3ff99aef80be"  # what schema 1 hashed these settings to


def as_schema1(out: Path) -> None:
    """Make ``out`` what an older moclip left: schema-1 settings in its manifest, its rows under their hash."""
    m = json.loads((out / MANIFEST_NAME).read_text())
    m["settings"]["schema_version"] = m["schema_version"] = 1
    m["settings_hash"] = OLD_HASH
    (out / MANIFEST_NAME).write_text(json.dumps(m))
    for part in out.glob("part-*.parquet"):
        t = pq.read_table(part)
        i = t.schema.get_field_index("settings_hash")
        pq.write_table(t.set_column(i, "settings_hash", pa.array([OLD_HASH] * t.num_rows)), part)


@pytest.fixture
def old_dataset(tmp_path) -> tuple[Path, Path]:
    corpus = motion_corpus(tmp_path / "corpus", per_class=2, n_frames=12)
    out = tmp_path / "ds"
    index_in_process(corpus, out)
    as_schema1(out)
    return corpus, out


def test_an_older_dataset_is_indexed_again_with_a_note(old_dataset):
    corpus, out = old_dataset
    given = IndexParams(corpus=CorpusSpec(root=str(corpus)), out=str(out),
                        features=FeatureSettings(clip=ClipConfig(weights="none", precision="fp32")))
    params, notes = given.with_recorded(read_manifest(str(out)))
    assert any("feature schema 1 (motion in % of the frame per frame" in n and "every video is indexed again" in n
               for n in notes), notes
    assert params.features.schema_version == SCHEMA_VERSION and params.features.clip.frames == 2  # the rest adopted
    plan = plan_index(load_folder(corpus), Store(str(out)), params.settings().settings_hash("random-init"))
    assert len(plan.to_index) == 8  # every video, none kept with its old features


def test_training_and_scoring_refuse_an_older_dataset(old_dataset, tmp_path):
    _, out = old_dataset
    with pytest.raises(StaleFeatures, match=rf"{out}: indexed with feature schema 1 .* index it again"):
        train(str(out), tmp_path / "model")
    assert not (tmp_path / "model").exists()
    with pytest.raises(StaleFeatures, match="schema 2 .motion in % of the displayed frame per second"):
        read_settings(read_manifest(str(out)), str(out))  # what scoring a dataset with a bundle reads first


def test_an_old_min_motion_value_warns():
    """``--min-motion`` is per second now: 0.02 from a script of before is 25x more permissive than it was."""
    from moclip.config import TimelineConfig

    with pytest.warns(UserWarning, match=r"--min-motion 0.02 is in % of the frame per second .* 0.5 per second"):
        TimelineConfig(min_motion=0.02)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TimelineConfig(min_motion=0.5)
        TimelineConfig(min_motion=0)
