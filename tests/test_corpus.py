"""Corpus adapters on real files in tmp_path (zero-byte placeholders: nothing is decoded) and the shared
official UCF101 split files / real clips when ``../shared/data`` is present."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from moclip.corpus import (
    TABLE_COLUMNS,
    CorpusError,
    CorpusSpec,
    is_video_file,
    list_videos,
    load_corpus,
    load_folder,
    load_hmdb51,
    load_manifest,
    load_ucf101,
    load_unlabeled,
    make_table,
    read_class_index,
    ucf101_group,
    validate_table,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
UCF_SPLITS = SHARED / "ucf101" / "splits"
REAL_CLIPS = SHARED / "real-clips"


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


def write(path: Path, text: str, crlf: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", "\r\n" if crlf else "\n").encode())
    return path


def check_contract(df: pd.DataFrame) -> None:
    assert tuple(df.columns) == TABLE_COLUMNS
    assert df["video_id"].tolist() == sorted(df["video_id"])
    assert df["video_id"].is_unique
    assert list(df.index) == list(range(len(df)))
    assert all(pd.api.types.is_object_dtype(dt) for dt in df.dtypes)
    for p in df["path"]:
        assert os.path.isabs(p) and Path(p) == Path(p).resolve()
    validate_table(df)


def need_shared() -> None:
    if not (UCF_SPLITS / "classInd.txt").is_file() or not (REAL_CLIPS / "UCF-101").is_dir():
        pytest.skip(f"shared UCF101 data not present at {SHARED}")


# --- scanning / folder-per-class ---------------------------------------------------------------------


def test_is_video_file_case_insensitive() -> None:
    assert is_video_file("a/b.AVI") and is_video_file("x.Mp4") and is_video_file(Path("y.mkv"))
    assert not is_video_file("notes.txt") and not is_video_file("avi") and not is_video_file("x.avi.part")


def test_folder_labels_recursive_hidden_and_root_files(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "run/b.mp4", "run/a.AVI", "jump/deep/er/c.mkv", "jump/readme.txt",
        ".hidden/x.avi", "run/.y.avi", "run/._a.avi", "jump/.cache/z.mp4",
        "stray.avi",
    )
    df = load_folder(tmp_path)
    check_contract(df)
    assert df["video_id"].tolist() == ["jump/deep/er/c.mkv", "run/a.AVI", "run/b.mp4"]
    assert df["label"].tolist() == ["er", "run", "run"]
    assert df["split"].tolist() == [None, None, None]
    assert df["group"].tolist() == [None, None, None]
    assert df["path"].tolist() == [str((tmp_path / v).resolve()) for v in df["video_id"]]
    assert df.attrs["skipped"] == ["stray.avi"]


def test_folder_is_deterministic_regardless_of_creation_order(tmp_path: Path) -> None:
    names = [f"c{i % 3}/v{i:03d}.mp4" for i in range(30)]
    touch(tmp_path / "one", *names)
    touch(tmp_path / "two", *reversed(names))
    a, b = load_folder(tmp_path / "one"), load_folder(tmp_path / "two")
    pd.testing.assert_frame_equal(a.drop(columns="path"), b.drop(columns="path"))
    pd.testing.assert_frame_equal(a, load_folder(tmp_path / "one"))
    assert a["video_id"].tolist() == sorted(names)


def test_symlink_loop_does_not_hang_and_lists_each_video_once(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    touch(root, "walk/a.avi", "walk/sub/b.avi")
    os.symlink(root, root / "walk" / "sub" / "to_root")  # loop back to an ancestor
    os.symlink(root / "walk" / "sub", root / "walk" / "sub" / "self")  # loop to itself
    touch(tmp_path, "elsewhere/c.avi")
    os.symlink(tmp_path / "elsewhere", root / "linked")  # a linked folder outside the root is followed

    result: dict[str, pd.DataFrame] = {}
    t = threading.Thread(target=lambda: result.update(df=load_folder(root)), daemon=True)
    t.start()
    t.join(timeout=20)
    assert not t.is_alive(), "scan hung on a symlink loop"
    df = result["df"]
    check_contract(df)
    assert df["video_id"].tolist() == ["linked/c.avi", "walk/a.avi", "walk/sub/b.avi"]
    assert df["label"].tolist() == ["linked", "walk", "sub"]
    assert df.loc[0, "path"] == str((tmp_path / "elsewhere" / "c.avi").resolve())


def test_broken_symlink_skipped(tmp_path: Path) -> None:
    touch(tmp_path, "a/ok.avi")
    os.symlink(tmp_path / "nowhere.avi", tmp_path / "a" / "broken.avi")
    assert list(list_videos(tmp_path)) == ["a/ok.avi"]


def test_unlabeled_recursive(tmp_path: Path) -> None:
    touch(tmp_path, "x.mp4", "d/e/y.webm", "d/.z.mp4", "d/notes.md")
    df = load_unlabeled(tmp_path)
    check_contract(df)
    assert df["video_id"].tolist() == ["d/e/y.webm", "x.mp4"]
    assert df["label"].tolist() == [None, None]
    assert df["split"].tolist() == [None, None]


@pytest.mark.parametrize("loader", [load_folder, load_unlabeled, load_ucf101, load_hmdb51])
def test_bad_root_errors(tmp_path: Path, loader) -> None:
    with pytest.raises(CorpusError, match="does not exist") as exc:
        loader(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(exc.value)
    touch(tmp_path, "file.avi")
    with pytest.raises(CorpusError, match="is not a directory"):
        loader(tmp_path / "file.avi")
    assert issubclass(CorpusError, ValueError)


def test_validate_table_rejects_bad_tables() -> None:
    good = make_table([{"video_id": "b", "path": "/x/b"}, {"video_id": "a", "path": "/x/a", "split": "train"}])
    assert good["video_id"].tolist() == ["a", "b"]
    with pytest.raises(CorpusError, match="sorted"):
        validate_table(good.iloc[::-1].reset_index(drop=True))
    with pytest.raises(CorpusError, match="duplicate"):
        make_table([{"video_id": "a", "path": "/x/a"}, {"video_id": "a", "path": "/x/b"}])
    with pytest.raises(CorpusError, match="split"):
        make_table([{"video_id": "a", "path": "/x/a", "split": "val"}])
    with pytest.raises(CorpusError, match="absolute"):
        make_table([{"video_id": "a", "path": "rel/a"}])


# --- UCF101 ---------------------------------------------------------------------------------------------

CLASS_IND = "1 ApplyEyeMakeup\n2 Biking\n3 HandstandPushups\n"


def fake_ucf(tmp_path: Path, folder_spelling: str = "HandstandPushups") -> tuple[Path, Path]:
    root = tmp_path / "ucf"
    splits = root / "ucfTrainTestlist"
    write(splits / "classInd.txt", CLASS_IND, crlf=True)
    write(
        splits / "trainlist01.txt",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
        "HandstandPushups/v_HandStandPushups_g08_c01.avi 3\n"
        "Biking/v_Biking_g09_c02.avi 2\n",  # not on disk
        crlf=True,
    )
    write(
        splits / "testlist01.txt",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nHandstandPushups/v_HandStandPushups_g01_c02.avi\n",
        crlf=True,
    )
    write(splits / "trainlist02.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\n", crlf=True)
    write(splits / "testlist02.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi\n", crlf=True)
    touch(
        root / "UCF-101",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
        f"{folder_spelling}/v_HandStandPushups_g08_c01.avi",
        f"{folder_spelling}/v_HandStandPushups_g01_c02.avi",
        "Biking/v_Biking_g25_c07.avi",  # on disk, in neither list
        "Biking/.v_Biking_g25_c08.avi",
    )
    return root, splits


@pytest.mark.parametrize("folder_spelling", ["HandstandPushups", "HandStandPushups"])
def test_ucf101_fake_layout(tmp_path: Path, folder_spelling: str, caplog: pytest.LogCaptureFixture) -> None:
    root, splits = fake_ucf(tmp_path, folder_spelling)
    df = load_ucf101(root, split_dir=splits, split=1)
    check_contract(df)
    rows = {r.video_id: r for r in df.itertuples()}
    hs = f"{folder_spelling}/v_HandStandPushups_g08_c01.avi"
    assert set(rows) == {
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
        "Biking/v_Biking_g25_c07.avi",
        hs,
        f"{folder_spelling}/v_HandStandPushups_g01_c02.avi",
    }
    assert rows[hs].label == "HandstandPushups" and rows[hs].split == "train" and rows[hs].group == "g08"
    assert rows[f"{folder_spelling}/v_HandStandPushups_g01_c02.avi"].split == "test"
    assert rows["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"].split == "train"
    assert rows["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"].split == "test"
    assert rows["Biking/v_Biking_g25_c07.avi"].split is None
    assert rows["Biking/v_Biking_g25_c07.avi"].group == "g25"
    assert rows[hs].path == str((root / "UCF-101" / hs).resolve())
    assert df.attrs["missing"] == ["Biking/v_Biking_g09_c02.avi"]
    assert df.attrs["classes"] == ["ApplyEyeMakeup", "Biking", "HandstandPushups"]
    assert "1 listed video(s) missing" in caplog.text

    # root may be the UCF-101 folder itself or its parent; split_dir found automatically next to it
    same = load_ucf101(root / "UCF-101", split_dir=splits, split=1)
    pd.testing.assert_frame_equal(df, same)
    pd.testing.assert_frame_equal(df, load_ucf101(root, split=1))

    # split 2 swaps the ApplyEyeMakeup clips; HandstandPushups is in neither list
    df2 = load_ucf101(root, split_dir=splits, split=2).set_index("video_id")
    assert df2.loc["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "split"] == "test"
    assert df2.loc["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "split"] == "train"
    assert df2.loc[hs, "split"] is None


def test_ucf101_errors(tmp_path: Path) -> None:
    root, splits = fake_ucf(tmp_path)
    with pytest.raises(CorpusError, match=r"trainlist03\.txt.*does not exist"):
        load_ucf101(root, split_dir=splits, split=3)
    write(splits / "trainlist03.txt", "")
    with pytest.raises(CorpusError, match=r"testlist03\.txt.*does not exist"):
        load_ucf101(root, split_dir=splits, split=3)
    with pytest.raises(CorpusError, match="1, 2 or 3"):
        load_ucf101(root, split_dir=splits, split=4)
    with pytest.raises(CorpusError, match="does not exist"):
        load_ucf101(root, split_dir=tmp_path / "no-splits")
    (splits / "classInd.txt").unlink()
    with pytest.raises(CorpusError, match="no classInd.txt"):
        load_ucf101(root)
    write(splits / "classInd.txt", "1 ApplyEyeMakeup\nBiking\n")
    with pytest.raises(CorpusError, match=r"classInd\.txt:2"):
        load_ucf101(root, split_dir=splits)


def test_ucf101_group() -> None:
    assert ucf101_group("v_ApplyEyeMakeup_g08_c01.avi") == "g08"
    assert ucf101_group("v_HandStandPushups_g25_c04.avi") == "g25"
    assert ucf101_group("random.avi") is None


def test_ucf101_real_class_index() -> None:
    need_shared()
    classes = read_class_index(UCF_SPLITS / "classInd.txt")
    assert len(classes) == 101 and len(set(classes)) == 101
    assert classes[0] == "ApplyEyeMakeup" and classes[36] == "HandstandPushups" and classes[-1] == "YoYo"


@pytest.mark.parametrize(
    ("split", "expected"),
    [
        (1, {"PlayingGuitar/v_PlayingGuitar_g16_c02.avi": "train", "Biking/v_Biking_g02_c05.avi": "test"}),
        (2, {"PlayingGuitar/v_PlayingGuitar_g16_c02.avi": "train", "Biking/v_Biking_g02_c05.avi": "train"}),
        (3, {"PlayingGuitar/v_PlayingGuitar_g16_c02.avi": "test", "Biking/v_Biking_g02_c05.avi": "train"}),
    ],
)
def test_ucf101_real_splits(split: int, expected: dict[str, str]) -> None:
    need_shared()
    for root in (REAL_CLIPS, REAL_CLIPS / "UCF-101"):
        df = load_corpus(CorpusSpec(root=str(root), layout="ucf101", split_dir=str(UCF_SPLITS), split=split))
        check_contract(df)
        assert len(df) == 8
        assert df["split"].notna().all()  # every real clip is in one list of every official split
        assert df.attrs["classes"][36] == "HandstandPushups" and len(df.attrs["classes"]) == 101
        rows = df.set_index("video_id")
        for vid, sp in expected.items():
            assert rows.loc[vid, "split"] == sp
        assert rows.loc["PlayingGuitar/v_PlayingGuitar_g16_c02.avi", "label"] == "PlayingGuitar"
        assert rows.loc["PlayingGuitar/v_PlayingGuitar_g16_c02.avi", "group"] == "g16"
        assert (df["label"] == df["video_id"].str.split("/").str[0]).all()
        n_listed = sum(
            sum(1 for line in (UCF_SPLITS / f"{kind}{split:02d}.txt").read_text().splitlines() if line.strip())
            for kind in ("trainlist", "testlist")
        )
        assert len(df.attrs["missing"]) == n_listed - 8


def test_ucf101_real_split_files_handstand_spelling(tmp_path: Path) -> None:
    need_shared()
    # trainlist01: "HandstandPushups/v_HandStandPushups_g08_c01.avi 37"; folder spelled either way on disk
    for folder in ("HandstandPushups", "HandStandPushups"):
        root = tmp_path / folder / "UCF-101"
        touch(root, f"{folder}/v_HandStandPushups_g08_c01.avi", f"{folder}/v_HandStandPushups_g01_c01.avi")
        df = load_ucf101(root.parent, split_dir=UCF_SPLITS, split=1).set_index("video_id")
        train = df.loc[f"{folder}/v_HandStandPushups_g08_c01.avi"]
        test = df.loc[f"{folder}/v_HandStandPushups_g01_c01.avi"]
        assert (train["label"], train["split"], train["group"]) == ("HandstandPushups", "train", "g08")
        assert (test["label"], test["split"], test["group"]) == ("HandstandPushups", "test", "g01")


# --- HMDB51 ---------------------------------------------------------------------------------------------


def fake_hmdb(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "hmdb"
    splits = tmp_path / "hmdb_splits"
    touch(
        root,
        "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi",
        "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_1.avi",
        "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_2.avi",
        "brush_hair/extra_not_listed.avi",
        "ride_bike/Bike_riding_(2)_ride_bike_f_cm_np1_fr_med_0.avi",
    )
    for n, ids in ((1, "120"), (2, "201"), (3, "012")):
        write(
            splits / f"brush_hair_test_split{n}.txt",
            "".join(f"April_09_brush_hair_u_nm_np1_ba_goo_{i}.avi {sid} \n" for i, sid in enumerate(ids))
            + "gone_brush_hair_0.avi 1 \n",
            crlf=True,
        )
        write(splits / f"ride_bike_test_split{n}.txt", f"Bike_riding_(2)_ride_bike_f_cm_np1_fr_med_0.avi {n % 2 + 1}\n")
    return root, splits


def test_hmdb51_splits(tmp_path: Path) -> None:
    root, splits = fake_hmdb(tmp_path)
    df = load_hmdb51(root, split_dir=splits, split=1)
    check_contract(df)
    assert df["video_id"].tolist() == [
        "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi",
        "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_1.avi",
        "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_2.avi",
        "brush_hair/extra_not_listed.avi",
        "ride_bike/Bike_riding_(2)_ride_bike_f_cm_np1_fr_med_0.avi",
    ]
    assert df["label"].tolist() == ["brush_hair"] * 4 + ["ride_bike"]
    assert df["split"].tolist() == ["train", "test", None, None, "test"]
    assert df["group"].isna().all()
    assert df.attrs["missing"] == ["brush_hair/gone_brush_hair_0.avi"]
    assert load_hmdb51(root, split_dir=splits, split=2)["split"].tolist() == ["test", None, "train", None, "train"]
    assert load_hmdb51(root, split_dir=splits, split=3)["split"].tolist() == [None, "train", "test", None, "test"]
    spec = CorpusSpec(root=str(root), layout="hmdb51", split_dir=str(splits), split=2)
    pd.testing.assert_frame_equal(load_corpus(spec), load_hmdb51(root, split_dir=splits, split=2))


def test_hmdb51_default_split_dir_and_none(tmp_path: Path) -> None:
    root, splits = fake_hmdb(tmp_path)
    assert load_hmdb51(root)["split"].isna().all()
    shutil.copytree(splits, root / "testTrainMulti_7030_splits")
    assert load_hmdb51(root)["split"].tolist() == ["train", "test", None, None, "test"]


def test_hmdb51_errors(tmp_path: Path) -> None:
    root, splits = fake_hmdb(tmp_path)
    touch(root, "new_action/x.avi")
    with pytest.raises(CorpusError, match=r"new_action_test_split1\.txt.*does not exist"):
        load_hmdb51(root, split_dir=splits)
    shutil.rmtree(root / "new_action")
    write(splits / "ride_bike_test_split1.txt", "a.avi 1\nb.avi 7\n")
    with pytest.raises(CorpusError, match=r"ride_bike_test_split1\.txt:2"):
        load_hmdb51(root, split_dir=splits)
    with pytest.raises(CorpusError, match="1, 2 or 3"):
        load_hmdb51(root, split_dir=splits, split=0)


# --- CSV manifest ---------------------------------------------------------------------------------------


def test_manifest_basic(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "c"
    touch(root, "a/x.mp4", "b/y.avi", "z.mov")
    m = write(
        root / "list.csv",
        "path,label,split,group,notes\n"
        "b/y.avi,cat,TRAIN,g1,hello\n"
        "a/x.mp4,,test,,\n"
        f"{root / 'z.mov'},dog,,,\n"
        "\n"
        "gone/w.mp4,dog,train,,\n",
    )
    df = load_manifest(m)
    check_contract(df)
    assert df["video_id"].tolist() == ["a/x.mp4", "b/y.avi", "gone/w.mp4", "z.mov"]
    assert df["label"].tolist() == [None, "cat", "dog", "dog"]
    assert df["split"].tolist() == ["test", "train", "train", None]
    assert df["group"].tolist() == [None, "g1", None, None]
    assert df["path"].tolist() == [str((root / v).resolve()) for v in df["video_id"]]
    assert df.attrs["missing"] == ["gone/w.mp4"]  # kept: the indexer records it as failed
    assert "do not exist" in caplog.text
    spec = CorpusSpec(root="", layout="manifest", manifest=str(m))
    pd.testing.assert_frame_equal(load_corpus(spec), df)


def test_manifest_only_path_column_and_explicit_root(tmp_path: Path) -> None:
    touch(tmp_path, "videos/k/v.mp4")
    m = write(tmp_path / "meta" / "m.csv", "path\nk/v.mp4\n")
    df = load_manifest(m, root=tmp_path / "videos")
    assert df.to_dict("records") == [{
        "video_id": "k/v.mp4", "path": str((tmp_path / "videos/k/v.mp4").resolve()),
        "label": None, "split": None, "group": None,
    }]
    spec = CorpusSpec(root=str(tmp_path / "videos"), layout="manifest", manifest=str(m))
    pd.testing.assert_frame_equal(load_corpus(spec), df)


def test_manifest_confinement(tmp_path: Path) -> None:
    root = tmp_path / "root"
    touch(root, "in.mp4")
    touch(tmp_path, "outside.mp4")
    m = write(root / "m.csv", "path,label\nin.mp4,a\n../outside.mp4,b\n")
    with pytest.raises(CorpusError) as exc:
        load_manifest(m)
    msg = str(exc.value)
    assert str(m) in msg and ":3:" in msg and "escapes the corpus root" in msg and "'..'" in msg

    m2 = write(root / "m2.csv", f"path\nin.mp4\n\n{tmp_path / 'outside.mp4'}\n")
    with pytest.raises(CorpusError, match=r"m2\.csv:4: absolute path .* outside the corpus root"):
        load_manifest(m2)

    os.symlink(tmp_path / "outside.mp4", root / "sneaky.mp4")
    m3 = write(root / "m3.csv", "path\nsneaky.mp4\n")
    with pytest.raises(CorpusError, match=r"m3\.csv:2: .*symlink"):
        load_manifest(m3)

    df = load_manifest(m, allow_outside_root=True)
    outside = str((tmp_path / "outside.mp4").resolve())
    assert df["video_id"].tolist() == sorted(["in.mp4", outside])
    assert df.set_index("video_id").loc[outside, "path"] == outside
    spec = CorpusSpec(root=str(root), layout="manifest", manifest=str(m2), allow_outside_root=True)
    assert len(load_corpus(spec)) == 2

    # '..' that stays inside the root is fine; absolute paths inside the root are fine
    touch(root, "d/e.mp4")
    m4 = write(root / "m4.csv", f"path\nd/../in.mp4\n{root / 'd' / 'e.mp4'}\n")
    assert load_manifest(m4)["video_id"].tolist() == ["d/e.mp4", "in.mp4"]


def test_manifest_duplicates_and_bad_rows(tmp_path: Path) -> None:
    touch(tmp_path, "a/x.mp4")
    m = write(tmp_path / "m.csv", "path,label\na/x.mp4,p\nother.mp4,q\n./a/x.mp4,r\n")
    with pytest.raises(CorpusError, match=r"m\.csv:4: duplicate path .*line 2"):
        load_manifest(m)
    with pytest.raises(CorpusError, match=r"m\.csv:2: split must be"):
        load_manifest(write(tmp_path / "m.csv", "path,split\na/x.mp4,val\n"))
    with pytest.raises(CorpusError, match=r"m\.csv:3: empty path"):
        load_manifest(write(tmp_path / "m.csv", "path,label\na/x.mp4,p\n,q\n"))
    with pytest.raises(CorpusError, match="'path' column"):
        load_manifest(write(tmp_path / "m.csv", "file,label\na/x.mp4,p\n"))
    with pytest.raises(CorpusError, match="does not exist"):
        load_manifest(tmp_path / "nope.csv")


# --- spec / dispatcher ----------------------------------------------------------------------------------


def test_spec_validation_and_dispatch(tmp_path: Path) -> None:
    touch(tmp_path, "c1/a.mp4", "top.mp4")
    assert CorpusSpec(root=str(tmp_path)).layout == "folder"
    pd.testing.assert_frame_equal(load_corpus(CorpusSpec(root=str(tmp_path))), load_folder(tmp_path))
    un = load_corpus(CorpusSpec(root=str(tmp_path), layout="unlabeled"))
    pd.testing.assert_frame_equal(un, load_unlabeled(tmp_path))
    assert un["video_id"].tolist() == ["c1/a.mp4", "top.mp4"]
    with pytest.raises(ValidationError, match="layout\n  Input should be 'folder', 'ucf101'"):
        CorpusSpec(root=str(tmp_path), layout="kinetics")
    with pytest.raises(ValidationError, match="less than or equal to 3"):
        CorpusSpec(root=str(tmp_path), layout="ucf101", split=4)
    with pytest.raises(ValidationError, match="1, 2 or 3"):
        CorpusSpec(root=str(tmp_path), layout="ucf101", split=True)
    with pytest.raises(ValidationError, match="manifest="):
        CorpusSpec(root=str(tmp_path), layout="manifest")
    with pytest.raises(ValidationError, match="needs a corpus root"):
        CorpusSpec(root="", layout="folder")
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(CorpusSpec(root=str(tmp_path / "missing")))
