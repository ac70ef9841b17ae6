"""The evaluation report a researcher reads: Markdown, a self-contained HTML page, a short summary, and the files.

The report is built once as a list of small blocks (heading, paragraph, table, figure, ...) and each block is then
written as Markdown or as HTML, so both documents always say the same thing. Every value taken from the results dict
is treated as user data: escaped for HTML (``html.escape``) and for Markdown, and any number that is missing or not
finite is shown as "—".
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from moclip.report import plots

DASH = "—"
DEFAULT_TITLE = "moclip evaluation"
PAPER_COLUMN = "paper (MoCLIP-Lite, UCF101 split 1) top-1 %"
DEFAULT_PAPER: dict[str, Any] = {
    "source": "MoCLIP-Lite (arXiv 2509.17084), UCF101 split 1, top-1",
    "top1": {"fusion": 0.892, "zero_shot": 0.650, "mv_only": 0.665},
}
# (key in results["methods"], row label, key in paper["top1"] or None, whether the number depends on CLIP)
METHOD_ROWS: tuple[tuple[str, str, str | None, bool], ...] = (
    ("zero_shot_mean", "CLIP zero-shot (mean of K frames)", "zero_shot", True),
    ("zero_shot_single", "CLIP zero-shot (single frame)", "zero_shot", True),
    ("mv_only", "MV-only", "mv_only", False),
    ("clip_linear_probe", "CLIP linear probe", None, True),
    ("fusion", "Fusion (MV + CLIP)", "fusion", True),
)
PER_CLASS_COLUMNS = (("fusion", "Fusion %"), ("mv_only", "MV-only %"), ("clip_linear_probe", "CLIP probe %"))
RANDOM_WARNING = (
    "⚠ CLIP WEIGHTS ARE RANDOM (untrained). Zero-shot and CLIP-probe numbers below measure nothing about CLIP, "
    "and the fusion number is motion vectors plus random features; do not compare them with the paper."
)
FIGURE_CAPTIONS = {
    plots.PER_CLASS_FILE: "Per-class test accuracy (sorted by fusion accuracy)",
    plots.CONFUSION_FILE: "Fusion confusion matrix (row-normalised)",
    plots.CURVES_FILE: "Training curves (train loss and val top-1 per epoch; the star marks the best epoch)",
    plots.RELIABILITY_FILE: "Reliability on the test set, before and after temperature scaling (marker area: share "
                            "of test videos in the confidence bin; the dashed diagonal is perfect calibration)",
}


# ----------------------------------------------------------------------------------------------------- blocks


@dataclass
class Code:
    """A value shown verbatim (monospace): URLs, commands, hashes."""

    text: str


@dataclass
class _Heading:
    level: int
    text: str


@dataclass
class _Para:
    text: str
    note: bool = False  # small print


@dataclass
class _Warning:
    text: str


@dataclass
class _Table:
    headers: list[str]
    rows: list[list[str]]
    numeric: list[bool]  # right-align this column


@dataclass
class _Figure:
    name: str
    caption: str


@dataclass
class _KeyValues:
    items: list[tuple[str, str | Code]]


@dataclass
class _Details:
    summary: str
    blocks: list[_Block] = field(default_factory=list)


_Block = _Heading | _Para | _Warning | _Table | _Figure | _KeyValues | _Details


# ----------------------------------------------------------------------------------------------------- values


def _map(x: Any) -> Mapping[str, Any]:
    return x if isinstance(x, Mapping) else {}


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        d = _map(d).get(k)
    return d


def _pct(x: Any) -> str:
    v = plots.finite(x)
    return DASH if v is None else f"{100.0 * v:.1f}"


def _int(x: Any) -> str:
    v = plots.finite(x)
    return DASH if v is None else f"{int(round(v)):,}"


def _params(x: Any) -> str:
    v = plots.finite(x)
    return DASH if v is None else f"{int(round(v)):,} ({v / 1e6:.2f} M)"


def _gflops(x: Any) -> str:
    v = plots.finite(x)
    if v is None:
        return DASH
    g = v / 1e9
    return f"{g:.2f}" if g >= 0.1 else f"{g:.3g}"


def _text(x: Any) -> str:
    return DASH if x is None or (isinstance(x, str) and not x.strip()) else str(x)


def _seconds(x: Any) -> str:
    v = plots.finite(x)
    if v is None:
        return DASH
    if v < 60:
        return f"{v:.1f} s"
    h, rem = divmod(int(round(v)), 3600)
    return f"{v:,.0f} s ({h}:{rem // 60:02d}:{rem % 60:02d})"


def _is_random(results: Mapping[str, Any]) -> bool:
    return _get(results, "clip", "random_init") is True


def _paper(results: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    paper = _map(results.get("paper"))
    source = paper.get("source") if isinstance(paper.get("source"), str) else DEFAULT_PAPER["source"]
    top1 = _map(paper.get("top1")) or DEFAULT_PAPER["top1"]
    return source, top1


def _comparability(results: Mapping[str, Any]) -> str:
    split = _get(results, "dataset", "split_name")
    weights = _get(results, "clip", "weights_id")
    norm_split = re.sub(r"[\s_\-]", "", str(split or "")).lower()
    reasons = []
    if not ("ucf101" in norm_split and "split1" in norm_split):
        reasons.append("the dataset is not UCF101 split 1")
    if _is_random(results):
        reasons.append("CLIP weights are random")
    elif "openai" not in str(weights or "").lower():
        reasons.append("the CLIP weights are not recognisably the pretrained OpenAI ones")
    model = str(_get(results, "clip", "model") or "")
    if not re.fullmatch(r"ViT-B-32(-quickgelu)?", model):
        reasons.append(f"the CLIP model is {_text(model)}, not the paper's ViT-B/32")
    this_run = f"This run: dataset “{_text(split)}”, CLIP weights “{_text(weights)}”"
    if reasons:
        return f"{this_run}. Not the paper's setting ({'; '.join(reasons)}), so the paper column is context only."
    frames = plots.finite(_get(results, "clip", "frames"))
    k = f"{int(frames)} frames per video" if frames else "several frames per video"
    return (f"{this_run}. Only the data and the CLIP weights match the paper's (UCF101 split 1, OpenAI ViT-B/32). "
            "The method differs: the motion input (MV tensors at block resolution here, MV images in the paper), "
            f"the MV network, the CLIP frames ({k} here) and the test protocol (epochs picked on a validation "
            "split carved from train here, on the test set in the paper). The paper column is a reference point, "
            "not a like-for-like comparison.")


def _headline_table(results: Mapping[str, Any]) -> _Table:
    methods = _map(results.get("methods"))
    _, paper_top1 = _paper(results)
    random = _is_random(results)
    rows = []
    for key, label, paper_key, uses_clip in METHOD_ROWS:
        m = _map(methods.get(key))
        name = label + (" ⚠ random CLIP" if random and uses_clip else "")
        rows.append([name, _pct(m.get("top1")), _pct(m.get("top5")),
                     _pct(paper_top1.get(paper_key)) if paper_key else DASH])
    return _Table(["Method", "top-1 %", "top-5 %", PAPER_COLUMN], rows, [False, True, True, True])


def _context_line(results: Mapping[str, Any]) -> _Para:
    ds = _map(results.get("dataset"))
    n_classes = len(plots.class_names(results))
    clip = _map(results.get("clip"))
    return _Para(f"Test-set results on {_text(ds.get('split_name'))}: {n_classes or DASH} classes, "
                 f"{_int(ds.get('n_test'))} test videos. CLIP {_text(clip.get('model'))}, "
                 f"weights {_text(clip.get('weights_id'))}.")


def _paper_note(results: Mapping[str, Any]) -> str:
    source, _ = _paper(results)
    return (f"Paper figures are the published numbers of {source}; they were not reproduced here. They can only be "
            "set beside this run when the dataset is UCF101 split 1 and CLIP uses the pretrained OpenAI ViT-B/32 "
            "weights, and even then the methods differ (below). The paper gives one zero-shot figure; it is shown "
            "against both zero-shot protocols.")


def _statistics_note(results: Mapping[str, Any]) -> str | None:
    n_classes = len(plots.class_names(results))
    n_test = plots.finite(_get(results, "dataset", "n_test"))
    parts = []
    if n_classes:
        top5 = min(5, n_classes) / n_classes
        parts.append(f"Chance level with {n_classes} classes: top-1 {100 / n_classes:.1f} %, top-5 {100 * top5:.1f} %"
                     + (" (top-5 is trivially 100 % with 5 classes or fewer)" if n_classes <= 5 else "") + ".")
    if n_test and n_test > 0:
        parts.append(f"With {int(n_test):,} test videos the binomial standard error of an accuracy is up to "
                     f"±{50 / math.sqrt(n_test):.1f} points.")
    return " ".join(parts) or None


def _mv_missing_note(results: Mapping[str, Any]) -> _Para | None:
    n = plots.finite(_get(results, "mv_missing", "n_test"))
    if not n:
        return None
    return _Para(f"{int(n):,} test videos have no usable motion vectors (all-intra streams, single frames, ...): the "
                 "fusion head predicts them from CLIP alone, through the path its modality dropout trained; MV-only "
                 "counts them as it predicts them (from an empty motion tensor).", note=True)


def _calibration_blocks(results: Mapping[str, Any], pngs: plots.PlotSet | None, names: list[str]) -> list[_Block]:
    cal = _map(results.get("calibration"))
    methods = _map(cal.get("methods"))
    if not methods:
        return []
    rows = []
    for key, title in plots.CALIBRATED_MODELS:
        c = _map(methods.get(key))
        if not c:
            continue
        t = plots.finite(c.get("temperature"))
        nll = [plots.finite(c.get(f"nll_{w}")) for w in ("before", "after")]
        rows.append([title, DASH if t is None else f"{t:.3f}", _pct(c.get("ece_before")), _pct(c.get("ece_after")),
                     *[DASH if v is None else f"{v:.3f}" for v in nll]])
    edges = _get(methods, "fusion", "reliability_after", "edges")
    n_bins = len(edges) - 1 if isinstance(edges, list) and len(edges) > 1 else DASH
    out: list[_Block] = [_Heading(2, "Calibration (test set)")]
    if cal.get("fitted") is False:
        out.append(_Para("This model bundle predates calibration (format 1): it has no fitted temperatures, so "
                         "T = 1 and the probabilities are the raw softmax. Retrain to calibrate."))
    out += [_Table(["Model", "Temperature T (fitted on val)", "ECE before %", "ECE after %", "NLL before",
                    "NLL after"], rows, [False, True, True, True, True, True]),
            _Para("The probabilities moclip reports (the probs of moclip label) are softmax(logits / T) of the fusion "
                  "head, with T fitted on the validation split by minimising the negative log-likelihood; "
                  "the ranking, and so every accuracy above, is the same for any T. ECE (expected calibration "
                  f"error, {n_bins} equal-width confidence bins) is the gap between confidence and accuracy, "
                  "weighted by the share of videos per bin: 0 is perfectly calibrated. With few test videos it is "
                  "noisy."),
            *_figure_blocks(plots.RELIABILITY_FILE, pngs, names)]
    return out


def _model_blocks(results: Mapping[str, Any]) -> list[_Block]:
    models = _map(results.get("models"))
    if not models:
        return [_Heading(2, "Model size"), _Para("No model sizes recorded.")]
    ours, paper, fusion = _map(models.get("mv_net")), _map(models.get("paper_mv_net")), _map(models.get("fusion"))
    rows = [
        ["MV net (this run)", _params(ours.get("params")), _gflops(ours.get("flops_per_video")),
         _text(ours.get("description"))],
        ["MV net (paper)", _params(paper.get("params")), _gflops(paper.get("flops_per_video")),
         _text(paper.get("description") or "EfficientNet-B0 x 3 segments (paper)")],
        ["Fusion head (this run)", _params(fusion.get("params")), _gflops(fusion.get("flops_per_video")),
         _text(fusion.get("description"))],
    ]
    out: list[_Block] = [_Heading(2, "Model size"),
                         _Table(["Model", "Parameters", "GFLOPs / video", "Description"], rows,
                                [False, True, True, False])]
    ratios = []
    for key, what in (("params", "parameters"), ("flops_per_video", "FLOPs per video")):
        a, b = plots.finite(ours.get(key)), plots.finite(paper.get(key))
        if a and b:
            ratios.append(f"{b / a:.1f}× fewer {what}" if a <= b else f"{a / b:.1f}× more {what}")
    if ratios:
        out.append(_Para(f"The MV net of this run has {' and '.join(ratios)} than the paper's motion stream."))
    out.append(_Para("FLOPs as torch counts them (one multiply-add = 2 FLOPs). The CLIP image encoder, run once per "
                     "video to pre-compute features, is not included in any row.", note=True))
    return out


def _figure_blocks(name: str, pngs: plots.PlotSet | None, names: list[str]) -> list[_Block]:
    if pngs is not None and name in pngs.errors:
        return [_Para(f"The figure {name} could not be rendered: {pngs.errors[name]}")]
    if name in names:
        return [_Figure(name, FIGURE_CAPTIONS[name])]
    return [_Para("No data for this figure in the results.")]


def _per_class_blocks(results: Mapping[str, Any], pngs: plots.PlotSet | None, names: list[str]) -> list[_Block]:
    out: list[_Block] = [_Heading(2, "Per-class test accuracy"), *_figure_blocks(plots.PER_CLASS_FILE, pngs, names)]
    classes = plots.class_names(results)
    series = plots.per_class_series(results)
    if "fusion" in series:
        acc = series["fusion"]
        ok = [i for i in np.argsort(np.nan_to_num(acc, nan=2.0), kind="stable") if np.isfinite(acc[i])]
        k = min(5, len(ok) // 2)
        worst = ", ".join(f"{classes[i]} ({100 * acc[i]:.1f} %)" for i in ok[:k])
        best = ", ".join(f"{classes[i]} ({100 * acc[i]:.1f} %)" for i in reversed(ok[-k:]))
        if k:
            out.append(_Para(f"Lowest fusion accuracy: {worst}. Highest: {best}."))
    return out


def _confusion_blocks(results: Mapping[str, Any], pngs: plots.PlotSet | None, names: list[str]) -> list[_Block]:
    out: list[_Block] = [_Heading(2, "Confusion matrix (fusion)"), *_figure_blocks(plots.CONFUSION_FILE, pngs, names)]
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
        out.append(_Para("Most frequent confusions:"))
        out.append(_Table(["True class", "Predicted as", "Videos", "% of true class"],
                          [[classes[i], classes[j], f"{int(off[i, j]):,}", f"{100 * off[i, j] / rows_sum[i]:.1f}"]
                           for i, j in pairs], [False, False, True, True]))
    return out


def _curve_blocks(results: Mapping[str, Any], pngs: plots.PlotSet | None, names: list[str]) -> list[_Block]:
    out: list[_Block] = [_Heading(2, "Training curves"), *_figure_blocks(plots.CURVES_FILE, pngs, names)]
    entries = plots.curve_entries(results)
    if not entries:
        return out
    rows = []
    for _, title, curve in entries:
        loss = [v for v in (plots.finite(x) for x in curve.get("train_loss") or []) if v is not None]
        val = curve.get("val_top1") or []
        be = plots.best_epoch(curve)
        n_epochs = max(len(curve.get("train_loss") or []), len(val))
        rows.append([title, f"{n_epochs}", DASH if be is None else f"{be + 1}",
                     _pct(val[be]) if be is not None and be < len(val) else DASH,
                     f"{loss[-1]:.4f}" if loss else DASH])
    out.append(_Table(["Model", "Epochs run", "Best epoch (1-based)", "Best val top-1 %", "Final train loss"],
                      rows, [False, True, True, True, True]))
    out.append(_Para("The best epoch (highest validation top-1) is the checkpoint evaluated on the test set.",
                     note=True))
    return out


def _provenance_blocks(results: Mapping[str, Any]) -> list[_Block]:
    ds = _map(results.get("dataset"))
    clip = _map(results.get("clip"))
    prov = _map(results.get("provenance"))
    classes = plots.class_names(results)
    out: list[_Block] = [_Heading(2, "Provenance"), _Heading(3, "Dataset")]
    out.append(_KeyValues([
        ("URL", Code(str(ds["url"])) if ds.get("url") else DASH),
        ("Split", _text(ds.get("split_name"))),
        ("Validation protocol", _text(ds.get("val_protocol"))),
        ("Classes", f"{len(classes)}: {', '.join(classes)}" if 0 < len(classes) <= 20
         else f"{len(classes)} (listed in the per-class table below)" if classes else DASH),
    ]))
    out.append(_Table(["Total", "OK", "Failed", "Train", "Val", "Test"],
                      [[_int(ds.get(k)) for k in ("n_total", "n_ok", "n_failed", "n_train", "n_val", "n_test")]],
                      [True] * 6))
    random = clip.get("random_init")
    out += [_Heading(3, "Run"), _KeyValues([
        ("CLIP model", _text(clip.get("model"))),
        ("CLIP weights", Code(str(clip["weights_id"])) if clip.get("weights_id") else DASH),
        ("CLIP random init", "YES — random, untrained weights" if random is True
         else "no (pretrained)" if random is False else DASH),
        ("Device", _text(prov.get("device"))),
        ("Created at", _text(prov.get("created_at"))),
        *([("Command", Code(str(prov["command"])))] if prov.get("command") else []),
        *([("Dataset settings hash", Code(str(prov["dataset_settings_hash"])))]
          if prov.get("dataset_settings_hash") else []),
    ])]
    seeds = _map(prov.get("seeds"))
    if seeds:
        out += [_Heading(3, "Seeds"), _Table(["Seed", "Value"], [[str(k), _text(v)] for k, v in seeds.items()],
                                             [False, True])]
    versions = _map(prov.get("versions"))
    if versions:
        out += [_Heading(3, "Versions"), _Table(["Package", "Version"],
                                                [[str(k), _text(v)] for k, v in versions.items()], [False, False])]
    times = _map(prov.get("time_per_stage_s"))
    if times:
        vals = {str(k): plots.finite(v) for k, v in times.items()}
        total = sum(v for v in vals.values() if v is not None)
        rows = [[k, _seconds(v), f"{100 * v / total:.1f}" if v is not None and total > 0 else DASH]
                for k, v in vals.items()]
        rows.append(["total", _seconds(total), "100.0" if total > 0 else DASH])
        out += [_Heading(3, "Time per stage"), _Table(["Stage", "Wall time", "% of total"], rows,
                                                      [False, True, True])]
    return out


def _per_class_appendix(results: Mapping[str, Any]) -> list[_Block]:
    classes = plots.class_names(results)
    series = plots.per_class_series(results)
    if not classes or not series:
        return []
    cm = plots.confusion_matrix(results)
    support = cm.sum(axis=1) if cm is not None and cm.shape[0] == len(classes) else None
    cols = [(k, h) for k, h in PER_CLASS_COLUMNS if k in series]
    rows = [[str(i + 1), c, DASH if support is None else f"{int(support[i]):,}",
             *[_pct(series[k][i]) for k, _ in cols]] for i, c in enumerate(classes)]
    table = _Table(["#", "Class", "Test videos", *[h for _, h in cols]], rows, [True, False, True, *[True] * len(cols)])
    return [_Heading(2, "Appendix: per-class table"),
            _Details(f"Per-class test accuracy, all {len(classes)} classes (dataset order)", [table])]


def _report_blocks(results: Mapping[str, Any], pngs: plots.PlotSet | None, names: list[str]) -> list[_Block]:
    blocks: list[_Block] = [_Heading(1, _text(results.get("title") or DEFAULT_TITLE))]
    if _is_random(results):
        blocks.append(_Warning(RANDOM_WARNING))
    blocks.append(_context_line(results))
    blocks += [_Heading(2, "Headline results (test set)"), _headline_table(results),
               _Para(_paper_note(results)), _Para(_comparability(results))]
    stats = _statistics_note(results)
    if stats:
        blocks.append(_Para(stats, note=True))
    missing = _mv_missing_note(results)
    if missing:
        blocks.append(missing)
    blocks += _calibration_blocks(results, pngs, names)
    blocks += _model_blocks(results)
    blocks += _per_class_blocks(results, pngs, names)
    blocks += _confusion_blocks(results, pngs, names)
    blocks += _curve_blocks(results, pngs, names)
    blocks += _provenance_blocks(results)
    blocks += _per_class_appendix(results)
    return blocks


def _summary_blocks(results: Mapping[str, Any]) -> list[_Block]:
    blocks: list[_Block] = [_Heading(2, _text(results.get("title") or DEFAULT_TITLE))]
    if _is_random(results):
        blocks.append(_Warning(RANDOM_WARNING))
    blocks += [_context_line(results), _headline_table(results), _Para(_paper_note(results)),
               _Para(_comparability(results))]
    return blocks


# ----------------------------------------------------------------------------------------------------- Markdown

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#])")


def _md(text: str) -> str:
    """Plain text as Markdown inline text: HTML-significant characters as entities, Markdown syntax backslashed."""
    t = " ".join(str(text).splitlines())
    t = t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", t)


def _md_code(text: str) -> str:
    t = " ".join(str(text).splitlines())
    run = max((len(m) for m in re.findall(r"`+", t)), default=0)
    fence = "`" * (run + 1)
    pad = " " if t.startswith("`") or t.endswith("`") else ""
    return f"{fence}{pad}{t}{pad}{fence}"


def _md_value(v: str | Code) -> str:
    return _md_code(v.text) if isinstance(v, Code) else _md(v)


def _md_blocks(blocks: list[_Block], image_dir_rel: str | None) -> list[str]:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, _Heading):
            out.append(f"{'#' * b.level} {_md(b.text)}")
        elif isinstance(b, _Warning):
            out.append(f"> **{_md(b.text)}**")
        elif isinstance(b, _Para):
            out.append(f"*{_md(b.text)}*" if b.note else _md(b.text))
        elif isinstance(b, _Table):
            lines = ["| " + " | ".join(_md(h) for h in b.headers) + " |",
                     "|" + "|".join("---:" if num else "---" for num in b.numeric) + "|"]
            lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in b.rows]
            out.append("\n".join(lines))
        elif isinstance(b, _Figure):
            if image_dir_rel is not None:
                rel = f"{image_dir_rel.rstrip('/')}/{b.name}" if image_dir_rel.strip("/") else b.name
                out.append(f"![{_md(b.caption)}]({quote(rel)})")
        elif isinstance(b, _KeyValues):
            out.append("\n".join(f"- **{_md(k)}:** {_md_value(v)}" for k, v in b.items))
        elif isinstance(b, _Details):
            inner = "\n\n".join(_md_blocks(b.blocks, image_dir_rel))
            out.append(f"<details>\n<summary>{html.escape(b.summary)}</summary>\n\n{inner}\n\n</details>")
    return out


def _markdown(blocks: list[_Block], image_dir_rel: str | None) -> str:
    return "\n\n".join(_md_blocks(blocks, image_dir_rel)) + "\n"


def render_markdown(results: dict, image_dir_rel: str | None = "plots") -> str:
    """The full report as Markdown. Figures are referenced as ``{image_dir_rel}/<name>.png`` (the files
    ``write_report`` writes); with ``image_dir_rel=None`` they are left out."""
    names = plots.available_plots(results)
    return _markdown(_report_blocks(results, None, names), image_dir_rel)


def summary_markdown(results: dict) -> str:
    """A short Markdown summary (headline table, paper note, random-weights warning if any), e.g. for a Prefect
    artifact."""
    return _markdown(_summary_blocks(results), None)


# ----------------------------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1b1b1b;
background:#fff;margin:0;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:1.5rem 2rem 3rem}
h1{font-size:1.8rem;margin:.2rem 0 1rem}h2{font-size:1.35rem;margin-top:2.2rem;border-bottom:1px solid #ddd;
padding-bottom:.2rem}h3{font-size:1.05rem;margin-top:1.4rem}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.92rem}
th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f2f4f7}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafbfc}
.warn{border:4px solid #c00000;background:#fff0f0;color:#a00000;font-size:1.45rem;font-weight:bold;
padding:1rem 1.2rem;margin:1rem 0 1.5rem;border-radius:4px}
.note{color:#555;font-size:.88rem}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.88rem}
code{background:#f3f3f3;padding:.05rem .3rem;border-radius:3px;word-break:break-all}
dl{display:grid;grid-template-columns:max-content auto;gap:.25rem 1rem}dt{font-weight:600}dd{margin:0}
details{margin:.5rem 0}summary{cursor:pointer;font-weight:600}
footer{margin-top:3rem;color:#888;font-size:.8rem}
"""


