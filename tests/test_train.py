"""Training and evaluation on a real (small) indexed dataset: seeded, leak-free, bundles that refuse tampering."""

from __future__ import annotations

import json
import os

import pytest
import torch
from helpers.datasets import index_in_process, motion_corpus
from helpers.training import FAST

from moclip.bundle import BundleError, load_bundle
from moclip.inference import BundleMeta
from moclip.train.pipeline import evaluate, train
from moclip.train.results import EvaluationResults

# pinned to the CPU: byte-identical seeded weights are a CPU guarantee (CUDA kernels may be nondeterministic)
pytestmark = pytest.mark.slow  # trains on a small real dataset



@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    corpus = motion_corpus(tmp_path_factory.mktemp("corpus"), per_class=10, bframes=True)
    return index_in_process(corpus, tmp_path_factory.mktemp("ds"))


def test_train_is_seeded_and_splits_do_not_overlap(dataset, tmp_path):
    """(evaluate's refusals of leaked test videos and of other settings fire in tests/test_predictions.py)"""
    quiet = lambda m: None  # noqa: E731
    a = train(dataset, tmp_path / "a", FAST, log=quiet)
    b = train(dataset, tmp_path / "b", FAST, log=quiet)
    assert a.meta["val"] == b.meta["val"]
    assert a.meta["files"] == b.meta["files"]  # byte-identical weights
    assert a.meta["val"]["mv_only"]["top1"] >= 0.75  # motion classes are learnable from MVs
    assert a.meta["clip"]["random_init"] is True
    assert not set(a.meta["splits"]["train"]) & set(a.meta["splits"]["val"])
    # train returns the bundle as written (not loaded back): what loading it gives
    loaded = load_bundle(tmp_path / "a")
    assert a.meta == loaded.meta and a.weights.keys() == loaded.weights.keys()
    assert all(torch.equal(v, loaded.weights[part][k]) for part, state in a.weights.items() for k, v in state.items())
    assert BundleMeta.model_validate(a.meta).architecture.fusion.num_classes == 4

    r = evaluate(dataset, tmp_path / "a", device="cpu")
    assert [k for k, _ in r.methods.items()] == ["zero_shot_mean", "zero_shot_single", "mv_only", "clip_linear_probe",
                                                  "fusion"]
    assert r.dataset.n_test == 8 and r.methods.mv_only.top1 >= 0.6  # chance: 0.25
    assert len(r.per_class.fusion) == 4 and sum(map(sum, r.confusion.fusion)) == 8
    assert r.models.mv_net.params < r.models.paper_mv_net.params / 10
    data = json.loads(json.dumps(r.model_dump(mode="json"), allow_nan=False))  # the report's input is plain JSON
    assert EvaluationResults.model_validate(data) == r  # and reads back as it was


def test_out_of_fold_fusion_head_takes_probabilities_of_nets_that_never_saw_the_row(dataset, tmp_path):
    """``mv_folds`` (off by default: it measured worse, docs/BENCHMARKS.md): each training video's MV input to the
    fusion head comes from an MV net trained without its fold; the bundle says the head takes class
    probabilities, and scoring computes them from the one full MV net."""
    logs: list[str] = []
    bundle = train(dataset, tmp_path / "oof", FAST.model_copy(update={"mv_folds": 3}), log=logs.append)
    meta = BundleMeta.model_validate(bundle.meta)
    assert meta.fusion.mv_input == "probabilities" and meta.architecture.fusion.mv_dim == 4  # C, not 256 features
    assert "mv_folds" in meta.time_per_stage_s and any("3 more MV nets" in line for line in logs)
    r = evaluate(dataset, tmp_path / "oof", device="cpu")
    assert r.methods.fusion.n == 8 and r.methods.mv_only.top1 >= 0.6  # the full MV net is the one that scores
    plain = BundleMeta.model_validate(train(dataset, tmp_path / "plain", FAST, log=lambda m: None).meta)
    assert plain.fusion.mv_input == "features" and plain.architecture.fusion.mv_dim == plain.mvnet.feature_dim


def test_folds_keep_groups_whole():
    import numpy as np
    import pandas as pd

    from moclip.train.pipeline import _folds

    meta = pd.DataFrame({"group": ["a", "a", "b", "b", "c", None, None, "d", "d", "e"]})
    rows = np.arange(10)
    folds = _folds(meta, rows, 3, seed=0)
    assert len(folds) == 3 and sorted(np.concatenate(folds).tolist()) == rows.tolist()
    fold_of = {int(r): f for f, fold in enumerate(folds) for r in fold}
    for a, b in ((0, 1), (2, 3), (7, 8)):
        assert fold_of[a] == fold_of[b]  # one group, one fold
    assert [len(f) for f in _folds(meta.iloc[:2], rows[:2], 5, seed=0)] == [2]  # one group: one fold, not five


def test_tampered_bundle_is_refused(dataset, tmp_path):
    train(dataset, tmp_path / "m", FAST, log=lambda m: None)
    assert load_bundle(tmp_path / "m").classes == ["down", "left", "right", "up"]
    weights = tmp_path / "m" / "fusion.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="SHA-256 does not match"):
        load_bundle(tmp_path / "m")
    with pytest.raises(BundleError, match="not a moclip model bundle"):
        load_bundle(tmp_path)


@pytest.mark.integration
def test_train_and_evaluate_flow_writes_report_and_artifact(prefect_api, dataset, tmp_path):
    from prefect import get_client

    from flows.train_flow import train_and_evaluate
    from moclip.params import TrainParams

    params = TrainParams(dataset=dataset, model_out=str(tmp_path / "model"), report_out=str(tmp_path / "report"),
                         train={"mv_epochs": 5, "head_epochs": 5, "flip": False})
    out = train_and_evaluate(params)
    html = (tmp_path / "report" / "report.html").read_text()
    md = (tmp_path / "report" / "report.md").read_text()
    assert "data:image/png;base64," in html
    assert "RANDOM" in md[:600] and "RANDOM" in html[:20_000]  # the warning sits at the top
    assert "89.2" in md and out["results"].methods.fusion.n == 8
    assert (tmp_path / "model" / "bundle.json").exists()

    async def artifact_keys():
        async with get_client() as client:
            return {a.key for a in await client.read_artifacts()}

    import asyncio

    assert "evaluation-report" in asyncio.run(artifact_keys())


def test_deterministic_kernels_are_on_while_a_model_trains_on_cuda_and_restored_after(monkeypatch):
    # the switches need no GPU to be set; training on one uses them (moclip.train.determinism)
    from moclip.train.determinism import CUBLAS_ENV, deterministic

    monkeypatch.delenv(CUBLAS_ENV, raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    with deterministic(torch.device("cuda")):
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ[CUBLAS_ENV] == ":4096:8"
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before
    with deterministic(torch.device("cpu")):  # CPU training is byte-identical without it (test above)
        assert torch.are_deterministic_algorithms_enabled() == before[0]
