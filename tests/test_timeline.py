"""Timelines of labelled long videos: real segment and window tables as the label run writes them, real PNGs decoded
with PIL, real files in tmp_path; no mocks."""

from __future__ import annotations

import io
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from moclip.report.timeline import (
    PAGE_FILE,
    TIMELINE_DIR,
    class_colour,
    file_name,
    pick_videos,
    timeline_markdown,
    timeline_png,
    write_timelines,
)

CLASSES = ["MoveLeft", "MoveRight", "ZoomIn", "ZoomOut", "Static", "Pan$Left$", "Tilt_Up", "<b>Evil|Class</b>"]


def segments_of(video_id: str, spans: list[tuple[float, float, str | None, float]], path: str | None = None):
    return pd.DataFrame([{"video_id": video_id, "path": path or f"/archive/{video_id}.mp4", "start_s": float(a),
                          "end_s": float(b), "label": lab, "score": sc} for a, b, lab, sc in spans])


def windows_of(segments: pd.DataFrame, window_s: float = 4.0, seed: int = 0) -> pd.DataFrame:
    """Half-overlapping windows over each video of ``segments``, top-1 = the segment label at the window centre."""
    rng = np.random.default_rng(seed)
    rows = []
    for vid, seg in segments.groupby("video_id", sort=True):
        duration = seg["end_s"].max()
        for i, start in enumerate(np.arange(0.0, duration, window_s / 2)):
            end = min(duration, start + window_s)
            at = seg[(seg["start_s"] <= (start + end) / 2) & (seg["end_s"] > (start + end) / 2)]
            lab = at["label"].iloc[0] if len(at) and at["label"].iloc[0] is not None else CLASSES[0]
            p = float(rng.uniform(0.2, 1.0))
            rows.append({"video_id": vid, "path": seg["path"].iloc[0], "window_index": i, "start_s": float(start),
                         "end_s": float(end), "labels": [lab, CLASSES[1]], "probs": [p, 1 - p], "top1": lab,
                         "top1_prob": p})
    return pd.DataFrame(rows)