def _h(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_value(v: str | Code) -> str:
    return f"<code>{_h(v.text)}</code>" if isinstance(v, Code) else _h(v)


def _html_blocks(blocks: list[_Block], pngs: plots.PlotSet) -> list[str]:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, _Heading):
            out.append(f"<h{b.level}>{_h(b.text)}</h{b.level}>")
        elif isinstance(b, _Warning):
            out.append(f'<div class="warn" role="alert">{_h(b.text)}</div>')
        elif isinstance(b, _Para):
            out.append(f'<p class="note">{_h(b.text)}</p>' if b.note else f"<p>{_h(b.text)}</p>")
        elif isinstance(b, _Table):
            def cell(tag: str, text: str, num: bool) -> str:
                return f'<{tag} class="num">{_h(text)}</{tag}>' if num else f"<{tag}>{_h(text)}</{tag}>"

            head = "".join(cell("th", h, n) for h, n in zip(b.headers, b.numeric))
            body = "\n".join("<tr>" + "".join(cell("td", c, n) for c, n in zip(row, b.numeric)) + "</tr>"
                             for row in b.rows)
            out.append(f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>")
        elif isinstance(b, _Figure):
            png = pngs.png.get(b.name)
            if png is not None:
                data = base64.b64encode(png).decode("ascii")
                out.append(f'<figure><img alt="{_h(b.caption)}" src="data:image/png;base64,{data}">'
                           f"<figcaption>{_h(b.caption)}</figcaption></figure>")
        elif isinstance(b, _KeyValues):
            items = "".join(f"<dt>{_h(k)}</dt><dd>{_html_value(v)}</dd>" for k, v in b.items)
            out.append(f"<dl>{items}</dl>")
        elif isinstance(b, _Details):
            inner = "\n".join(_html_blocks(b.blocks, pngs))
            out.append(f"<details><summary>{_h(b.summary)}</summary>\n{inner}\n</details>")
    return out


def _html(results: Mapping[str, Any], pngs: plots.PlotSet) -> str:
    blocks = _report_blocks(results, pngs, list(pngs.png))
    title = _h(_text(results.get("title") or DEFAULT_TITLE))
    body = "\n".join(_html_blocks(blocks, pngs))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n{body}\n"
            "<footer>Generated by moclip.report.render. Self-contained: figures are embedded PNGs.</footer>\n"
            "</main>\n</body>\n</html>\n")


