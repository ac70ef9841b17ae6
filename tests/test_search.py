"""Search an indexed dataset: by example (random-init CLIP still separates colours), time ranges of windowed videos,
near-duplicates, motion filters, the catalog kept beside the dataset (incremental, read-only on the dataset),
exact and approximate search agreeing, bad input refused with nothing written, and the CLI's contact sheet."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.datasets import index_in_process
from helpers.videos import make_untrimmed, make_video

from moclip.config import WindowConfig
from moclip.params import SearchParams
from moclip.search.catalog import Catalog, SearchError, motion_signature
from moclip.search.query import collapse_duplicates, merge_ranges, parse_like, search_items
from moclip.search.run import check_dataset, search

APPEARANCE = ("Circle", "Square", "Triangle")


def _appearance_corpus(root: Path, per_class: int = 4) -> Path:
    """The demo corpus' appearance classes (shape and colour family differ; the motion is the same)."""
    from moclip.demo.synth import encode_clip, plan_demo_corpus

    for spec in plan_demo_corpus(seed=0, clips_per_class=per_class):
        if spec.label in APPEARANCE:
            (root / spec.relpath).parent.mkdir(parents=True, exist_ok=True)
            encode_clip(spec, root / spec.relpath)
    return root


def _reencode(src: Path, dst: Path, crf: int = 30) -> Path:
    """The same clip re-encoded (another codec setting, same frames and timestamps): a re-upload."""
    from fractions import Fraction

    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        s = inp.streams.video[0]
        o = out.add_stream("libx264", rate=s.average_rate)
        o.width, o.height, o.pix_fmt, o.options = s.codec_context.width, s.codec_context.height, "yuv420p", {
            "crf": str(crf)}
        o.codec_context.time_base = Fraction(1, round(float(s.average_rate)))
        for i, f in enumerate(inp.decode(s)):
            f.pts, f.time_base = i, o.codec_context.time_base
            for p in o.encode(f.reformat(format="yuv420p")):
                out.mux(p)
        for p in o.encode():
            out.mux(p)
    return dst


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "_search" not in p.parts}


@pytest.fixture(scope="module")
def appearance_ds(tmp_path_factory):
    root = _appearance_corpus(tmp_path_factory.mktemp("appearance"))
    (root / "Uploads").mkdir()
    _reencode(root / "Circle" / "Circle_000.mp4", root / "Uploads" / "circle_copy.mp4")
    return root, index_in_process(root, tmp_path_factory.mktemp("appearance_ds"))


def test_query_by_example_finds_the_video_then_its_look_alikes_and_folds_its_copy(appearance_ds):
    root, ds = appearance_ds
    result = search(SearchParams(dataset=ds, like=str(root / "Circle" / "Circle_000.mp4"), top_k=4, device="cpu"))
    hits = result.hits
    assert hits["video_id"].iloc[0] == "Circle/Circle_000.mp4" and hits["score"].iloc[0] > 0.999
    # the re-encoded copy is one hit with it, not a hit of its own
    assert hits["duplicates"].iloc[0] == 1 and hits["duplicate_paths"].iloc[0][0].endswith("circle_copy.mp4")
    assert "Uploads/circle_copy.mp4" not in set(hits["video_id"])
    assert [v.split("/")[0] for v in hits["video_id"]] == ["Circle"] * 4  # then the other circles
    assert (hits["rank"].tolist(), result.exact) == ([1, 2, 3, 4], True)
    everything = search(SearchParams(dataset=ds, like=str(root / "Circle" / "Circle_000.mp4"), top_k=4,
                                     dedup=False, device="cpu")).hits
    assert everything["video_id"].iloc[1] == "Uploads/circle_copy.mp4" and (everything["duplicates"] == 0).all()


