"""The evaluation report a researcher reads: Markdown, a self-contained HTML page, a short summary, and the files.

The report is written once, as Markdown (:mod:`moclip.report.markdown`, which escapes every value taken from the
results), and the HTML page is that same Markdown rendered (:mod:`moclip.report.page`), so both documents always
say the same thing. The results are typed (:class:`moclip.train.results.EvaluationResults`): what may be missing
by design is optional there, and any number that is missing or not finite is shown as "—".
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moclip.files import atomic_write_bytes, atomic_write_text
from moclip.report import RANDOM_CLIP_WARNING, plots
from moclip.report import markdown as md
from moclip.report.markdown import Md
from moclip.report.page import render_page
from moclip.report.values import DASH, gflops, integer, jsonable, param_count, pct, seconds, text
from moclip.train.results import EvaluationResults

DEFAULT_TITLE = "moclip evaluation"
PLOT_DIR = "plots"  # write_report's figures folder, as report.md references it
PAPER_COLUMN = "paper (MoCLIP-Lite, UCF101 split 1) top-1 %"
# (field of results.methods, row label, field of results.paper.top1 or None, whether the number depends on CLIP)
METHOD_ROWS: tuple[tuple[str, str, str | None, bool], ...] = (
    ("zero_shot_mean", "CLIP zero-shot (mean of K frames)", "zero_shot", True),
    ("zero_shot_single", "CLIP zero-shot (single frame)", "zero_shot", True),
    ("mv_only", "MV-only", "mv_only", False),
    ("clip_linear_probe", "CLIP linear probe", None, True),
    ("fusion", "Fusion (MV + CLIP)", "fusion", True),
)
PER_CLASS_COLUMNS = (("fusion", "Fusion %"), ("mv_only", "MV-only %"), ("clip_linear_probe", "CLIP probe %"))
FIGURE_CAPTIONS = {
    plots.PER_CLASS_FILE: "Per-class test accuracy (sorted by fusion accuracy)",
    plots.CONFUSION_FILE: "Fusion confusion matrix (row-normalised)",
    plots.CURVES_FILE: "Training curves (train loss and val top-1 per epoch; the star marks the best epoch)",
    plots.RELIABILITY_FILE: "Reliability on the test set, before and after temperature scaling (marker area: share "
                            "of test videos in the confidence bin; the dashed diagonal is perfect calibration)",
}
_Blocks = list[Md]


# ----------------------------------------------------------------------------------------------------- content


def _is_random(results: EvaluationResults) -> bool:
    return results.clip.random_init


def _comparability(results: EvaluationResults) -> str:
    split = results.dataset.split_name
    weights = results.clip.weights_id
    norm_split = re.sub(r"[\s_\-]", "", split).lower()
    reasons = []
    if not ("ucf101" in norm_split and "split1" in norm_split):
        reasons.append("the dataset is not UCF101 split 1")
    if _is_random(results):
        reasons.append("CLIP weights are random")
    elif "openai" not in str(weights or "").lower():
        reasons.append("the CLIP weights are not recognisably the pretrained OpenAI ones")
    model = results.clip.model
    if not re.fullmatch(r"ViT-B-32(-quickgelu)?", model):
        reasons.append(f"the CLIP model is {text(model)}, not the paper's ViT-B/32")
    this_run = f"This run: dataset “{text(split)}”, CLIP weights “{text(weights)}”"
    if reasons:
        return f"{this_run}. Not the paper's setting ({'; '.join(reasons)}), so the paper column is context only."
    frames = results.clip.frames
    k = f"{frames} frames per video" if frames else "several frames per video"
    return (f"{this_run}. Only the data and the CLIP weights match the paper's (UCF101 split 1, OpenAI ViT-B/32). "
            "The method differs: the motion input (MV tensors at block resolution here, MV images in the paper), "
            f"the MV network, the CLIP frames ({k} here) and the test protocol (epochs picked on a validation "
            "split carved from train here, on the test set in the paper). The paper column is a reference point, "
            "not a like-for-like comparison.")


@dataclass(frozen=True)
class _Figures:
    """Which figures the report shows and where they are: ``names`` have data, ``image_dir`` is the folder the
    Markdown references them in (None: left out), ``pngs`` the rendered set when there is one (with its errors)."""

    names: list[str]
    image_dir: str | None = PLOT_DIR
    pngs: plots.PlotSet | None = None

    def blocks(self, name: str) -> _Blocks:
        if self.pngs is not None and name in self.pngs.errors:
            return [md.paragraph(f"The figure {name} could not be rendered: {self.pngs.errors[name]}")]
        if name not in self.names:
            return [md.paragraph("No data for this figure in the results.")]
        if self.image_dir is None:
            return []
        folder = self.image_dir.rstrip("/")
        return [md.image(FIGURE_CAPTIONS[name], f"{folder}/{name}" if self.image_dir.strip("/") else name)]


# ----------------------------------------------------------------------------------------------------- sections


def _headline_table(results: EvaluationResults) -> Md:
    random = _is_random(results)
    rows = []
    for key, label, paper_key, uses_clip in METHOD_ROWS:
        m = getattr(results.methods, key)
        name = label + (" ⚠ random CLIP" if random and uses_clip else "")
        rows.append([name, DASH if m is None else pct(m.top1), DASH if m is None else pct(m.top5),
                     pct(getattr(results.paper.top1, paper_key)) if paper_key else DASH])
    return md.table(["Method", "top-1 %", "top-5 %", PAPER_COLUMN], rows, [False, True, True, True])


def _context_line(results: EvaluationResults) -> Md:
    ds, clip = results.dataset, results.clip
    n_classes = len(plots.class_names(results))
    return md.paragraph(f"Test-set results on {text(ds.split_name)}: {n_classes or DASH} classes, "
                        f"{integer(ds.n_test)} test videos. CLIP {text(clip.model)}, weights {text(clip.weights_id)}.")


def _paper_note(results: EvaluationResults) -> str:
    return (f"Paper figures are the published numbers of {results.paper.source}; they were not reproduced here. "
            "They can only be set beside this run when the dataset is UCF101 split 1 and CLIP uses the pretrained "
            "OpenAI ViT-B/32 weights, and even then the methods differ (below). The paper gives one zero-shot "
            "figure; it is shown against both zero-shot protocols.")


def _statistics_note(results: EvaluationResults) -> str | None:
    n_classes = len(plots.class_names(results))
    n_test = results.dataset.n_test
    parts = []
    if n_classes:
        top5 = min(5, n_classes) / n_classes
        parts.append(f"Chance level with {n_classes} classes: top-1 {100 / n_classes:.1f} %, top-5 {100 * top5:.1f} %"
                     + (" (top-5 is trivially 100 % with 5 classes or fewer)" if n_classes <= 5 else "") + ".")
    if n_test > 0:
        parts.append(f"With {n_test:,} test videos the binomial standard error of an accuracy is up to "
                     f"±{50 / math.sqrt(n_test):.1f} points.")
    return " ".join(parts) or None


def _mv_missing_note(results: EvaluationResults) -> Md | None:
    n = results.mv_missing.n_test
    if not n:
        return None
    return md.note(f"{n:,} test videos have no usable motion vectors (all-intra streams, single frames, ...): the "
                 "fusion head predicts them from CLIP alone, through the path its modality dropout trained; MV-only "
                 "counts them as it predicts them (from an empty motion tensor).")


def _calibration_blocks(results: EvaluationResults, figures: _Figures) -> _Blocks:
    cal = results.calibration
    present = [(title, c) for key, title in plots.CALIBRATED_MODELS
               if (c := getattr(cal.methods, key)) is not None]
    if not present:
        return []
    rows = []
    for title, c in present:
        t = plots.finite(c.temperature)
        nll = [plots.finite(v) for v in (c.nll_before, c.nll_after)]
        rows.append([title, DASH if t is None else f"{t:.3f}", pct(c.ece_before), pct(c.ece_after),
                     *[DASH if v is None else f"{v:.3f}" for v in nll]])
    edges = cal.methods.fusion.reliability_after.edges if cal.methods.fusion is not None else []
    n_bins = len(edges) - 1 if len(edges) > 1 else DASH
    out: _Blocks = [md.heading(2, "Calibration (test set)")]
    if not cal.fitted:
        out.append(md.paragraph("This model bundle predates calibration (format 1): it has no fitted temperatures, "
                                "so T = 1 and the probabilities are the raw softmax. Retrain to calibrate."))
    out += [md.table(["Model", "Temperature T (fitted on val)", "ECE before %", "ECE after %", "NLL before",
                      "NLL after"], rows, [False, True, True, True, True, True]),
            md.paragraph("The probabilities moclip reports (the probs of moclip label) are softmax(logits / T) of the "
                         "fusion head, with T fitted on the validation split by minimising the negative "
                         "log-likelihood; the ranking, and so every accuracy above, is the same for any T. ECE "
                         f"(expected calibration error, {n_bins} equal-width confidence bins) is the gap between "
                         "confidence and accuracy, weighted by the share of videos per bin: 0 is perfectly "
                         "calibrated. With few test videos it is noisy."),
            *figures.blocks(plots.RELIABILITY_FILE)]
    return out


def _model_blocks(results: EvaluationResults) -> _Blocks:
    ours, paper, fusion = results.models.mv_net, results.models.paper_mv_net, results.models.fusion
    rows = [
        ["MV net (this run)", param_count(ours.params), gflops(ours.flops_per_video), text(ours.description)],
        ["MV net (paper)", param_count(paper.params), gflops(paper.flops_per_video),
         text(paper.description)],
        ["Fusion head (this run)", param_count(fusion.params), DASH, text(fusion.description)],  # FLOPs: not counted
    ]
    out: _Blocks = [md.heading(2, "Model size"),
                    md.table(["Model", "Parameters", "GFLOPs / video", "Description"], rows,
                             [False, True, True, False])]
    ratios = []
    for a, b, what in ((ours.params, paper.params, "parameters"),
                       (ours.flops_per_video, paper.flops_per_video, "FLOPs per video")):
        if a and b:
            ratios.append(f"{b / a:.1f}× fewer {what}" if a <= b else f"{a / b:.1f}× more {what}")
    if ratios:
        out.append(md.paragraph(f"The MV net of this run has {' and '.join(ratios)} than the paper's motion stream."))
    out.append(md.note("FLOPs as torch counts them (one multiply-add = 2 FLOPs). The CLIP image encoder, run once "
                       "per video to pre-compute features, is not included in any row."))
    return out


def _per_class_blocks(results: EvaluationResults, figures: _Figures) -> _Blocks:
    out: _Blocks = [md.heading(2, "Per-class test accuracy"), *figures.blocks(plots.PER_CLASS_FILE)]
    classes = plots.class_names(results)
    series = plots.per_class_series(results)
    if "fusion" in series:
        acc = series["fusion"]
        ok = [i for i in np.argsort(np.nan_to_num(acc, nan=2.0), kind="stable") if np.isfinite(acc[i])]
        k = min(5, len(ok) // 2)
        worst = ", ".join(f"{classes[i]} ({100 * acc[i]:.1f} %)" for i in ok[:k])
        best = ", ".join(f"{classes[i]} ({100 * acc[i]:.1f} %)" for i in reversed(ok[-k:]))
        if k:
            out.append(md.paragraph(f"Lowest fusion accuracy: {worst}. Highest: {best}."))
    return out


def _confusion_blocks(results: EvaluationResults, figures: _Figures) -> _Blocks:
    out: _Blocks = [md.heading(2, "Confusion matrix (fusion)"), *figures.blocks(plots.CONFUSION_FILE)]
    cm = plots.confusion_matrix(results)
    classes = plots.class_names(results)
    if cm is None or len(classes) != cm.shape[0]:
        return out
    off = cm.copy()
    np.fill_diagonal(off, 0.0)
    rows_sum = cm.sum(axis=1)
    pairs = [(int(i), int(j)) for i, j in zip(*np.unravel_index(np.argsort(-off, axis=None, kind="stable"), off.shape))
             if off[i, j] > 0][:10]
    if pairs:
        out.append(md.paragraph("Most frequent confusions:"))
        out.append(md.table(["True class", "Predicted as", "Videos", "% of true class"],
                            [[classes[i], classes[j], f"{int(off[i, j]):,}", f"{100 * off[i, j] / rows_sum[i]:.1f}"]
                             for i, j in pairs], [False, False, True, True]))
    return out


def _curve_blocks(results: EvaluationResults, figures: _Figures) -> _Blocks:
    out: _Blocks = [md.heading(2, "Training curves"), *figures.blocks(plots.CURVES_FILE)]
    entries = plots.curve_entries(results)
    if not entries:
        return out
    rows = []
    for _, title, curve in entries:
        loss = [v for v in (plots.finite(x) for x in curve.train_loss) if v is not None]
        val = curve.val_top1
        be = plots.best_epoch(curve)
        n_epochs = max(len(curve.train_loss), len(val))
        rows.append([title, f"{n_epochs}", DASH if be is None else f"{be + 1}",
                     pct(val[be]) if be is not None and be < len(val) else DASH,
                     f"{loss[-1]:.4f}" if loss else DASH])
    out.append(md.table(["Model", "Epochs run", "Best epoch (1-based)", "Best val top-1 %", "Final train loss"],
                        rows, [False, True, True, True, True]))
    out.append(md.note("The best epoch (highest validation top-1) is the checkpoint evaluated on the test set."))
    return out


def _provenance_blocks(results: EvaluationResults) -> _Blocks:
    ds, clip, prov = results.dataset, results.clip, results.provenance
    classes = plots.class_names(results)
    out: _Blocks = [md.heading(2, "Provenance"), md.heading(3, "Dataset")]
    out.append(md.key_values([
        ("URL", md.code(ds.url) if ds.url else DASH),
        ("Split", text(ds.split_name)),
        ("Validation protocol", text(ds.val_protocol)),
        ("Classes", f"{len(classes)}: {', '.join(classes)}" if 0 < len(classes) <= 20
         else f"{len(classes)} (listed in the per-class table below)" if classes else DASH),
    ]))
    out.append(md.table(["Total", "OK", "Failed", "Train", "Val", "Test"],
                        [[integer(n) for n in (ds.n_total, ds.n_ok, ds.n_failed, ds.n_train, ds.n_val, ds.n_test)]],
                        [True] * 6))
    out += [md.heading(3, "Run"), md.key_values([
        ("CLIP model", text(clip.model)),
        ("CLIP weights", md.code(clip.weights_id) if clip.weights_id else DASH),
        ("CLIP random init", "YES — random, untrained weights" if clip.random_init else "no (pretrained)"),
        ("Device", text(prov.device)),
        ("Created at", text(prov.created_at)),
        *([("Command", md.code(prov.command))] if prov.command else []),
        *([("Dataset settings hash", md.code(prov.dataset_settings_hash))] if prov.dataset_settings_hash else []),
    ])]
    if prov.seeds:
        out += [md.heading(3, "Seeds"),
                md.table(["Seed", "Value"], [[k, text(v)] for k, v in prov.seeds.items()], [False, True])]
    if prov.versions:
        out += [md.heading(3, "Versions"),
                md.table(["Package", "Version"], [[k, text(v)] for k, v in prov.versions.items()], [False, False])]
    if prov.time_per_stage_s:
        vals = {k: plots.finite(v) for k, v in prov.time_per_stage_s.items()}
        total = sum(v for v in vals.values() if v is not None)
        rows = [[k, seconds(v), f"{100 * v / total:.1f}" if v is not None and total > 0 else DASH]
                for k, v in vals.items()]
        rows.append(["total", seconds(total), "100.0" if total > 0 else DASH])
        out += [md.heading(3, "Time per stage"), md.table(["Stage", "Wall time", "% of total"], rows,
                                                          [False, True, True])]
    return out


def _per_class_appendix(results: EvaluationResults) -> _Blocks:
    classes = plots.class_names(results)
    series = plots.per_class_series(results)
    if not classes or not series:
        return []
    cm = plots.confusion_matrix(results)
    support = cm.sum(axis=1) if cm is not None and cm.shape[0] == len(classes) else None
    cols = [(k, h) for k, h in PER_CLASS_COLUMNS if k in series]
    rows = [[str(i + 1), c, DASH if support is None else f"{int(support[i]):,}",
             *[pct(series[k][i]) for k, _ in cols]] for i, c in enumerate(classes)]
    table = md.table(["#", "Class", "Test videos", *[h for _, h in cols]], rows,
                     [True, False, True, *[True] * len(cols)])
    return [md.heading(2, "Appendix: per-class table"),
            md.details(f"Per-class test accuracy, all {len(classes)} classes (dataset order)", [table])]


# ----------------------------------------------------------------------------------------------------- documents


def _title(results: EvaluationResults) -> str:
    return text(results.title or DEFAULT_TITLE)


def _report(results: EvaluationResults, figures: _Figures) -> str:
    stats, missing = _statistics_note(results), _mv_missing_note(results)
    return md.document([
        md.heading(1, _title(results)),
        md.warning(RANDOM_CLIP_WARNING) if _is_random(results) else None,
        _context_line(results),
        md.heading(2, "Headline results (test set)"), _headline_table(results),
        md.paragraph(_paper_note(results)), md.paragraph(_comparability(results)),
        md.note(stats) if stats else None,
        missing,
        *_calibration_blocks(results, figures),
        *_model_blocks(results),
        *_per_class_blocks(results, figures),
        *_confusion_blocks(results, figures),
        *_curve_blocks(results, figures),
        *_provenance_blocks(results),
        *_per_class_appendix(results),
    ])


def render_markdown(results: EvaluationResults, image_dir_rel: str | None = PLOT_DIR) -> str:
    """The full report as Markdown. Figures are referenced as ``{image_dir_rel}/<name>.png`` (the files
    ``write_report`` writes); with ``image_dir_rel=None`` they are left out."""
    return _report(results, _Figures(plots.available_plots(results), image_dir_rel))


def summary_markdown(results: EvaluationResults) -> str:
    """A short Markdown summary (headline table, paper note, random-weights warning if any), e.g. for a Prefect
    artifact."""
    return md.document([
        md.heading(2, _title(results)),
        md.warning(RANDOM_CLIP_WARNING) if _is_random(results) else None,
        _context_line(results), _headline_table(results), md.paragraph(_paper_note(results)),
        md.paragraph(_comparability(results)),
    ])


def _rendered(results: EvaluationResults, pngs: plots.PlotSet) -> tuple[str, str]:
    """(report.md, report.html) for rendered figures: the page is the Markdown with the figures embedded."""
    markdown = _report(results, _Figures(list(pngs.png), PLOT_DIR, pngs))
    return markdown, render_page(markdown, _title(results), {f"{PLOT_DIR}/{n}": png for n, png in pngs.png.items()})


def render_html(results: EvaluationResults) -> str:
    """The full report as one self-contained HTML page: inline CSS, figures as base64 PNG data URIs, no scripts."""
    return _rendered(results, plots.render_plots(results))[1]


# ----------------------------------------------------------------------------------------------------- files


def write_report(results: EvaluationResults, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html``, ``plots/*.png`` and ``results.json`` (the results as strict JSON:
    non-finite numbers as null) into ``out_dir`` (created if needed), each file atomically (temp file +
    ``os.replace``). Figures from an earlier report that these results have no data for are removed. Returns
    (markdown path, HTML path)."""
    out = Path(out_dir)
    plot_dir = out / PLOT_DIR
    plot_dir.mkdir(parents=True, exist_ok=True)
    pngs = plots.render_plots(results)
    for name in plots.PLOT_FILES:
        if name in pngs.png:
            atomic_write_bytes(plot_dir / name, pngs.png[name])
        else:
            (plot_dir / name).unlink(missing_ok=True)
    data = jsonable(results.model_dump(mode="json"))
    atomic_write_text(out / "results.json", json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    markdown, page = _rendered(results, pngs)
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_text(md_path, markdown)
    atomic_write_text(html_path, page)
    return md_path, html_path
