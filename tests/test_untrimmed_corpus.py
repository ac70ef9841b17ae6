"""The untrimmed demo corpus: real files, decoded with PyAV (no mocks)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from moclip.corpus import load_unlabeled
from moclip.demo.untrimmed import (
    ACTION_CLASSES,
    CLIP_INDEX_BASE,
    CSV_NAME,
    STAMP_NAME,
    Segment,
    _frames,
    frame_labels,
    generate_untrimmed_corpus,
    plan_untrimmed_corpus,
    read_ground_truth,
    source_clips,
)

REPO = Path(__file__).resolve().parents[1]
VIDEOS, DURATION = 2, 20.0  # 2 x 500 frames: ~2 s to generate
DECODER_NAME = {"libx264": "h264", "mpeg4": "mpeg4"}
PICT = {1: "I", 2: "P", 3: "B"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("untrimmed") / "corpus"
    return out, generate_untrimmed_corpus(out, seed=0, videos=VIDEOS, duration_s=DURATION)


def _decode(path: Path) -> tuple[str, str, list[np.ndarray], list[int]]:
    """(decoder name, pict types, RGB frames, per frame the number of blocks with a non-zero motion vector)."""
    frames, moving, types = [], [], ""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_count = 1
        s.codec_context.options = {"flags2": "+export_mvs"}
        for f in c.decode(s):
            frames.append(f.to_ndarray(format="rgb24"))
            types += PICT.get(int(f.pict_type), "?")
            sd = f.side_data.get("MOTION_VECTORS")
            mv = sd.to_ndarray() if sd is not None else None
            moving.append(0 if mv is None else int(np.sum((mv["motion_x"] != 0) | (mv["motion_y"] != 0))))
        name = s.codec_context.name
    return name, types, frames, moving


def _span(seg: Segment) -> tuple[int, int]:
    return round(seg.start_s * 25), round(seg.end_s * 25)


def test_plan() -> None:
    specs = plan_untrimmed_corpus()
    assert len(specs) == 6 and all(s.n_frames == 1500 for s in specs)
    assert len({(s.variant.codec, s.variant.bframes > 0) for s in specs}) == 4
    assert {s.variant.container for s in specs if s.variant.codec == "libx264"} == {"mp4"}
    assert {s.variant.container for s in specs if s.variant.codec == "mpeg4"} == {"avi"}
    assert {p.label for s in specs for p in s.parts} == {*ACTION_CLASSES, None}
    clips = [p.clip for s in specs for p in s.parts if p.label is not None]
    assert len(set(clips)) == len(clips) and min(clips) >= CLIP_INDEX_BASE  # never a trimmed corpus's clip
    for s in specs:
        labels = [p.label for p in s.parts]
        assert None in labels and len({x for x in labels if x}) >= 3
        assert all(not (a is None and b is None) and (a is None or a != b) for a, b in zip(labels, labels[1:]))
        assert all((100 <= p.n_frames <= 250) if p.label else (50 <= p.n_frames <= 200) for p in s.parts)
        # an action plays distinct clips once each (never a loop: no jump back), the last one cut at its end
        for p in (p for p in s.parts if p.label):
            clips = source_clips(s.seed, p)
            assert len({c.index for c in clips}) == len(clips) and {c.label for c in clips} == {p.label}
            assert sum(c.n_frames for c in clips[:-1]) < p.n_frames <= sum(c.n_frames for c in clips)
        segs = s.segments
        assert segs[0].start_s == 0.0 and segs[-1].end_s == s.n_frames / 25
        assert all(a.end_s == b.start_s for a, b in zip(segs, segs[1:]))
    assert plan_untrimmed_corpus(videos=2, duration_s=DURATION) == plan_untrimmed_corpus(seed=0, videos=3,
                                                                                         duration_s=DURATION)[:2]
    assert plan_untrimmed_corpus(seed=1) != specs
    for d in (6.0, 7.3, 11.0, 33.0):  # short videos still hold an action and a still, with exact lengths
        for s in plan_untrimmed_corpus(seed=5, videos=8, duration_s=d):
            assert s.n_frames == round(d * 25) and {p.label is None for p in s.parts} == {True, False}
    with pytest.raises(ValueError):
        plan_untrimmed_corpus(duration_s=5.0)


def test_files_decode_as_planned(corpus: tuple[Path, list[Path]]) -> None:
    out, paths = corpus
    specs = plan_untrimmed_corpus(seed=0, videos=VIDEOS, duration_s=DURATION)
    assert sorted(p.name for p in out.iterdir()) == sorted([*(s.name for s in specs), STAMP_NAME, CSV_NAME])
    assert paths == [out / s.name for s in specs]
    for spec, path in zip(specs, paths):
        name, types, frames, _ = _decode(path)
        assert name == DECODER_NAME[spec.variant.codec]
        assert len(frames) == spec.n_frames == 500 and frames[0].shape == (240, 320, 3)
        assert ("B" in types) == (spec.variant.bframes > 0)
        with av.open(str(path)) as c:
            assert spec.variant.container in c.format.name.split(",")


def test_ground_truth_files(corpus: tuple[Path, list[Path]]) -> None:
    out, paths = corpus
    stamp = json.loads((out / STAMP_NAME).read_text())
    assert (stamp["seed"], stamp["fps"], stamp["n_videos"]) == (0, 25, VIDEOS)
    gt = read_ground_truth(out)
    assert list(gt) == [p.name for p in paths] == [r["file"] for r in stamp["videos"]]
    assert sorted(gt) == list(load_unlabeled(out)["video_id"])  # keys are the unlabeled layout's video ids
    rows = list(csv.DictReader((out / CSV_NAME).open()))
    assert [(r["video"], float(r["start_s"]), float(r["end_s"]), r["label"] or None) for r in rows] == [
        (name, s.start_s, s.end_s, s.label) for name, segs in gt.items() for s in segs]
    for rec in stamp["videos"]:
        segs = gt[rec["file"]]
        assert rec["duration_s"] == rec["n_frames"] / 25 == DURATION
        assert segs[0].start_s == 0.0 and segs[-1].end_s == rec["duration_s"]
        assert all(a.end_s == b.start_s and a.start_s < a.end_s for a, b in zip(segs, segs[1:]))
        assert all(s.start_s == round(s.start_s * 25) / 25 for s in segs)  # exact frame times
        labels = frame_labels(segs, 25, rec["n_frames"])
        assert len(labels) == rec["n_frames"]
        assert [labels[_span(s)[0]] for s in segs] == [s.label for s in segs]
        assert all(set(labels[slice(*_span(s))]) == {s.label} for s in segs)


def test_frame_labels() -> None:
    segs = [Segment(0.0, 0.08, "A"), Segment(0.08, 0.12, None), Segment(0.12, 0.2, "B")]
    assert frame_labels(segs, 25, 5) == ["A", "A", None, "B", "B"]
    assert frame_labels(segs, 25, 7) == ["A", "A", None, "B", "B", None, None]


def test_stills_have_no_motion(corpus: tuple[Path, list[Path]]) -> None:
    out, _ = corpus
    specs = {s.name: s for s in plan_untrimmed_corpus(seed=0, videos=VIDEOS, duration_s=DURATION)}
    for name, segs in read_ground_truth(out).items():
        rendered = list(_frames(specs[name]))
        _, _, frames, moving = _decode(out / name)
        for seg in segs:
            a, b = _span(seg)
            if seg.label is None:
                assert all(np.array_equal(rendered[k], rendered[a]) for k in range(a, b))  # held, pixel for pixel
                diffs = [np.abs(frames[k].astype(int) - frames[k - 1]).mean() for k in range(a + 1, b)]
                assert max(diffs) < 4.0 and np.median(diffs) < 0.5, (name, seg)  # only requantisation noise
                assert np.mean(moving[a + 3:b]) < 0.5, (name, seg)  # first frames may reference the action
            else:
                assert np.mean(moving[a:b]) > 2.0, (name, seg)
                assert not np.array_equal(rendered[a], rendered[a + 10])


def test_deterministic(corpus: tuple[Path, list[Path]], tmp_path: Path) -> None:
    out, paths = corpus
    again = generate_untrimmed_corpus(tmp_path / "again", seed=0, videos=VIDEOS, duration_s=DURATION)
    for name in [p.name for p in paths] + [STAMP_NAME, CSV_NAME]:
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    assert [p.name for p in again] == [p.name for p in paths]
    other = generate_untrimmed_corpus(tmp_path / "seed1", seed=1, videos=1, duration_s=8.0)
    assert other[0].read_bytes() != paths[0].read_bytes()
    assert read_ground_truth(tmp_path / "seed1") != {k: v for k, v in read_ground_truth(out).items()}


def test_rerun_is_a_no_op(corpus: tuple[Path, list[Path]], tmp_path: Path) -> None:
    src, paths = corpus
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    before = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    assert generate_untrimmed_corpus(out, seed=0, videos=VIDEOS, duration_s=DURATION) == [
        out / p.name for p in paths]
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # a damaged video is regenerated, byte-identical
    data = paths[1].read_bytes()
    (out / paths[1].name).write_bytes(data[:1000])
    generate_untrimmed_corpus(out, seed=0, videos=VIDEOS, duration_s=DURATION)
    assert (out / paths[1].name).read_bytes() == data
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"
    # another corpus is not silently replaced; overwrite replaces it and drops the stale video
    with pytest.raises(FileExistsError):
        generate_untrimmed_corpus(out, seed=1, videos=1, duration_s=6.0)
    fresh = generate_untrimmed_corpus(out, seed=1, videos=1, duration_s=6.0, overwrite=True)
    assert sorted(out.iterdir()) == sorted([*fresh, out / STAMP_NAME, out / CSV_NAME])


def test_refuses_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        generate_untrimmed_corpus(tmp_path, videos=1, duration_s=6.0)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    with pytest.raises(FileNotFoundError):
        read_ground_truth(tmp_path)


def test_script(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(REPO / "data" / "make_untrimmed_corpus.py"), str(tmp_path / "u"), "--seed", "2",
           "--videos", "1", "--duration", "6"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    gt = read_ground_truth(tmp_path / "u")
    assert list(gt) == ["untrimmed_000.mp4"] and gt["untrimmed_000.mp4"][-1].end_s == 6.0
    again = subprocess.run(cmd[:3], capture_output=True, text=True, env=env, timeout=120)  # another seed's folder
    assert again.returncode == 2 and "overwrite" in again.stderr
