"""The evaluation report: real files in tmp_path, real PNGs, no mocks. Results are built as the dicts results.json
holds and validated into ``EvaluationResults``, as ``evaluate`` returns them."""

from __future__ import annotations

import copy
import json
import math
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from moclip.report.render import PAPER_COLUMN, render_html, render_markdown, summary_markdown, write_report
from moclip.train.results import PAPER, EvaluationResults

R = EvaluationResults.model_validate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WARNING = "CLIP WEIGHTS ARE RANDOM"
EVIL = "<script>alert('x')</script>Evil|Class"


def make_results(n_classes: int, seed: int = 0, random_init: bool = False,
                 classes: list[str] | None = None) -> dict:
    """A results dict as results.json holds it, with seeded random but self-consistent numbers (no calibration)."""
    rng = np.random.default_rng(seed)
    classes = classes or [f"Class_{i:03d}" for i in range(n_classes)]
    support = rng.integers(3, 9, n_classes)
    cm = np.zeros((n_classes, n_classes), dtype=int)
    for i, s in enumerate(support):
        p = rng.uniform(0.3, 0.95)
        for _ in range(s):
            j = i if rng.random() < p else int(rng.integers(n_classes))
            cm[i, j] += 1
    fusion_pc = (np.diag(cm) / cm.sum(1)).tolist()
    n_test = int(cm.sum())

    def metric(top1: float) -> dict:
        return {"top1": round(top1, 4), "top5": round(min(1.0, top1 + 0.15), 4), "n": n_test}

    def curve(n: int) -> dict:
        loss = (2.5 * np.exp(-np.arange(n) / 6) + rng.uniform(0, 0.05, n)).round(4).tolist()
        val = np.clip(np.linspace(0.2, 0.7, n) + rng.normal(0, 0.03, n), 0, 1).round(4).tolist()
        return {"train_loss": loss, "val_top1": val, "best_epoch": int(np.argmax(val)), "best_val_top1": max(val)}

    return {
        "title": "moclip evaluation",
        "dataset": {"url": "https://example.org/ucf101/UCF101.rar", "n_total": n_test * 5, "n_ok": n_test * 5 - 2,
                    "n_failed": 2, "n_train": n_test * 3, "n_val": n_test - 2, "n_test": n_test,
                    "classes": classes, "split_name": "ucf101 split 1" if n_classes == 101 else "demo corpus",
                    "val_protocol": "3 groups per class held out from train"},
        "clip": {"model": "ViT-B-32", "weights_id": "random" if random_init else "openai", "frames": 8,
                 "random_init": random_init},
        "paper": {"source": "MoCLIP-Lite (arXiv 2509.17084), UCF101 split 1, top-1",
                  "top1": {"fusion": 0.892, "zero_shot": 0.650, "mv_only": 0.665}},
        "methods": {"zero_shot_mean": metric(0.41), "zero_shot_single": metric(0.383), "mv_only": metric(0.52),
                    "clip_linear_probe": metric(0.61), "fusion": metric(float(np.trace(cm) / n_test))},
        "calibration": {"fitted": True, "methods": {"fusion": None, "mv_only": None, "clip_linear_probe": None}},
        "mv_missing": {"n_test": 0},
        "per_class": {"fusion": fusion_pc, "mv_only": rng.uniform(0, 1, n_classes).round(4).tolist(),
                      "clip_linear_probe": rng.uniform(0, 1, n_classes).round(4).tolist()},
        "confusion": {"fusion": cm.tolist()},
        "curves": {"mv_net": curve(20), "fusion": curve(12), "clip_linear_probe": curve(15)},
        "models": {"mv_net": {"params": 412_345, "flops_per_video": 98_000_000, "description": "small CNN, 8 seg"},
                   "paper_mv_net": {"params": 5_288_548, "flops_per_video": 2_340_000_000,
                                    "description": "EfficientNet-B0 x 3 segments (paper)"},
                   "fusion": {"params": 970_000, "description": "MLP 512+256 -> 512 -> C"}},
        "provenance": {"created_at": "2026-05-09T12:00:00Z", "seeds": {"split": 0, "mv_net": 1, "fusion": 2},
                       "versions": {"moclip": "0.1.0", "torch": "2.14.1", "open_clip": "3.0.0"},
                       "time_per_stage_s": {"index": 812.4, "train_mv_net": 95.2, "train_fusion": 3.1, "eval": 7.7},
                       "device": "cuda (NVIDIA H100)", "precision": "bf16", "dataset_settings_hash": "abc123def456",
                       "model_bundle": "runs/x/model", "command": "moclip train --out runs/x"},
    }


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def md_row(md: str, label: str) -> list[str]:
    """Cells of the Markdown table row whose first cell starts with ``label``."""
    for line in md.splitlines():
        if line.startswith("| "):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            if cells[0].startswith(label):
                return cells
    raise AssertionError(f"no table row {label!r}")


