"""The review loop's first half, without a Label Studio server: picking what to check (uncertain, diverse, every
class, never twice), the tasks and labelling config in Label Studio 1.23's formats, and the answers read back from
its JSON export (confirmations, corrections, skips, disagreements, moved and split time ranges)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from moclip.review.labelstudio import frames, label_config, parse_export, seconds, task
from moclip.review.select import k_center, select, uncertainty


def _items(probs: list[list[float]], top1: list[str] | None = None) -> pd.DataFrame:
    n = len(probs)
    return pd.DataFrame({"item_id": [f"v{i}" for i in range(n)], "video_id": [f"v{i}" for i in range(n)],
                         "path": [f"/a/v{i}.mp4" for i in range(n)], "start_s": np.nan, "end_s": np.nan,
                         "labels": [["a", "b"]] * n, "probs": probs, "top1": top1 or ["a"] * n,
                         "top1_prob": [p[0] for p in probs], "model": "m"})


def test_margin_and_entropy_put_the_least_sure_first():
    probs = [[0.9, 0.05], [0.5, 0.45], [0.6, 0.3], [0.34, 0.33]]
    rng = np.random.default_rng(0)
    assert np.argsort(-uncertainty(probs, "margin", rng)).tolist() == [3, 1, 2, 0]
    assert np.argsort(-uncertainty(probs, "entropy", rng)).tolist()[0] == 3
    picked = select(_items(probs), 2, "margin", vectors=None)
    assert picked["item_id"].tolist() == ["v3", "v1"] and picked["why"].str.contains("margin").all()
    assert select(_items(probs), 2, "margin", exclude={"v3"})["item_id"].tolist() == ["v1", "v2"]
    a = select(_items(probs), 2, "random", seed=1)["item_id"].tolist()
    assert a == select(_items(probs), 2, "random", seed=1)["item_id"].tolist()


def test_a_rare_class_gets_its_quota_and_near_identical_items_do_not_fill_the_batch():
    rng = np.random.default_rng(0)
    base = rng.normal(size=16)
    # 10 near-identical, very uncertain items of class a; 5 distinct, a little less uncertain; 1 of a rare class b
    vec = [base + 0.01 * rng.normal(size=16) for _ in range(10)] + [rng.normal(size=16) for _ in range(6)]
    vectors = np.stack(vec).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    probs = [[0.4, 0.39]] * 10 + [[0.5, 0.3]] * 5 + [[0.6, 0.2]]
    items = _items(probs, ["a"] * 15 + ["b"])
    picked = select(items, 4, "margin", vectors=vectors, per_class=1)
    ids = picked["item_id"].tolist()
    assert "v15" in ids  # the rare class, though the least uncertain
    assert sum(int(i[1:]) < 10 for i in ids) <= 2  # not four copies of one clip
    assert picked["why"].str.contains("quota of predicted class 'b'").any()
    assert picked["why"].str.contains("diverse").any()


def test_k_center_picks_the_farthest_each_time():
    v = np.array([[1, 0], [0.99, 0.14], [0, 1], [-1, 0]], np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    assert [r for r, _ in k_center(v, np.arange(1, 4), [0], 2)] == [3, 2]


def test_diversity_keeps_away_from_what_was_reviewed_before():
    # three equally uncertain items: two like a reviewed clip, one unlike anything reviewed
    vectors = np.array([[1, 0], [0.99, 0.14], [0.98, -0.2], [0, 1]], np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = _items([[0.4, 0.39]] * 4)
    picked = select(items, 1, "margin", exclude={"v0"}, vectors=vectors, per_class=0)
    assert picked["item_id"].tolist() == ["v3"] and "reviewed item" in picked["why"][0]
    without = select(items.iloc[1:].reset_index(drop=True), 1, "margin", vectors=vectors[1:], per_class=0)
    assert without["item_id"].tolist() == ["v1"]  # the first by uncertainty, when nothing was reviewed


def test_the_labelling_configs_are_label_studio_xml():
    whole = ET.fromstring(label_config(["diving", "a & b"], windowed=False))
    assert [c.get("value") for c in whole.iter("Choice")] == ["diving", "a & b"]
    assert whole.find("Choices").get("toName") == whole.find("Video").get("name")
    timed = ET.fromstring(label_config(["diving"], windowed=True))
    assert timed.find("Video").get("frameRate") == "$fps" and timed.find("TimelineLabels") is not None
    with pytest.raises(ValueError):
        label_config([], windowed=False)


@pytest.mark.parametrize(("start_s", "end_s", "fps", "want"), [
    (0.0, 2.0, 25.0, (1, 50)), (14.0, 16.0, 25.0, (351, 400)), (1.0, 1.01, 30.0, (31, 31)),
    (0.5, 1.5, 29.97, (15, 45))])
def test_time_ranges_and_label_studio_frames_agree(start_s, end_s, fps, want):
    assert frames(start_s, end_s, fps) == want
    s, e = seconds(*want, fps)
    assert s <= start_s + 1 / fps and abs(e - end_s) <= 1 / fps


def _ann(aid: int, result: list, when: str, cancelled: bool = False, user: int = 1) -> dict:
    return {"id": aid, "result": result, "was_cancelled": cancelled, "completed_by": user, "created_at": when,
            "updated_at": when, "ground_truth": False}


def _choice(label: str) -> dict:
    return {"id": "x", "from_name": "label", "to_name": "video", "type": "choices", "value": {"choices": [label]}}


def test_answers_come_back_from_the_json_export():
    items = _items([[0.5, 0.4]] * 5, ["a", "a", "b", "a", "b"])
    made = [task(r, "moclip:m", f"/data/local-files/?d=v{i}.mp4", None) for i, r in enumerate(items.to_dict("records"))]
    assert made[0]["predictions"][0]["result"][0]["value"] == {"choices": ["a"]}
    exported = [{**t, "id": 100 + i} for i, t in enumerate(made)]
    exported[0]["annotations"] = [_ann(1, [_choice("a")], "2026-12-06T10:00:00Z")]  # confirmed
    exported[1]["annotations"] = [_ann(2, [_choice("b")], "2026-12-06T10:01:00Z")]  # corrected
    exported[2]["annotations"] = [_ann(3, [], "2026-12-06T10:02:00Z", cancelled=True)]  # skipped
    exported[3]["annotations"] = [_ann(5, [_choice("b")], "2026-12-06T11:00:00Z", user=2),  # two people disagree:
                                  _ann(4, [_choice("c")], "2026-12-06T10:03:00Z")]  # the most recent wins
    # exported[4]: no annotation yet; and a task someone made by hand in the same project
    exported.append({"id": 999, "data": {"video": "/x.mp4"}, "annotations": [_ann(9, [_choice("a")], "2026")]})
    rows, rep = parse_export(json.loads(json.dumps(exported)))
    assert rows.set_index("item_id")["label"].to_dict() == {"v0": "a", "v1": "b", "v3": "b"}
    assert (rep.tasks, rep.answered, rep.skipped, rep.unanswered, rep.foreign) == (5, 3, 1, 1, 1)
    assert rep.model_right == 1 and len(rep.disagreements) == 1 and "task 103" in rep.disagreements[0]
    assert rows.set_index("item_id").loc["v3", "annotation_id"] == 5 and rows["reviewed_at"].notna().all()


def test_moved_and_split_time_ranges_come_back_in_seconds():
    item = {"item_id": "long.mp4@14.000-16.000", "video_id": "long.mp4", "path": "/a/long.mp4", "start_s": 14.0,
            "end_s": 16.0, "top1": "diving", "top1_prob": 0.4}
    t = task(item, "moclip:m", "/data/local-files/?d=long.mp4", 25.0)
    assert t["predictions"][0]["result"][0]["value"]["ranges"] == [{"start": 351, "end": 400}]
    assert t["data"]["fps"] == 25.0 and t["data"]["moclip"]["start_s"] == 14.0
    with pytest.raises(ValueError, match="no frame rate"):
        task(item, "moclip:m", "/x", None)
    split = {"id": "r", "from_name": "segments", "to_name": "video", "type": "timelinelabels",
             "value": {"ranges": [{"start": 326, "end": 375}, {"start": 401, "end": 425}],
                       "timelinelabels": ["juggling"]}}
    rows, rep = parse_export([{**t, "id": 7, "annotations": [_ann(1, [split], "2026-12-06T10:00:00Z")]}])
    assert rows[["start_s", "end_s"]].to_numpy().tolist() == [[13.0, 15.0], [16.0, 17.0]]
    assert set(rows["label"]) == {"juggling"} and rep.model_right == 0


def test_a_batch_is_picked_from_a_label_run_exported_and_its_answers_imported(tmp_path):
    """A real label run (zero-shot predictions of a real indexed dataset): two batches never share an item, the
    tasks file and config are written, and an answered export lands in reviewed.parquet and the ledger."""
    from helpers.datasets import index_in_process, motion_corpus

    from moclip.dataset import load_features, read_manifest
    from moclip.inference import ZeroShotModel
    from moclip.label.predict import predict_features
    from moclip.review import ledger
    from moclip.review.batch import export_files, import_reviews, make_batch
    from moclip.vocabulary import Vocabulary

    ds = index_in_process(motion_corpus(tmp_path / "corpus", per_class=3, n_frames=12), tmp_path / "ds")
    manifest = read_manifest(ds)
    zs = ZeroShotModel.for_dataset(Vocabulary.parse(["left", "right", "up", "down"]), "short", ds, manifest, "cpu")
    preds = predict_features(zs, load_features(ds), top_k=3)
    labels = tmp_path / "labels"
    (labels / "predictions").mkdir(parents=True)
    preds.to_parquet(labels / "predictions" / "part-a.parquet")
    (labels / "_labels.json").write_text(json.dumps({"features": ds, "classes": zs.classes,
                                                     "model_id": zs.model_id}))
    first = make_batch(str(labels), 4, tmp_path / "batch1")
    second = make_batch(str(labels), 4, tmp_path / "batch2")
    assert len(first) == len(second) == 4 and not set(first["item_id"]) & set(second["item_id"])
    assert len(ledger.read(str(labels), ledger.LEDGER)) == 8
    tasks_path, config = export_files(tmp_path / "batch1", document_root=str(tmp_path))
    made = json.loads(tasks_path.read_text())
    assert len(made) == 4 and all(t["data"]["video"].startswith("/data/local-files/?d=corpus/") for t in made)
    assert ET.fromstring(config.read_text()).find("Choices") is not None
    answered = [{**t, "id": i, "annotations": [_ann(i, [_choice("left")], "2026-12-06T10:00:00Z")]}
                for i, t in enumerate(made)]
    reviewed, rep = import_reviews(str(labels), answered)
    assert len(reviewed) == 4 and rep.answered == 4
    assert set(pd.read_parquet(labels / "_review" / "reviewed.parquet")["label"]) == {"left"}
    rest = make_batch(str(labels), 100, tmp_path / "batch3")  # what is left: never an item picked or reviewed
    assert len(rest) == 12 - 8 and not set(rest["item_id"]) & (set(first["item_id"]) | set(second["item_id"]))
    with pytest.raises(ValueError, match="nothing left to review"):
        make_batch(str(labels), 5, tmp_path / "batch4")


def test_an_answer_taken_back_leaves_no_label(tmp_path):
    from moclip.review.batch import import_reviews, run_id

    items = _items([[0.5, 0.4]] * 2)
    made = [task(r, "moclip:m", f"/v{i}.mp4", None) for i, r in enumerate(items.to_dict("records"))]
    for t in made:  # tasks of this label run (another run's, in the same project, are left alone)
        t["data"]["moclip"]["run"] = run_id(str(tmp_path))
    first = [{**t, "id": i, "annotations": [_ann(i, [_choice("a")], "2026-12-06T10:00:00Z")]}
             for i, t in enumerate(made)]
    reviewed, _ = import_reviews(str(tmp_path), first)
    assert sorted(reviewed["item_id"]) == ["v0", "v1"]
    later = [{**made[0], "id": 0, "annotations": [_ann(7, [], "2026-12-06T11:00:00Z", cancelled=True)]}]  # now a skip
    reviewed, rep = import_reviews(str(tmp_path), later)
    assert reviewed["item_id"].tolist() == ["v1"] and rep.skipped == 1