def render_html(results: dict) -> str:
    """The full report as one self-contained HTML page: inline CSS, figures as base64 PNG data URIs, no scripts."""
    return _html(results, plots.render_plots(results))


# ----------------------------------------------------------------------------------------------------- files


def _jsonable(x: Any) -> Any:
    """A strict-JSON copy: numpy scalars/arrays as Python values, non-finite floats as null, paths as strings."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if x is None or isinstance(x, (str, int, bool)):
        return x
    if isinstance(x, Path):
        return str(x)
    return str(x)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(results: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html``, ``plots/*.png`` and ``results.json`` into ``out_dir`` (created if
    needed), each file atomically (temp file + ``os.replace``). Figures from an earlier report that this results dict
    has no data for are removed. Returns (markdown path, HTML path)."""
    out = Path(out_dir)
    plot_dir = out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    pngs = plots.render_plots(results)
    for name in plots.PLOT_FILES:
        if name in pngs.png:
            _atomic_write(plot_dir / name, pngs.png[name])
        else:
            (plot_dir / name).unlink(missing_ok=True)
    blocks = _report_blocks(results, pngs, list(pngs.png))
    _atomic_write(out / "results.json",
                  (json.dumps(_jsonable(results), indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode())
    md_path, html_path = out / "report.md", out / "report.html"
    _atomic_write(md_path, _markdown(blocks, "plots").encode())
    _atomic_write(html_path, _html(results, pngs).encode())
    return md_path, html_path