def test_the_catalog_is_incremental_and_never_touches_the_dataset(appearance_ds, tmp_path):
    root, ds = appearance_ds
    before = _files(Path(ds))
    catalog = Catalog(ds, check_dataset(ds), tmp_path / "cat")
    first = catalog.sync()
    assert (first.read, first.items, first.approximate) == (1, 13, False)
    again = catalog.sync()
    assert (again.read, again.dropped, again.items) == (0, 0, 13)
    assert _files(Path(ds)) == before  # search wrote nothing of the dataset's
    make_video(root / "Extra" / "new.mp4", dx=2, n_frames=20, seed=9)  # a nightly run brings a new video
    index_in_process(root, Path(ds), shard="part-test-00001.parquet")
    third = catalog.sync()
    assert (third.read, third.dropped, third.items) == (1, 0, 14)
    items, vectors = catalog.load()
    assert len(items) == len(vectors) == 14 and items["key"].is_unique
    assert np.allclose(np.linalg.norm(vectors.astype(np.float32), axis=1), 1, atol=1e-2)
    (Path(ds) / "part-test-00001.parquet").unlink()  # a shard gone: its items leave
    fourth = catalog.sync()
    assert (fourth.dropped, fourth.items) == (1, 13)
    shutil.rmtree(root / "Extra")


def test_exact_and_approximate_search_agree_on_stored_embeddings(appearance_ds, tmp_path):
    root, ds = appearance_ds
    manifest = check_dataset(ds)
    exact = Catalog(ds, manifest, tmp_path / "exact")
    approx = Catalog(ds, manifest, tmp_path / "approx", exact_max=0)  # every catalog "large": the ANN index
    assert not exact.sync().approximate and approx.sync().approximate
    items, vectors = exact.load()
    ann = approx.ann()
    assert ann is not None and len(ann) == len(items)
    a_items, a_vectors = approx.load()
    for q in vectors[:8].astype(np.float32):
        want = search_items(items, vectors, q, top_k=5, dedup=False)
        got = search_items(a_items, a_vectors, q, top_k=5, dedup=False, ann=ann)
        assert got["video_id"].tolist() == want["video_id"].tolist()
        assert np.allclose(got["score"], want["score"], atol=2e-3)


def test_ranges_grow_around_the_best_windows_best_few_per_video():
    items = pd.DataFrame({
        "key": np.arange(6, dtype=np.uint64), "video_id": ["a"] * 5 + ["b"],
        "path": ["/a.mp4"] * 5 + ["/b.mp4"], "window_index": [0, 1, 2, 5, 6, 0],
        "start_s": [0.0, 1.0, 2.0, 5.0, 6.0, 0.0], "end_s": [2.0, 3.0, 4.0, 7.0, 8.0, 2.0],
        "motion": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "duration_s": [10.0] * 5 + [2.0],
        "motion_signature": [np.zeros(8, np.float32)] * 6})
    scores = np.array([0.5, 0.9, 0.6, 0.7, 0.4, 0.8])
    hits = merge_ranges(items, scores, per_video=3, tolerance=0.35)
    assert [(h.video_id, h.start_s, h.end_s, round(h.score, 2)) for h in hits] == [
        ("a", 1.0, 4.0, 0.9), ("b", 0.0, 2.0, 0.8), ("a", 5.0, 8.0, 0.7)]  # 0-2's middle is inside 1-4: no range
    assert hits[0].motion == pytest.approx(2.5)
    tight = merge_ranges(items, scores, per_video=2, tolerance=0.02)  # each range its best window alone
    assert [(h.video_id, h.start_s, h.end_s) for h in tight] == [("a", 1.0, 3.0), ("b", 0.0, 2.0), ("a", 5.0, 7.0)]


