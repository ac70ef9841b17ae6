"""The synthetic demo corpus: real files, decoded with PyAV (no mocks)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from moclip.demo import DEMO_CLASSES, STAMP_NAME, generate_demo_corpus, plan_demo_corpus, read_stamp
from moclip.demo.synth import ENCODE_VARIANTS, encode_clip, render_clip

REPO = Path(__file__).resolve().parents[1]
CPC = 2  # clips per class in these tests: 20 clips, ~2 s to generate
PICT = {0: "?", 1: "I", 2: "P", 3: "B", 4: "S", 5: "SI", 6: "SP", 7: "BI"}
DECODER_NAME = {"libx264": "h264", "mpeg4": "mpeg4"}
FORMAT_NAME = {"mp4": "mp4", "avi": "avi"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("demo") / "corpus"
    return out, generate_demo_corpus(out, seed=0, clips_per_class=CPC)


def _letter(pict_type: object) -> str:
    name = getattr(pict_type, "name", None)
    return name if name is not None else PICT.get(int(pict_type), "?")


def _decode(path: Path) -> dict:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_count = 1
        cc = s.codec_context
        info = {"codec": cc.name, "width": cc.width, "height": cc.height, "pix_fmt": cc.pix_fmt,
                "format": c.format.name, "rate": s.average_rate or s.guessed_rate,
                "duration": float(c.duration / av.time_base) if c.duration else None}
        info["types"] = "".join(_letter(f.pict_type) for f in c.decode(s))
    return info


def _object_dx(path: Path) -> float:
    """Mean horizontal object motion (px) over the moving blocks of the P-frames (past reference)."""
    means = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_count = 1
        s.codec_context.options = {"flags2": "+export_mvs"}
        for f in c.decode(s):
            sd = f.side_data.get("MOTION_VECTORS")
            if _letter(f.pict_type) != "P" or sd is None:
                continue
            mv = sd.to_ndarray()
            mv = mv[(mv["source"] < 0) & ((mv["motion_x"] != 0) | (mv["motion_y"] != 0))]
            if len(mv):
                # an MV points from the current block to where it came from: object motion is its negation
                means.append(float(np.mean(-mv["motion_x"] / mv["motion_scale"])))
    assert means, f"{path.name}: no non-zero P-frame motion vectors"
    return float(np.mean(means))


def test_layout_and_stamp(corpus: tuple[Path, list[Path]]) -> None:
    out, paths = corpus
    names = [c.name for c in DEMO_CLASSES]
    assert 8 <= len(names) <= 10 and len(set(names)) == len(names)
    assert {c.stream for c in DEMO_CLASSES} == {"motion", "appearance"}
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(names)
    assert len(paths) == len(names) * CPC and all(p.is_file() for p in paths)
    for cls in DEMO_CLASSES:
        files = sorted((out / cls.name).iterdir())
        assert [f.name for f in files] == sorted(p.name for p in paths if p.parent.name == cls.name)
        assert {f.suffix for f in files} == {".mp4", ".avi"}
    stamp = read_stamp(out)
    assert stamp is not None and stamp["seed"] == 0 and stamp["clips_per_class"] == CPC
    assert [out / c["path"] for c in stamp["clips"]] == paths
    assert all(c["bytes"] == (out / c["path"]).stat().st_size for c in stamp["clips"])
    assert not [p for p in out.rglob(".*")], "temporary files left behind"


def test_default_corpus_plan() -> None:
    specs = plan_demo_corpus()
    assert 100 <= len(specs) <= 200
    per_class = {c.name: [s for s in specs if s.label == c.name] for c in DEMO_CLASSES}
    assert {len(v) for v in per_class.values()} == {20}
    # every class gets the same codec / B-frame / container mix, durations and GOPs: no class is told by them
    mixes = {name: Counter(s.variant for s in v) for name, v in per_class.items()}
    assert all(m == mixes["MoveLeft"] for m in mixes.values())
    assert {(v.codec, v.bframes > 0) for v in mixes["MoveLeft"]} == {
        ("libx264", True), ("libx264", False), ("mpeg4", True), ("mpeg4", False)}
    assert {v.container for v in mixes["MoveLeft"]} == {"mp4", "avi"}
    for group in ("motion", "appearance"):
        names = [c.name for c in DEMO_CLASSES if c.stream == group]
        timings = {tuple((s.n_frames, s.gop) for s in per_class[name]) for name in names}
        assert len(timings) == 1
    assert all(50 <= s.n_frames <= 100 and 12 <= s.gop <= 25 for s in specs)
    assert len({s.n_frames for s in specs}) > 5  # durations vary per clip


@pytest.mark.slow
def test_deterministic(corpus: tuple[Path, list[Path]], tmp_path: Path) -> None:
    out, paths = corpus
    again = generate_demo_corpus(tmp_path / "again", seed=0, clips_per_class=CPC)
    assert [p.relative_to(tmp_path / "again") for p in again] == [p.relative_to(out) for p in paths]
    for a, b in zip(paths, again):
        assert a.read_bytes() == b.read_bytes(), f"{a.name} differs between two runs with the same seed"
    assert (out / STAMP_NAME).read_bytes() == (tmp_path / "again" / STAMP_NAME).read_bytes()
    other = generate_demo_corpus(tmp_path / "seed1", seed=1, clips_per_class=1)
    assert other[0].read_bytes() != paths[0].read_bytes()


def test_codecs_bframes_and_geometry(corpus: tuple[Path, list[Path]]) -> None:
    out, _ = corpus
    stamp = read_stamp(out)
    assert stamp is not None
    seen = set()
    for clip in stamp["clips"]:
        info = _decode(out / clip["path"])
        where = clip["path"]
        assert info["codec"] == DECODER_NAME[clip["codec"]], where
        assert FORMAT_NAME[clip["container"]] in info["format"].split(","), where
        assert (info["width"], info["height"], info["pix_fmt"]) == (320, 240, "yuv420p"), where
        assert len(info["types"]) == clip["n_frames"] and 50 <= clip["n_frames"] <= 100, where
        assert info["rate"] == 25, where
        if info["duration"] is not None:
            assert 1.9 <= info["duration"] <= 4.2, where
        assert info["types"][0] == "I" and "P" in info["types"], where
        assert ("B" in info["types"]) == (clip["bframes"] > 0), f"{where}: {info['types']}"
        seen.add((clip["label"], clip["codec"], clip["bframes"] > 0))
    # with 2 clips per class, each class already has both codecs and both B-frame settings
    for cls in DEMO_CLASSES:
        assert {(c, b) for label, c, b in seen if label == cls.name} == {("libx264", True), ("mpeg4", False)}


def test_other_variants_encode_as_intended(tmp_path: Path) -> None:
    """Clip indices 2 and 3 hold the two codec / B-frame combinations a 2-clip corpus lacks."""
    specs = [s for s in plan_demo_corpus(clips_per_class=4) if s.label == "Circle" and s.index in (2, 3)]
    assert {(s.variant.codec, s.variant.bframes > 0) for s in specs} == {("mpeg4", True), ("libx264", False)}
    for spec in specs:
        path = encode_clip(spec, tmp_path / Path(spec.relpath).name)
        info = _decode(path)
        assert info["codec"] == DECODER_NAME[spec.variant.codec]
        assert len(info["types"]) == spec.n_frames
        assert ("B" in info["types"]) == (spec.variant.bframes > 0), info["types"]
    assert len(ENCODE_VARIANTS) == len(set(ENCODE_VARIANTS)) == 8


def test_motion_vectors_have_the_direction_of_the_class(corpus: tuple[Path, list[Path]]) -> None:
    out, _ = corpus
    for i in range(CPC):  # clip 0: H.264 with B-frames, clip 1: MPEG-4 Part 2 without
        right = next((out / "MoveRight").glob(f"MoveRight_{i:03d}.*"))
        left = next((out / "MoveLeft").glob(f"MoveLeft_{i:03d}.*"))
        dx_right, dx_left = _object_dx(right), _object_dx(left)
        assert dx_right > 1.0, (right.name, dx_right)
        assert dx_left < -1.0, (left.name, dx_left)


def test_partner_classes_are_time_reversals() -> None:
    specs = {(s.label, s.index): s for s in plan_demo_corpus(clips_per_class=1)}
    for a, b in (("MoveLeft", "MoveRight"), ("RotateCW", "RotateCCW"), ("ZoomIn", "ZoomOut")):
        fa, fb = list(render_clip(specs[a, 0])), list(render_clip(specs[b, 0]))
        assert len(fa) == len(fb)
        assert all(np.array_equal(x, y) for x, y in zip(fa, fb[::-1])), (a, b)
        assert not np.array_equal(fa[0], fa[-1])
    # appearance classes: the same pattern and trajectory; the colour family (channel order) and shape differ
    circle, square = next(render_clip(specs["Circle", 0])), next(render_clip(specs["Square", 0]))
    assert not np.array_equal(circle, square)
    grey_c, grey_s = circle.astype(float).sum(2), square.astype(float).sum(2)
    assert np.corrcoef(grey_c.ravel(), grey_s.ravel())[0, 1] > 0.8  # same background pattern
    dominant = [np.argmax(f.reshape(-1, 3).mean(0)) for f in (circle, square)]
    assert dominant == [0, 1]  # reddish circle, greenish square


def test_idempotent_rerun_rewrites_nothing(corpus: tuple[Path, list[Path]], tmp_path: Path) -> None:
    src, paths = corpus
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    again = generate_demo_corpus(out, seed=0, clips_per_class=CPC)
    assert again == [out / p.relative_to(src) for p in paths]
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert sorted(p for p in out.rglob("*") if p.is_file()) == files

    # a missing and a truncated clip (same settings) are regenerated, byte-identical; nothing else is touched
    missing, truncated = again[3], again[6]
    data = {p: p.read_bytes() for p in (missing, truncated)}
    missing.unlink()
    truncated.write_bytes(data[truncated][:1000])
    stamp_bytes = (out / STAMP_NAME).read_bytes()
    generate_demo_corpus(out, seed=0, clips_per_class=CPC)
    assert all(p.read_bytes() == d for p, d in data.items())
    assert (out / STAMP_NAME).read_bytes() == stamp_bytes
    untouched = [p for p in files if p not in data and p.name != STAMP_NAME]
    assert {p: p.stat().st_mtime_ns for p in untouched} == {p: before[p] for p in untouched}

    # another seed's corpus is not silently mixed in; overwrite replaces it and drops stale clips
    with pytest.raises(FileExistsError):
        generate_demo_corpus(out, seed=1, clips_per_class=1)
    fresh = generate_demo_corpus(out, seed=1, clips_per_class=1, overwrite=True)
    assert sorted(p for p in out.rglob("*") if p.is_file() and p.name != STAMP_NAME) == sorted(fresh)
    assert json.loads((out / STAMP_NAME).read_text())["seed"] == 1


def test_refuses_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "my_videos").mkdir()
    with pytest.raises(FileExistsError):
        generate_demo_corpus(tmp_path, clips_per_class=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_videos"]


def test_script(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(REPO / "data" / "make_demo_corpus.py"), str(tmp_path / "c"), "--seed", "3",
           "--clips-per-class", "1"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    stamp = read_stamp(tmp_path / "c")
    assert stamp is not None and stamp["seed"] == 3 and len(stamp["clips"]) == len(DEMO_CLASSES)