def random_video(video_id: str, duration: float, seed: int, mean_s: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    spans, t = [], 0.0
    while t < duration:
        d = float(rng.uniform(0.3, 1.7) * mean_s)
        lab = None if rng.random() < 0.15 else CLASSES[int(rng.integers(len(CLASSES)))]
        spans.append((t, min(duration, t + d), lab, float(rng.uniform(0.4, 1.0))))
        t += d
    return segments_of(video_id, spans)


def decode(png: bytes) -> np.ndarray:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGB"))


def has_colour(img: np.ndarray, rgb: tuple[float, float, float], min_pixels: int = 200) -> bool:
    target = np.round(np.array(rgb) * 255)
    return int((np.abs(img.astype(int) - target).max(axis=2) <= 2).sum()) >= min_pixels


SHORT = segments_of("short", [(0, 12, "MoveLeft", 0.93), (12, 20, None, 0.31), (20, 41, "ZoomIn", 0.88)])


@pytest.mark.parametrize("with_windows", [True, False])
def test_png_decodes_wide_and_short_with_the_class_colours(with_windows: bool) -> None:
    img = decode(timeline_png(SHORT, windows_of(SHORT) if with_windows else None, CLASSES, title="short.mp4"))
    assert img.shape == (180, 1000, 3)  # 10 x 1.8 inches at 100 dpi
    assert has_colour(img, class_colour("MoveLeft", CLASSES)) and has_colour(img, class_colour("ZoomIn", CLASSES))
    assert not has_colour(img, class_colour("ZoomOut", CLASSES))  # absent class: neither span nor legend entry


def test_same_input_gives_identical_bytes_without_software_or_time() -> None:
    seg = random_video("v", 900, seed=3, mean_s=40)
    win = windows_of(seg, 8.0)
    a, b = timeline_png(seg, win, CLASSES, "v.mp4"), timeline_png(seg.copy(), win.copy(), list(CLASSES), "v.mp4")
    assert a == b
    assert b"Software" not in a and b"matplotlib" not in a.lower() and b"tIME" not in a


def test_class_colours_are_fixed_distinct_and_never_grey() -> None:
    cols = [class_colour(c, CLASSES) for c in CLASSES]
    assert len(set(cols)) == len(CLASSES)
    assert all(not (r == g == b) for r, g, b in cols)
    assert class_colour("ZoomIn", CLASSES) == class_colour("ZoomIn", list(CLASSES))
    assert class_colour("not a class", CLASSES) == class_colour("not a class", CLASSES)
    many = [f"c{i:03d}" for i in range(101)]
    assert len({class_colour(c, many) for c in many[:54]}) == 54  # then the palette repeats


def test_no_confident_label_segments() -> None:
    nan_label = SHORT.assign(label=["MoveLeft", np.nan, "ZoomIn"])  # None read back from parquet may be NaN
    for seg in (SHORT, nan_label, SHORT.assign(label=[None, None, None]), SHORT.assign(label=["MoveLeft", "", " "])):
        img = decode(timeline_png(seg, windows_of(SHORT), CLASSES))
        assert img.shape == (180, 1000, 3)
    assert timeline_png(nan_label, None, CLASSES) == timeline_png(SHORT, None, CLASSES)
    assert not has_colour(decode(timeline_png(SHORT.assign(label=[None] * 3), None, CLASSES)),
                          class_colour("MoveLeft", CLASSES))


@pytest.mark.parametrize(("duration", "mean_s"), [(10.0, 2.0), (7200.0, 90.0), (7200.0, 6.0)])
def test_two_hour_and_ten_second_videos_render(duration: float, mean_s: float) -> None:
    seg = random_video("v", duration, seed=1, mean_s=mean_s)
    win = windows_of(seg, 8.0 if duration > 60 else 2.0)
    img = decode(timeline_png(seg, win, CLASSES, title="a long title " * 30))
    assert img.shape == (180, 1000, 3)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20  # something was drawn


def test_empty_and_odd_tables_render() -> None:
    empty = SHORT.iloc[:0]
    assert decode(timeline_png(empty, None, CLASSES)).shape == (180, 1000, 3)
    assert decode(timeline_png(empty, windows_of(SHORT), CLASSES)).shape == (180, 1000, 3)
    odd = segments_of("o", [(0, 5, "Pan$Left$", 0.5), (5, 5, "ZoomIn", 0.5), (5, float("nan"), "Tilt_Up", 0.5),
                            (5, 30, "not a trained class", float("nan"))])
    assert decode(timeline_png(odd, None, [])).shape == (180, 1000, 3)


def test_windows_of_other_videos_are_left_out() -> None:
    other = segments_of("other", [(0, 3600, "Static", 0.9)])
    both = pd.concat([windows_of(SHORT), windows_of(other)])
    assert timeline_png(SHORT, both, CLASSES) == timeline_png(SHORT, windows_of(SHORT), CLASSES)


def corpus() -> pd.DataFrame:
    return pd.concat([
        segments_of("long", [(0, 7200, "Static", 0.9)]),
        segments_of("varied", [(i * 10, i * 10 + 10, CLASSES[i % 6], 0.8) for i in range(12)]),
        segments_of("busy", [(i * 5, i * 5 + 5, CLASSES[i % 2], 0.8) for i in range(30)]),
        segments_of("mid", [(0, 3000, "Tilt_Up", 0.7), (3000, 3600, None, 0.2)]),
        *[segments_of(f"plain{i}", [(0, 30 + i, "ZoomOut", 0.6)]) for i in range(6)],
    ], ignore_index=True)


def test_pick_videos_longest_and_most_varied_in_turn() -> None:
    seg = corpus()
    assert pick_videos(seg, 1) == ["long"]
    assert pick_videos(seg, 2) == ["long", "varied"]  # 6 distinct labels beats 30 segments of 2
    assert pick_videos(seg, 4) == ["long", "varied", "mid", "busy"]
    everything = pick_videos(seg, 100)
    assert len(everything) == len(set(everything)) == seg["video_id"].nunique()
    assert pick_videos(seg, 0) == [] and pick_videos(seg.iloc[:0], 5) == []
    shuffled = seg.sample(frac=1.0, random_state=7)
    assert pick_videos(shuffled, 5) == pick_videos(seg, 5)


def test_pick_videos_ties_and_numeric_ids() -> None:
    seg = pd.concat([segments_of(vid, [(0, 10, "Static", 0.5)]) for vid in ("b", "a", "c")])
    assert pick_videos(seg, 3) == ["a", "b", "c"]
    numeric = seg.assign(video_id=[3, 1, 2])
    assert pick_videos(numeric, 2) == ["1", "2"]


ODD_IDS = ["a/b/c.mp4", "a_b_c.mp4", "vidéo ünïcode.mp4", "with space.mp4", "../../etc/passwd", "A", "a", "",
           ".hidden", "x" * 300, "<script>alert(1)</script>", "日本語の動画"]


def test_file_names_are_safe_and_unique() -> None:
    names = [file_name(v) for v in ODD_IDS]
    assert len(set(names)) == len(names) and len({n.lower() for n in names}) == len(names)
    for n in names:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", n) and len(n) <= 64
    assert file_name("a/b/c.mp4") == file_name("a/b/c.mp4")


def test_write_timelines_writes_page_and_pictures(tmp_path: Path) -> None:
    seg = corpus()
    page_path = write_timelines(seg, windows_of(seg, 60.0), CLASSES, tmp_path, n=5)
    assert page_path == tmp_path / PAGE_FILE
    page = page_path.read_text(encoding="utf-8")
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == 5
    for src in srcs:
        assert src.startswith(f"{TIMELINE_DIR}/") and (tmp_path / unquote(src)).is_file()
        assert decode((tmp_path / unquote(src)).read_bytes()).shape == (180, 1000, 3)
    assert sorted(p.name for p in (tmp_path / TIMELINE_DIR).iterdir()) == sorted(Path(s).name for s in srcs)
    assert "/archive/long.mp4" in page and "2:00:00" in page and "Static" in page and "—" in page
    assert "<script" not in page and "data:image" not in page
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary file left behind

    write_timelines(seg, None, CLASSES, tmp_path, n=2)  # fewer videos: the other pictures go, a user's file stays
    (tmp_path / TIMELINE_DIR / "mine.png").write_bytes(b"not ours")
    write_timelines(seg, None, CLASSES, tmp_path, n=2)
    left = sorted(p.name for p in (tmp_path / TIMELINE_DIR).iterdir())
    assert left == sorted([file_name("long") + ".png", file_name("varied") + ".png", "mine.png"])


def test_write_timelines_odd_video_ids(tmp_path: Path) -> None:
    seg = pd.concat([segments_of(vid, [(0, 10 + i, CLASSES[i % len(CLASSES)], 0.9), (10 + i, 20 + i, None, 0.1)],
                                 path=f"/mnt/{vid}") for i, vid in enumerate(ODD_IDS)], ignore_index=True)
    page = write_timelines(seg, windows_of(seg), CLASSES, tmp_path / "out", n=len(ODD_IDS)).read_text("utf-8")
    srcs = [unquote(s) for s in re.findall(r'<img src="([^"]+)"', page)]
    assert len(srcs) == len(set(srcs)) == len(ODD_IDS)
    files = sorted((tmp_path / "out" / TIMELINE_DIR).iterdir())
    assert len(files) == len(ODD_IDS) and all((tmp_path / "out" / s).is_file() for s in srcs)
    assert all(f.parent == tmp_path / "out" / TIMELINE_DIR for f in tmp_path.rglob("*.png"))  # none escaped
    assert "&lt;script&gt;" in page and "<script>" not in page and "vidéo ünïcode.mp4" in page


def test_timeline_markdown() -> None:
    seg = pd.concat([SHORT, segments_of("evil", [(0, 90, "<b>Evil|Class</b>", 0.5), (90, 4000, "Tilt_Up", 0.75)]),
                     random_video("many", 600, seed=2, mean_s=10)], ignore_index=True)
    text = timeline_markdown(seg, n=5)
    assert text.startswith("## Timelines\n") and text.endswith("\n")
    assert "`/archive/short.mp4`" in text
    assert "0–12 s MoveLeft (0.93) · 12–20 s — · 20–41 s ZoomIn (0.88)" in text
    assert "0:00:00–0:01:30 &lt;b&gt;Evil\\|Class&lt;/b&gt; (0.50) · 0:01:30–1:06:40 Tilt\\_Up (0.75)" in text
    assert re.search(r"… \+\d+ more segments", text)
    assert timeline_markdown(seg, n=1).count("\n- ") == 1
    assert "No segments" in timeline_markdown(SHORT.iloc[:0])


@pytest.mark.parametrize("where", ["local", "memory"])
def test_the_label_runs_timeline_page_from_its_parquet_folders(tmp_path, where):
    """``write_timeline_page`` reads OUT/segments.parquet and the picked videos' windows, writes the page and its
    pictures into OUT (a local folder or an object store), and gives the label summary text timelines with the
    first pictures inline."""
    import base64
    import uuid

    import pyarrow as pa

    from moclip.dataset import Store
    from moclip.label.timeline import SEGMENTS_DIR, WINDOWS_DIR
    from moclip.report.timeline_page import write_timeline_page

    url = str(tmp_path / "out") if where == "local" else f"memory://timelines-{uuid.uuid4().hex}"
    out = Store(url)
    seg = pd.concat([segments_of("a", [(0, 12, "MoveLeft", 0.9), (12, 20, None, 0.3), (20, 41, "ZoomIn", 0.8)]),
                     segments_of("b", [(0, 8, "ZoomOut", 0.7)])])
    for name, table in ((SEGMENTS_DIR, seg), (WINDOWS_DIR, windows_of(seg))):
        for i, (_, part) in enumerate(table.groupby("video_id")):
            out.write_table(f"{name}/part-{i}.parquet", pa.Table.from_pandas(part, preserve_index=False))
    page, md = write_timeline_page(out, CLASSES)
    assert out.exists(PAGE_FILE) and page.endswith(PAGE_FILE)
    html = out.fs.cat_file(out.path(PAGE_FILE)).decode()
    pictures = re.findall(rf'src="({TIMELINE_DIR}/[^"]+\.png)"', html)
    assert len(pictures) == 2 and all(out.exists(unquote(p)) for p in pictures)
    assert "MoveLeft" in md and "ZoomIn" in md
    inline = re.findall(r"\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", md)
    assert len(inline) == 2
    assert Image.open(io.BytesIO(base64.b64decode(inline[0]))).size == (1000, 180)


def test_a_filmstrip_shows_a_frame_of_each_segment_linked_to_its_range(tmp_path: Path) -> None:
    from helpers.videos import make_untrimmed

    from moclip.report.contact_sheet import THUMB_DIR

    video = make_untrimmed(tmp_path / "long.mp4", [(3, 0, 50), (0, 0, 50), (-3, 0, 50)], width=320, height=240)
    seg = pd.concat([segments_of("long", [(0, 2, "right", 0.9), (2, 4, None, 0.2), (4, 6, "left", 0.8)],
                                 path=str(video)),
                     segments_of("gone", [(0, 5, "right", 0.9)], path=str(tmp_path / "moved-away.mp4"))])
    page = write_timelines(seg, None, ["right", "left"], tmp_path / "out", n=2).read_text("utf-8")
    links = re.findall(r'<a class="frame" href="([^"]+)">', page)
    assert links[:3] == [f"{video.as_uri()}#t={a:.2f},{b:.2f}" for a, b in ((0, 2), (2, 4), (4, 6))]
    thumbs = sorted((tmp_path / "out" / TIMELINE_DIR / THUMB_DIR).glob("*.jpg"))
    assert len(thumbs) == 3 and all(Image.open(t).size[1] == 90 for t in thumbs)
    assert "no picture" in page  # the video that is not there any more: a grey tile, not a broken page
    write_timelines(seg[seg["video_id"] == "gone"], None, ["right", "left"], tmp_path / "out", n=2)
    assert not list((tmp_path / "out" / TIMELINE_DIR / THUMB_DIR).glob("*.jpg"))  # frames of pages gone go too


def test_one_bad_moment_does_not_cost_the_others_their_pictures(tmp_path: Path) -> None:
    from helpers.videos import make_video

    from moclip.report.contact_sheet import write_thumbnails

    video = str(make_video(tmp_path / "a.mp4", n_frames=25))  # 1 s
    names, errors = write_thumbnails([(video, 0.5), (video, 99.0)], tmp_path / "thumbs")
    assert names[(video, 0.5)] and (tmp_path / "thumbs" / names[(video, 0.5)]).is_file()
    assert names[(video, 99.0)] is None and "ends before it" in errors[(video, 99.0)]