def test_near_duplicates_need_the_same_look_length_and_motion():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(4, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    same = v[0] + 0.01 * rng.normal(size=16).astype(np.float32)
    vectors = np.stack([v[0], same / np.linalg.norm(same), v[0], v[0]])
    right = np.tile(np.array([3, 0], np.float32), 16)
    items = pd.DataFrame({"key": np.arange(4, dtype=np.uint64), "video_id": ["orig", "copy", "longer", "left"],
                          "path": ["/o", "/c", "/l", "/x"], "window_index": 0, "start_s": 0.0,
                          "end_s": [4.0, 4.0, 9.0, 4.0], "motion": 5.0, "duration_s": [4.0, 4.0, 9.0, 4.0],
                          "motion_signature": [right, right * 0.9, right, -right]})
    from moclip.search.query import Hit

    hits = [Hit(r.video_id, r.path, 0.0, r.end_s, 1.0 - i / 10, 5.0) for i, r in enumerate(items.itertuples())]
    kept = collapse_duplicates(hits, items, vectors)
    assert [(h.video_id, dups) for h, dups in kept] == [("orig", ["/c"]), ("longer", []), ("left", [])]


def test_motion_filters_keep_only_items_in_range():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = pd.DataFrame({"key": np.arange(50, dtype=np.uint64), "video_id": [f"v{i}" for i in range(50)],
                          "path": [f"/v{i}" for i in range(50)], "window_index": 0, "start_s": 0.0, "end_s": 2.0,
                          "motion": np.linspace(0, 49, 50), "duration_s": 2.0,
                          "motion_signature": [np.zeros(8, np.float32)] * 50})
    fast = search_items(items, vectors, vectors[0], top_k=50, min_motion=40)
    still = search_items(items, vectors, vectors[0], top_k=50, max_motion=0.5)
    assert (fast["motion"] >= 40).all() and len(fast) == 10
    assert still["video_id"].tolist() == ["v0"]
    assert search_items(items, vectors, vectors[0], top_k=3)["video_id"].iloc[0] == "v0"


def test_motion_signatures_tell_turning_directions_apart():
    mv = np.zeros((2, 4, 2, 4, 4), np.float32)
    ys, xs = np.mgrid[-1.5:2, -1.5:2]
    mv[0, :, 0], mv[0, :, 1] = -ys, xs  # turning one way
    mv[1, :, 0], mv[1, :, 1] = ys, -xs  # and the other
    sig = motion_signature(mv)
    assert sig.shape == (2, 32) and float(sig[0] @ sig[1]) < 0
    assert mv[0].mean(axis=(2, 3)) == pytest.approx(0)  # a plain mean would call both still


@pytest.mark.parametrize(("value", "want"), [
    ("clip.mp4", ("clip.mp4", None)), ("clip.mp4@12.5", ("clip.mp4", 12.5)), ("a@b.mp4", ("a@b.mp4", None))])
def test_like_takes_a_file_or_a_moment(value, want):
    assert parse_like(value) == want


def test_windowed_search_returns_time_ranges_and_a_moment_finds_itself(tmp_path):
    root = tmp_path / "archive"
    make_untrimmed(root / "x" / "long.mp4", [(3, 0, 50), (0, 0, 50), (-3, 0, 50)], width=320, height=240, seed=3)
    make_video(root / "x" / "other.mp4", dx=0, dy=2, n_frames=40, seed=8)
    ds = index_in_process(root, tmp_path / "ds", window=WindowConfig(seconds=1.0, stride=0.5))
    hits = search(SearchParams(dataset=ds, like=f"{root / 'x' / 'long.mp4'}@3.0", top_k=3, device="cpu")).hits
    best = hits.iloc[0]
    assert best["video_id"] == "x/long.mp4" and best["start_s"] <= 3.0 <= best["end_s"]
    assert (hits["end_s"] - hits["start_s"] >= 1.0 - 1e-9).all()  # ranges of whole windows
    still = search(SearchParams(dataset=ds, like=f"{root / 'x' / 'long.mp4'}@3.0", top_k=5, max_motion=0.5,
                                device="cpu")).hits
    assert len(still) and ((still["start_s"] >= 1.5) & (still["end_s"] <= 4.5)).all(), still  # the still part


def test_bad_queries_are_refused_and_write_nothing(appearance_ds, tmp_path):
    from pydantic import ValidationError

    root, ds = appearance_ds
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    cases = [({"like": str(junk)}, "junk.mp4"), ({"like": f"{root / 'Circle' / 'Circle_000.mp4'}@999"},
                                                 "999 s is past its end"),
             ({"like": str(tmp_path / "missing.mp4")}, "no such video file")]
    for kw, message in cases:
        with pytest.raises(SearchError, match=message):
            search(SearchParams(dataset=ds, device="cpu", index_dir=str(tmp_path / "cat"), **kw))
    assert not (tmp_path / "cat").exists()
    with pytest.raises(SearchError, match="not an indexed dataset"):
        search(SearchParams(dataset=str(tmp_path), text="a person diving", device="cpu"))
    no_clip = tmp_path / "no-clip"  # a manifest whose features have no CLIP embeddings
    no_clip.mkdir()
    (no_clip / "_manifest.json").write_text('{"settings": {"mv": {}}, "settings_hash": "x"}')
    with pytest.raises(SearchError, match="no CLIP embeddings to search"):
        search(SearchParams(dataset=str(no_clip), text="a person diving", device="cpu"))
    assert sorted(p.name for p in no_clip.iterdir()) == ["_manifest.json"]
    for kw in ({}, {"text": "x", "like": "y"}, {"text": "  "}, {"text": "x", "min_motion": 2, "max_motion": 1}):
        with pytest.raises(ValidationError):
            SearchParams(dataset=ds, **kw)


def test_a_query_with_other_clip_weights_than_the_dataset_is_refused(tmp_path):
    import open_clip
    import torch

    ckpt = tmp_path / "clip.pt"
    torch.manual_seed(0)
    torch.save(open_clip.create_model("ViT-B-32").state_dict(), ckpt)
    root = tmp_path / "c"
    make_video(root / "x" / "a.mp4", n_frames=15, seed=1)
    from moclip.config import ClipConfig, FeatureSettings, RunConfig
    from moclip.corpus import load_folder
    from moclip.dataset import Store, plan_index, write_manifest
    from moclip.indexing.shard import ShardTarget, index_shard

    settings = FeatureSettings(clip=ClipConfig(weights=str(ckpt), frames=2, precision="fp32"))
    from moclip.clip import resolve_weights

    wid = resolve_weights("ViT-B-32", str(ckpt)).weights_id
    h = settings.settings_hash(wid)
    store = Store(str(tmp_path / "ds"))
    index_shard(plan_index(load_folder(root), store, h).to_index, "part-x-00000.parquet",
                ShardTarget(features=settings, run=RunConfig(), out=str(tmp_path / "ds"), settings_hash=h))
    write_manifest(store, settings=settings, settings_hash=h, clip_weights_id=wid, clip_random=False, run_summary={})
    ok = search(SearchParams(dataset=str(tmp_path / "ds"), text="a person", device="cpu"))
    assert len(ok.hits) == 1
    torch.manual_seed(1)
    torch.save(open_clip.create_model("ViT-B-32").state_dict(), ckpt)  # the checkpoint replaced in place
    for kw in ({"text": "a person"}, {"like": str(root / "x" / "a.mp4")}):
        with pytest.raises(ValueError, match="index"):
            search(SearchParams(dataset=str(tmp_path / "ds"), device="cpu", **kw))


@pytest.mark.integration
def test_the_cli_prints_hits_and_writes_a_contact_sheet(appearance_ds, tmp_path):
    import subprocess

    from helpers.cli import MOCLIP

    def run_cli(*args: str) -> subprocess.CompletedProcess:  # search needs no Prefect server
        return subprocess.run([MOCLIP, *args], capture_output=True, text=True, timeout=600)

    root, ds = appearance_ds
    out = tmp_path / "results"
    r = run_cli("search", ds, "--like", str(root / "Square" / "Square_000.mp4"), "--top-k", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Square/Square_000.mp4" in r.stdout.splitlines()[1] and "contact sheet" in r.stdout
    res = pd.read_parquet(out / "results.parquet")
    assert list(res.columns)[:7] == ["rank", "video_id", "path", "start_s", "end_s", "score", "motion"]
    page = (out / "results.html").read_text()
    assert page.count('<div class="hit">') == 3 and "#t=0.00," in page
    assert len(list((out / "thumbs").glob("*.jpg"))) == 3
    bad = run_cli("search", ds, "--like", str(root / "Square" / "Square_000.mp4") + "@500", "--out",
                  str(tmp_path / "never"))
    assert bad.returncode == 1 and "past its end" in bad.stderr and not (tmp_path / "never").exists()
