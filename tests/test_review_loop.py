"""The review loop against a real Label Studio server (1.23, on loopback): a batch becomes a project with moclip's
predictions as pre-annotations (never imported twice), reviewers answer in it (confirm, correct, skip, disagree),
and the answers come back into the label run's reviewed.parquet."""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import pandas as pd
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _label_run(root, labels):
    """A real label run: zero-shot predictions of a real indexed dataset, as the label flow writes them."""
    from helpers.datasets import index_in_process, motion_corpus

    from moclip.dataset import load_features, read_manifest
    from moclip.inference import ZeroShotModel
    from moclip.label.predict import predict_features
    from moclip.vocabulary import Vocabulary

    ds = index_in_process(motion_corpus(root / "archive", per_class=2, n_frames=12), root / "ds")
    zs = ZeroShotModel.for_dataset(Vocabulary.parse(["left", "right", "up", "down"]), "short", ds,
                                   read_manifest(ds), "cpu")
    (labels / "predictions").mkdir(parents=True)
    predict_features(zs, load_features(ds), top_k=3).to_parquet(labels / "predictions" / "part-a.parquet")
    (labels / "_labels.json").write_text(json.dumps({"features": ds, "classes": zs.classes, "model_id": zs.model_id}))
    return zs


def _answer(server, task_id: int, label: str | None) -> None:
    """A reviewer's answer in the labelling UI: a choice, or a skip (None)."""
    result = [] if label is None else [{"from_name": "label", "to_name": "video", "type": "choices",
                                        "value": {"choices": [label]}}]
    r = httpx.post(f"{server.url}/api/tasks/{task_id}/annotations/", headers={"Authorization": f"Token {server.token}"},
                   json={"result": result, "was_cancelled": label is None}, timeout=60)
    assert r.status_code == 201, r.text


def test_a_batch_goes_to_label_studio_and_the_answers_come_back(label_studio, tmp_path):
    from moclip.review.batch import export_to_label_studio, make_batch, reviews_from_label_studio
    from moclip.review.client import LabelStudio

    server = label_studio
    root = server.media / "run1"  # the videos lie below Label Studio's document root: it can serve them
    labels = root / "labels"
    _label_run(root, labels)
    items = make_batch(str(labels), 4, root / "batch1")
    done = export_to_label_studio(root / "batch1", server.url, server.token, document_root=str(server.media))
    assert (done.created, done.imported, done.already) == (True, 4, 0) and done.title.startswith("moclip: labels ")
    again = export_to_label_studio(root / "batch1", server.url, server.token, document_root=str(server.media))
    assert (again.created, again.imported, again.already) == (False, 0, 4)  # never twice

    with LabelStudio(server.url, server.token) as ls:
        tasks = list(ls.tasks(done.project))
        full = ls.call("GET", "/api/tasks/", params={"project": done.project, "fields": "all"}).json()["tasks"]
    assert sorted(t["data"]["moclip"]["item_id"] for t in tasks) == sorted(items["item_id"])
    assert all(len(t["predictions"]) == 1 for t in full)
    assert all(t["data"]["video"].startswith("/data/local-files/?d=run1/archive/") for t in tasks)
    first = tasks[0]  # Label Studio serves the video to the reviewer's browser (the storage moclip added)
    got = httpx.get(server.url + first["data"]["video"], headers={"Authorization": f"Token {server.token}"})
    assert got.status_code == 200 and got.content == open(first["data"]["moclip"]["path"], "rb").read()
    by_item = {t["data"]["moclip"]["item_id"]: t for t in tasks}
    ids = list(items["item_id"])
    model = dict(zip(items["item_id"], items["top1"]))
    _answer(server, by_item[ids[0]]["id"], model[ids[0]])  # confirmed
    wrong = next(c for c in ("left", "right", "up", "down") if c != model[ids[1]])
    _answer(server, by_item[ids[1]]["id"], wrong)  # corrected
    _answer(server, by_item[ids[2]]["id"], None)  # skipped
    _answer(server, by_item[ids[3]]["id"], "up")  # two reviewers disagree: the later answer wins
    _answer(server, by_item[ids[3]]["id"], "down")

    reviewed, rep, title = reviews_from_label_studio(str(labels), server.url, server.token)
    assert title == done.title and (rep.tasks, rep.answered, rep.skipped, rep.unanswered) == (4, 3, 1, 0)
    assert reviewed.set_index("item_id")["label"].to_dict() == {ids[0]: model[ids[0]], ids[1]: wrong, ids[3]: "down"}
    assert rep.model_right == (1 + (model[ids[3]] == "down")) and len(rep.disagreements) == 1
    assert len(pd.read_parquet(labels / "_review" / "reviewed.parquet")) == 3


def test_a_personal_access_token_works_and_a_wrong_one_is_named(label_studio):
    """Label Studio 1.23's default token: a JWT refresh token, exchanged for short-lived access tokens."""
    from moclip.review.client import LabelStudio, LabelStudioError

    server = label_studio
    legacy = {"Authorization": f"Token {server.token}"}
    r = httpx.post(f"{server.url}/api/token/", headers=legacy, timeout=60)  # as "Create token" in the UI
    assert r.status_code == 201, r.text
    pat = r.json()["token"]
    assert pat.count(".") == 2  # a JWT, not a legacy token
    with LabelStudio(server.url, pat) as ls:
        project, created = ls.project("moclip PAT check", label_config_for_test())
        assert created and ls.find_project("moclip PAT check")["id"] == project
        assert ls.call("GET", "/api/projects/").status_code == 200  # the access token is reused
    forged = pat[:-4] + ("AAAA" if not pat.endswith("AAAA") else "BBBB")
    with LabelStudio(server.url, forged) as ls, pytest.raises(LabelStudioError, match="personal access token"):
        ls.find_project("moclip PAT check")


