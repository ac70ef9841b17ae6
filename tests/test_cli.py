"""The `moclip` command as a user runs it: a real process, a real Prefect server, real Dask workers."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
from helpers.cli import run_moclip
from helpers.datasets import index_in_process, motion_corpus
from helpers.videos import make_video

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def moclip(tmp_path):
    """``moclip ARGS`` as a user runs it, with a Prefect home of its own (the CLI brings its own server)."""
    home = tmp_path / "prefect-home"

    def run(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
        return run_moclip(*args, home=home, timeout=timeout, **env)

    return run


def test_index_command(tmp_path, moclip):
    corpus = tmp_path / "corpus"
    make_video(corpus / "pan_right" / "a.mp4", dx=3, n_frames=24)
    make_video(corpus / "pan_left" / "b.avi", codec="mpeg4", dx=-3, n_frames=24)
    (corpus / "pan_left" / "broken.mp4").write_bytes(b"garbage" * 100)
    out = tmp_path / "feats"
    r = moclip("index", str(corpus), "--out", str(out), "--clip-weights", "none", "--workers", "1", "--frames", "2",
               MOCLIP_PROGRESS_SECONDS="0")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "3 videos: 2 indexed, 1 failed, 0 unchanged, 0 deleted" in r.stdout
    assert "index: 3/3 videos (100 %)" in r.stderr  # not a terminal: progress lines instead of a bar
    assert "failed: pan_left/broken.mp4:" in r.stderr
    df = pd.read_parquet(out)
    assert sorted(df["status"]) == ["failed", "ok", "ok"]
    assert (out / "_manifest.json").exists()


def test_bad_parameters_are_rejected_before_any_work(tmp_path, moclip):
    r = moclip("index", str(tmp_path), "--out", str(tmp_path / "o"), "--shard-size", "0", timeout=60)
    assert r.returncode == 2 and "--run.shard-size: Input should be greater than or equal to 1 (got '0')" in r.stderr
    r = moclip("index", str(tmp_path), "--out", str(tmp_path / "o"), "--grid", "15by20", timeout=60)
    assert r.returncode == 2 and "grid must look like 15x20" in r.stderr
    r = moclip("index", str(tmp_path), "--out", str(tmp_path / "o"), "--window", "2", "--stride", "3", timeout=60)
    assert r.returncode == 2 and "stride 3 s is longer than the window 2 s" in r.stderr, r.stderr
    r = moclip("label", str(tmp_path), "--model", "m", "--out", str(tmp_path / "o"), "--stride", "0", timeout=60)
    assert r.returncode == 2 and "--windows.stride: Input should be greater than 0 (got '0')" in r.stderr, r.stderr
    # zero-shot: a vocabulary that is empty or repeats a name, or both a model and a vocabulary
    for args, said in ((["--classes", ","], "the vocabulary is empty"),
                       (["--classes", "diving,Diving"], "'Diving' is in the vocabulary twice"),
                       (["--classes", "a,b", "--model", "m"], "give either model"),
                       ([], "give either model")):
        r = moclip("label", str(tmp_path), "--out", str(tmp_path / "o"), *args, timeout=60)
        assert r.returncode == 2 and said in r.stderr, r.stderr
    r = moclip("search", str(tmp_path), "--text", "x", "--like", "y", timeout=60)
    assert r.returncode == 2 and "give either --text or --like, not both" in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


def test_missing_corpus_is_a_clear_error(tmp_path, moclip):
    r = moclip("index", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--clip-weights", "none", timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"moclip: error: CorpusError: corpus root '{tmp_path / 'nope'}' does not exist" in r.stderr
    assert not (tmp_path / "o").exists()  # checked before anything started
    r = moclip("label", str(tmp_path / "nope"), "--model", str(tmp_path / "m"), "--out", str(tmp_path / "o"),
               timeout=120)
    assert r.returncode == 1 and f"corpus root '{tmp_path / 'nope'}' does not exist" in r.stderr


def test_train_evaluate_and_label_commands(tmp_path, moclip):
    corpus = motion_corpus(tmp_path / "corpus", per_class=6, motions={"right": (3, 0), "left": (-3, 0)}, n_frames=16)
    ds = index_in_process(corpus, tmp_path / "ds")
    model, report = tmp_path / "model", tmp_path / "report"
    r = moclip("train", ds, "--out", str(model), "--mv-epochs", "8", "--head-epochs", "8", "--no-flip",
               "--device", "cpu")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"model bundle written to {model}" in r.stdout and (model / "bundle.json").exists()
    assert "mv-net epoch 0: loss" in r.stderr and "temperatures (fitted on val)" in r.stderr  # progress, no TTY

    archive = tmp_path / "archive"
    make_video(archive / "new_right.mp4", dx=3, n_frames=16, seed=70)
    make_video(archive / "still_intra.mp4", dx=3, n_frames=16, gop=1, seed=71)
    # evaluate and label both only read the model: run side by side, each with a Prefect home of its own
    with ThreadPoolExecutor(2) as pool:
        evaluating = pool.submit(run_moclip, "evaluate", ds, "--model", str(model), "--out", str(report),
                                 home=tmp_path / "home-evaluate", timeout=300)
        labelling = pool.submit(run_moclip, "label", str(archive), "--model", str(model), "--out",
                                str(tmp_path / "labels"), "--workers", "1", "--top-k", "2", "--extra-classes",
                                "juggling, swimming", home=tmp_path / "home-label", timeout=300)
        r, rl = evaluating.result(), labelling.result()
    assert r.returncode == 0, r.stderr[-3000:]
    assert "WARNING: CLIP WEIGHTS ARE RANDOM" in r.stdout and "test top-1 (2 videos)" in r.stdout  # 20 % of 12
    md = (report / "report.md").read_text()
    assert "## Calibration (test set)" in md and (report / "report.html").exists()

    assert rl.returncode == 0, rl.stderr[-3000:]
    assert "2 videos labelled (2 predicted in this run, 0 unchanged; 0 failed to index)" in rl.stdout
    preds = pd.read_parquet(tmp_path / "labels" / "predictions").set_index("video_id")
    assert preds["mv_missing"].to_dict() == {"new_right.mp4": False, "still_intra.mp4": True}
    assert all(set(z) == {"juggling", "swimming"} for z in preds["zero_shot_labels"])
    assert all(0 < p < 1 for ps in preds["zero_shot_probs"] for p in ps)
    csv = pd.read_csv(tmp_path / "labels" / "predictions.csv")
    assert list(csv["video_id"]) == sorted(preds.index)