@pytest.fixture(scope="module")
def report5(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    results = make_results(5, seed=1)
    md, html_path = write_report(R(results), tmp_path_factory.mktemp("r5") / "nested" / "report")
    return results, md, html_path


@pytest.fixture(scope="module")
def report101(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    results = make_results(101, seed=2, random_init=True)
    md, html_path = write_report(R(results), tmp_path_factory.mktemp("r101"))
    return results, md, html_path


@pytest.mark.parametrize("which", ["report5", "report101"])
def test_write_report_files(which: str, request: pytest.FixtureRequest) -> None:
    results, md_path, html_path = request.getfixturevalue(which)
    out = md_path.parent
    assert md_path == out / "report.md" and html_path == out / "report.html"
    for name in ("report.md", "report.html", "results.json"):
        assert (out / name).stat().st_size > 500
    pngs = sorted((out / "plots").glob("*.png"))
    assert [p.name for p in pngs] == ["confusion.png", "curves.png", "per_class.png"]
    for p in pngs:
        w, h = png_size(p)
        assert p.stat().st_size > 10_000 and w >= 400 and h >= 250, (p.name, w, h, p.stat().st_size)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")], "temp files left behind"
    assert json.loads((out / "results.json").read_text()) == results  # the same keys and values, nothing added

    md = md_path.read_text()
    for name in ("per_class", "confusion", "curves"):
        assert f"](plots/{name}.png)" in md
    html = html_path.read_text()
    assert html.count('src="data:image/png;base64,') == 3
    assert 'src="plots/' not in html and "<script" not in html.lower()
    assert html.lstrip().startswith("<!DOCTYPE html>") and "<style>" in html


def test_per_class_plot_grows_with_classes(report5: tuple, report101: tuple) -> None:
    _, small, _ = report5
    _, big, _ = report101
    h5 = png_size(small.parent / "plots" / "per_class.png")[1]
    h101 = png_size(big.parent / "plots" / "per_class.png")[1]
    assert h101 > 4 * h5 and h101 > 1500  # ~ 0.2 inch per class at 100 dpi


def test_101_classes_tables(report101: tuple) -> None:
    results, md_path, _ = report101
    md = md_path.read_text()
    assert md_row(md, "101")[1] == "Class\\_100"  # the appendix lists every class
    assert "ucf101 split 1" in md


@pytest.mark.parametrize("random_init", [True, False])
def test_random_weights_warning(random_init: bool) -> None:
    results = R(make_results(5, seed=3, random_init=random_init))
    md, html, summary = render_markdown(results), render_html(results), summary_markdown(results)
    if not random_init:
        assert WARNING not in md and WARNING not in html and WARNING not in summary
        assert "random CLIP" not in md
        return
    for text, title in ((md, "# moclip evaluation"), (summary, "## moclip evaluation")):
        lines = [ln for ln in text.splitlines() if ln.strip()]
        assert lines[0] == title and WARNING in lines[1], lines[:2]
    body = html[html.index("<body>"):]
    assert body.index(WARNING) < body.index("Headline") and body.index("<h1>") < body.index(WARNING)
    assert '<blockquote class="warn" role="alert">' in html and ".warn{border:4px solid" in html
    assert "⚠ random CLIP" in md_row(md, "Fusion")[0]
    assert "⚠ random CLIP" not in md_row(md, "MV-only")[0]


def test_headline_table_and_paper_column() -> None:
    results = R(make_results(5, seed=4))
    md = render_markdown(results)
    header = md_row(md, "Method")
    assert header[3] == PAPER_COLUMN and "paper (MoCLIP-Lite, UCF101 split 1)" in header[3]
    assert md_row(md, "CLIP zero-shot (mean of K frames)")[1:] == ["41.0", "56.0", "65.0"]
    assert md_row(md, "CLIP zero-shot (single frame)")[1:] == ["38.3", "53.3", "65.0"]
    assert md_row(md, "MV-only")[1:] == ["52.0", "67.0", "66.5"]
    assert md_row(md, "CLIP linear probe")[3] == "—"
    assert md_row(md, "Fusion")[3] == "89.2"
    assert "not reproduced here" in md and "pretrained OpenAI" in md
    assert "Not the paper's setting" in md  # demo corpus
    html = render_html(results)
    assert ">89.2</td>" in html and ">66.5</td>" in html and ">65.0</td>" in html
    assert "paper (MoCLIP-Lite, UCF101 split 1)" in html


def test_paper_setting_detected() -> None:
    """UCF101 split 1 with OpenAI ViT-B/32 weights: the data and weights match the paper's, the method does not,
    and the report says both (it used to say the columns "can be compared")."""
    results = make_results(101, seed=5)  # "ucf101 split 1", weights "openai"
    md = summary_markdown(R(results))
    assert "Only the data and the CLIP weights match the paper" in md
    assert "MV tensors at block resolution" in md and "test protocol" in md and "can be compared" not in md
    assert "8 frames per video" in md
    results["clip"]["model"] = "ViT-L-14"
    assert "not the paper's ViT-B/32" in summary_markdown(R(results))


def test_calibration_section(tmp_path: Path) -> None:
    results = make_results(5, seed=7)
    bins = {"edges": [i / 15 for i in range(16)], "confidence": [None] * 10 + [0.7, None, 0.85, None, 0.95],
            "accuracy": [None] * 10 + [0.5, None, 0.8, None, 1.0], "count": [0] * 10 + [4, 0, 6, 0, 10]}
    results["calibration"] = {"fitted": True, "methods": {
        "fusion": {"temperature": 1.7, "ece_before": 0.12, "ece_after": 0.04, "nll_before": 0.9, "nll_after": 0.6,
                   "reliability_before": bins, "reliability_after": bins}}}
    results["mv_missing"] = {"n_test": 3}
    md_path, html_path = write_report(R(results), tmp_path)
    md = md_path.read_text()
    assert md_row(md.split("## Calibration")[1], "Fusion")[1:] == ["1.700", "12.0", "4.0", "0.900", "0.600"]
    assert "](plots/reliability.png)" in md and png_size(tmp_path / "plots" / "reliability.png")[0] >= 300
    assert "softmax(logits / T)" in md and "3 test videos have no usable motion vectors" in md
    assert "MV-only" not in md.split("## Calibration")[1].split("##")[0]  # no calibration of MV-only: no row
    results["calibration"]["fitted"] = False
    assert "predates calibration" in render_markdown(R(results))


def test_missing_methods_render_dash(tmp_path: Path) -> None:
    results = make_results(5, seed=6)
    del results["methods"]["zero_shot_single"], results["methods"]["clip_linear_probe"]
    results["methods"]["mv_only"]["top5"] = None  # null in results.json: NaN, no number
    md = render_markdown(R(results))
    assert md_row(md, "CLIP zero-shot (single frame)")[1:] == ["—", "—", "65.0"]
    assert md_row(md, "CLIP linear probe")[1:] == ["—", "—", "—"]
    assert md_row(md, "MV-only")[1:] == ["52.0", "—", "66.5"]
    assert md_row(md, "Fusion head")[1:3] == ["970,000 (0.97 M)", "—"]  # the fusion head's FLOPs are not counted
    write_report(R(results), tmp_path)  # and the files still come out


def test_renamed_or_missing_keys_are_refused() -> None:
    """A key the model does not know, or one it needs, fails validation: never a silent "—" in the report."""
    results = make_results(5, seed=6)
    results["methods"]["fusion_head"] = results["methods"].pop("fusion")
    with pytest.raises(ValidationError, match="fusion_head"):
        R(results)
    results = make_results(5, seed=6)
    del results["dataset"]["n_test"]
    with pytest.raises(ValidationError, match="n_test"):
        R(results)
    with pytest.raises(ValidationError):
        R({"methods": {"fusion": {"top1": 0.5, "top5": 0.9, "n": 2}}})


def test_minimal_results(tmp_path: Path) -> None:
    """Nothing optional: only fusion's metrics, no per-class accuracy (no test video of any class), no confusion,
    empty histories, no calibration: no plots, every table cell that has no number says so, nothing crashes."""
    results = make_results(5, seed=11)
    results["methods"] = {"fusion": {"top1": 0.5, "top5": 0.9, "n": 2}}
    results["per_class"] = {k: [None] * 5 for k in results["per_class"]}
    results["confusion"] = {"fusion": []}
    results["curves"] = {k: {"train_loss": [], "val_top1": [], "best_epoch": -1, "best_val_top1": -1.0}
                         for k in results["curves"]}
    results["calibration"]["fitted"] = False
    md_path, html_path = write_report(R(results), tmp_path)
    md = md_path.read_text()
    assert md_row(md, "Fusion")[1:] == ["50.0", "90.0", "89.2"]
    assert md_row(md, "MV-only")[1:] == ["—", "—", "66.5"]
    assert "![" not in md and list((tmp_path / "plots").iterdir()) == []
    assert "No data for this figure in the results." in md and "## Calibration" not in md
    assert "data:image/png" not in html_path.read_text()
    assert WARNING not in md


def test_paper_numbers_default() -> None:
    """The paper's numbers are written once (moclip.train.results.PAPER): results without them get them."""
    results = make_results(5, seed=12)
    assert R(results).paper == PAPER and results["paper"] == PAPER.model_dump()
    del results["paper"]
    assert R(results).paper == PAPER


def test_stale_plots_removed(tmp_path: Path) -> None:
    results = make_results(5, seed=7)
    write_report(R(results), tmp_path)
    assert (tmp_path / "plots" / "curves.png").exists()
    results["curves"] = {k: {"train_loss": [], "val_top1": [], "best_epoch": -1, "best_val_top1": -1.0}
                         for k in results["curves"]}
    md_path, _ = write_report(R(results), tmp_path)
    assert not (tmp_path / "plots" / "curves.png").exists() and (tmp_path / "plots" / "per_class.png").exists()
    assert "curves.png" not in md_path.read_text()


def test_user_data_is_escaped(tmp_path: Path) -> None:
    classes = ["Apply_Eye_Makeup", EVIL, "Cost $5 and $6", "Diving", "Fencing"]
    results = make_results(5, seed=8, classes=classes)
    results["dataset"]["split_name"] = "demo <b>corpus</b>"
    results["provenance"]["command"] = 'moclip train --name "<img src=x>"'
    md_path, html_path = write_report(R(results), tmp_path)
    html = html_path.read_text()
    assert "<script" not in html.lower() and "<img src=x>" not in html and "<b>corpus" not in html
    assert "<td>&lt;script&gt;alert('x')&lt;/script&gt;Evil|Class</td>" in html  # one cell, shown as written
    assert "demo &lt;b&gt;corpus&lt;/b&gt;" in html
    md = md_path.read_text()
    assert "<script" not in md and "&lt;script&gt;" in md
    assert "Evil\\|Class" in md  # a pipe would split the table cell
    for line in md.splitlines():  # every table row keeps its column count
        if line.startswith("| ") and "Evil" in line:
            assert len(re.findall(r"(?<!\\)\|", line)) in (5, 6, 7)
    for p in (tmp_path / "plots").glob("*.png"):  # '$...$' did not break mathtext rendering
        assert png_size(p)[0] > 0


def test_render_markdown_image_dir() -> None:
    results = R(make_results(5, seed=9))
    assert "![" not in render_markdown(results, image_dir_rel=None)
    assert "](figs/run%201/confusion.png)" in render_markdown(results, image_dir_rel="figs/run 1/")


def test_json_strict_and_numpy(tmp_path: Path) -> None:
    results = make_results(5, seed=10)
    results["curves"]["fusion"]["val_top1"][0] = float("nan")  # e.g. no validation set
    results["methods"]["fusion"]["top1"] = np.float32(0.75)
    original = copy.deepcopy(results)
    md_path, _ = write_report(R(results), tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())  # strict JSON: NaN became null
    assert data["curves"]["fusion"]["val_top1"][0] is None
    assert data["methods"]["fusion"]["top1"] == pytest.approx(0.75)
    assert md_row(md_path.read_text(), "Fusion")[1] == "75.0"
    assert results.keys() == original.keys()  # the caller's dict is not modified
    back = R(data)  # results.json reads back: null is NaN again
    assert math.isnan(back.curves.fusion.val_top1[0]) and back.methods.fusion.top1 == 0.75


def test_results_json_leaves_out_an_unset_command(tmp_path: Path) -> None:
    results = make_results(5, seed=13)
    del results["provenance"]["command"]  # evaluate records none
    write_report(R(results), tmp_path)
    assert json.loads((tmp_path / "results.json").read_text()) == results