def label_config_for_test() -> str:
    from moclip.review.labelstudio import label_config

    return label_config(["left", "right"], windowed=False)


def test_the_cli_exports_and_imports_through_the_server(label_studio, tmp_path):
    from helpers.cli import MOCLIP

    server = label_studio
    root = server.media / "run2"
    labels = root / "labels"
    _label_run(root, labels)
    env = {"MOCLIP_LABEL_STUDIO_TOKEN": server.token}

    def moclip(*args: str) -> subprocess.CompletedProcess:
        import os

        return subprocess.run([MOCLIP, *args], capture_output=True, text=True, timeout=600, env={**os.environ, **env})

    r = moclip("review", "select", str(labels), "-n", "3", "--out", str(root / "b"))
    assert r.returncode == 0 and "3 items to review" in r.stdout, r.stderr
    r = moclip("review", "export", str(root / "b"), "--url", server.url, "--project", "run2 review",
               "--document-root", str(server.media))
    assert r.returncode == 0 and "3 tasks imported, 0 already there" in r.stdout, r.stderr
    assert (root / "b" / "tasks.json").exists() and (root / "b" / "config.xml").exists()
    r = moclip("review", "import", str(labels), "--from-label-studio", "--url", server.url, "--project", "run2 review")
    assert r.returncode == 0 and "3 moclip tasks: 0 answered, 0 skipped, 3 not yet" in r.stdout, r.stderr
    r = moclip("review", "import", str(labels), "--from-label-studio", "--url", server.url, "--project", "nope")
    assert r.returncode == 1 and "no project titled 'nope'" in r.stderr
    bad = moclip("review", "export", str(root / "b"), "--url", server.url, "--token", "wrong-token-123456",
                 "--document-root", str(server.media))
    assert bad.returncode == 1 and "401" in bad.stderr
    nowhere = moclip("review", "export", str(root / "b"), "--url", server.url)
    assert nowhere.returncode == 1 and "--document-root" in nowhere.stderr
    shutil.rmtree(root)


def test_a_review_round_and_a_retrain_close_the_loop(label_studio, prefect_api, tmp_path, monkeypatch):
    """Label an archive with no model (zero-shot), a review round puts the least sure videos in Label Studio, the
    reviewers answer, and retrain imports the answers, trains on them with a small training dataset, evaluates, and
    labels the archive again with the new model (its features reused: nothing decoded again)."""
    from helpers.datasets import index_in_process, motion_corpus

    from flows.label_flow import label_archive
    from flows.review_flow import retrain, review_round
    from moclip.params import LabelParams, RetrainParams, ReviewRoundParams

    server = label_studio
    monkeypatch.setenv("MOCLIP_LABEL_STUDIO_TOKEN", server.token)  # the worker's: never a flow parameter
    root = server.media / "run3"
    base = index_in_process(motion_corpus(tmp_path / "train", per_class=4, n_frames=16), tmp_path / "base")
    archive = motion_corpus(root / "archive", per_class=3, n_frames=16)
    for f in list(archive.rglob("*.mp4")):
        f.rename(f.with_name("new_" + f.name))
    labels = root / "labels"
    clip = {"weights": "none", "frames": 2, "precision": "fp32"}  # the training dataset's settings
    first = label_archive(LabelParams(corpus={"root": str(archive)}, classes=["left", "right", "up", "down"],
                                      out=str(labels), features={"clip": clip}, run={"workers": 1}))
    assert first["n_labelled"] == 12

    picked = review_round(ReviewRoundParams(labels=str(labels), n=6, url=server.url, document_root=str(server.media)))
    assert (picked["picked"], picked["imported"]) == (6, 6)
    headers = {"Authorization": f"Token {server.token}"}
    tasks = httpx.get(f"{server.url}/api/tasks/", params={"project": picked["project"], "page_size": 100},
                      headers=headers).json()["tasks"]
    for t in tasks:  # the reviewers answer with the truth (the class folder)
        _answer(server, t["id"], t["data"]["moclip"]["video_id"].split("/")[0])

    from helpers.training import QUICK as fast
    out = retrain(RetrainParams(labels=str(labels), dataset=base, model_out=str(tmp_path / "model2"),
                                url=server.url, train=fast))
    assert out["imported"]["answered"] == 6
    assert out["evaluation"]["results"].dataset.n_test > 0
    relabelled = out["labels"]
    assert relabelled["predicted"] == 12 and relabelled["index"].new + relabelled["index"].reindexed == 0
    preds = pd.read_parquet(labels / "predictions")
    assert not preds["model"].str.startswith("zero-shot").any()  # every prediction is the new model's
    about = json.loads((labels / "_labels.json").read_text())
    assert about["model"] == str(tmp_path / "model2") and about["calibrated"] is True
