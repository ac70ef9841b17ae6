"""Sharded predictions without Prefect (moclip.label): the plan from two folder listings, the worker's files, reuse
of unchanged rows after the index rewrote a shard, an unreadable shard failing alone, and an fsspec URL output."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.datasets import index_in_process, motion_corpus
from helpers.training import QUICK

from moclip.dataset import Store
from moclip.label import LabelTarget, group_work, label_key, label_shards, plan_labels
from moclip.label.plan import parse_name, prediction_name
from moclip.train.pipeline import train

pytestmark = pytest.mark.slow
K1, K2 = "0123456789", "abcdefabcd"  # label keys (10 hex digits, as label_key makes them)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A dataset of 16 videos in 4 feature shards, and a model trained on it."""
    corpus = motion_corpus(tmp_path_factory.mktemp("corpus"), per_class=4)
    ds = index_in_process(corpus, tmp_path_factory.mktemp("ds"))
    store = Store(ds)
    [name] = store.shard_names()
    table = store.read_table(name).sort_by("video_id")
    for i in range(4):
        store.write_table(f"part-test-{i + 1:05d}.parquet", table.slice(4 * i, 4))
    store.remove(name)
    model = tmp_path_factory.mktemp("model")
    train(ds, model, QUICK, log=lambda m: None)
    return ds, model


def _target(ds, model, out: str, key: str = K1, **kw) -> LabelTarget:
    return LabelTarget(model=str(model), device="cpu", key=key, features=ds, predictions=out, **kw)


def _plan(ds: str, out: str, key: str):
    return plan_labels(Store(ds).shard_infos(), Store(out).shard_infos(), key)


def test_names_round_trip():
    name = prediction_name("part-20261202T101010-ab12cd-00003.parquet", "0123456789", "abcdefabcd")
    assert parse_name(name) == ("part-20261202T101010-ab12cd-00003.parquet", "0123456789", "abcdefabcd")
    assert parse_name("part-x.parquet") is None and parse_name("notes.txt") is None
    assert parse_name("part-my.own.file.parquet") is None  # a user's file is never taken for one (nor removed)
    a = label_key({"fusion.safetensors": "aa"}, 5, [])
    assert a != label_key({"fusion.safetensors": "bb"}, 5, []) != label_key({"fusion.safetensors": "aa"}, 3, [])
    assert a != label_key({"fusion.safetensors": "aa"}, 5, ["swimming"])


def test_groups_cover_every_shard_in_order_and_keep_workers_busy():
    from moclip.label import ShardWork

    shards = [ShardWork(f"part-{i}.parquet", f"t{i}", size=1000 + 10 * i, current=i % 3 == 0) for i in range(50)]
    groups = group_work(shards, workers=2)
    assert [w for g in groups for w in g] == shards and len(groups) >= 8
    three = [ShardWork(f"part-{i}.parquet", f"t{i}", size=1000) for i in range(3)]
    assert len(group_work(three, workers=2)) == 3 and group_work([], 2) == []
    big = [ShardWork(f"part-{i}.parquet", f"t{i}", size=8 << 20) for i in range(40)]  # 320 MB of features
    assert all(sum(w.size for w in g) <= 2 * (32 << 20) for g in group_work(big, workers=1))


def test_predict_plan_and_rerun(setup, tmp_path):
    ds, model = setup
    out = str(tmp_path / "preds")
    plan = _plan(ds, out, K1)
    assert len(plan.to_predict) == 4 and not plan.orphans
    r = label_shards(plan.shards, _target(ds, model, out))
    assert (r.written, r.counts.videos, r.counts.predicted, r.failed) == (4, 16, 16, [])
    assert r.peak_rss_mb > 0
    preds = pd.read_parquet(out)
    assert sorted(preds["video_id"]) == sorted(pd.read_parquet(ds)["video_id"])
    assert sum(r.counts.top1_counts().values()) == 16

    again = _plan(ds, out, K1)
    assert not again.to_predict  # from the listings alone: nothing to do
    r2 = label_shards(again.shards, _target(ds, model, out))
    assert (r2.written, r2.counts.videos, r2.counts.kept) == (0, 16, 16)
    assert r2.counts.top1 == r.counts.top1  # the summary of current shards is read back from their files

    assert len(_plan(ds, out, K2).to_predict) == 4  # another model or other options: everything again


def test_a_rewritten_shard_keeps_its_unchanged_rows_and_gone_shards_are_orphans(setup, tmp_path):
    ds, model = setup
    copy = tmp_path / "ds"
    src = Store(ds)
    for name in src.shard_names():
        Store(str(copy)).write_table(name, src.read_table(name))
    ds = str(copy)
    out = str(tmp_path / "preds")
    label_shards(_plan(ds, out, K1).shards, _target(ds, model, out))
    before = pd.read_parquet(out).set_index("video_id")

    store = Store(ds)  # as the index's commit does: one video leaves shard 1, shard 2 goes entirely
    t = store.read_table("part-test-00001.parquet")
    store.write_table("part-test-00001.parquet", t.slice(1))
    store.remove("part-test-00002.parquet")
    plan = _plan(ds, out, K1)
    todo = plan.to_predict
    assert [w.feature_shard for w in todo] == ["part-test-00001.parquet"] and todo[0].reuse
    assert len(plan.orphans) == 1 and plan.orphans[0].startswith("part-test-00002.")
    r = label_shards(plan.shards, _target(ds, model, out))
    assert (r.counts.predicted, r.counts.kept, r.removed) == (0, 11, 1)  # 3 kept rows of shard 1, nothing predicted
    for name in plan.orphans:
        Store(out).remove(name)
    after = pd.read_parquet(out).set_index("video_id")
    assert len(after) == 11 and t.column("video_id")[0].as_py() not in after.index
    assert (after["labeled_at"] == before.loc[after.index, "labeled_at"]).all()


def test_an_unreadable_feature_shard_fails_alone_and_is_moved_aside(setup, tmp_path):
    ds, model = setup
    copy = tmp_path / "ds"
    for name in Store(ds).shard_names():
        Store(str(copy)).write_table(name, Store(ds).read_table(name))
    (copy / "part-test-00003.parquet").write_bytes(b"PAR1 torn")
    out = str(tmp_path / "preds")
    r = label_shards(_plan(str(copy), out, K1).shards, _target(str(copy), model, out))
    assert [s for s, _ in r.failed] == ["part-test-00003.parquet"] and r.written == 3 and r.counts.videos == 12
    assert "ArrowInvalid" in r.failed[0][1] and "moved aside to" in r.failed[0][1]
    # moved aside (never deleted), where the next label run's index step finds its videos missing and indexes them
    assert [p.name.endswith("-part-test-00003.parquet") for p in (copy / "_quarantine").iterdir()] == [True]
    assert [w.feature_shard for w in _plan(str(copy), out, K1).shards] == [f"part-test-0000{i}.parquet"
                                                                            for i in (1, 2, 4)]


def test_predictions_on_an_fsspec_url(setup):
    ds, model = setup
    out = "memory://moclip-label-test/preds"
    r = label_shards(_plan(ds, out, K1).shards, _target(ds, model, out, extra_classes=("swimming",),
                                                                 extra_text=[[1.0] * 512]))
    assert r.written == 4 and not r.failed
    store = Store(out)
    tables = [pq.read_table(store.fs.open(store.path(n), "rb")) for n in store.shard_names()]
    t = pa.concat_tables(tables)
    assert t.num_rows == 16 and "zero_shot_labels" in t.schema.names
    assert not _plan(ds, out, K1).to_predict


def test_videos_whose_motion_source_the_model_never_saw_are_flagged(setup, tmp_path):
    """The model was trained on native MVs only (its bundle says so); rows re-encoded (another kind of motion,
    docs/MOTION_VECTORS.md) are flagged on the row and counted in the summary; native rows are not."""
    import json

    from moclip.label.worker import predictor
    from moclip.report.label_summary import distribution_markdown

    ds, model = setup
    assert json.loads((model / "bundle.json").read_text())["mv_sources"] == {"native": pytest.approx(12, abs=4)}
    copy = tmp_path / "ds"
    for i, name in enumerate(Store(ds).shard_names()):
        t = Store(ds).read_table(name)
        if i == 0:  # these four videos' motion was re-encoded
            t = t.set_column(t.schema.get_field_index("mv_source"), "mv_source", pa.array(["reencoded"] * t.num_rows))
        Store(str(copy)).write_table(name, t)
    out = str(tmp_path / "preds")
    target = _target(str(copy), model, out)
    r = label_shards(_plan(str(copy), out, K1).shards, target)
    preds = pd.read_parquet(out).set_index("video_id")
    assert preds["mv_source"].value_counts().to_dict() == {"native": 12, "reencoded": 4}
    assert (preds["mv_source_unseen"] == (preds["mv_source"] == "reencoded")).all()
    assert (r.counts.mv_source_unseen, r.counts.mv_sources) == (4, {"native": 12, "reencoded": 4})
    page = distribution_markdown(r.counts, False, trained_mv_sources=predictor(target).meta.mv_sources)
    assert "4 videos have motion vectors from a source the model was not trained on" in page
