"""Resources: a real disk-full / write error on the output (no mocks), and peak memory of one 1080p video.

Disk full: the output lives on a small tmpfs (needs root and mount; skipped otherwise) whose free space fits only a
couple of shards; the file-size limit test (RLIMIT_FSIZE -> EFBIG) needs neither.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers.cli import MOCLIP, cli_env
from helpers.datasets import motion_corpus
from helpers.memory import make_1080p_video, measure
from helpers.tables import small_table

from moclip.dataset import MANIFEST_NAME, Store, load_features, read_manifest, read_metadata
from moclip.dataset.storage import StorageError

pytestmark = pytest.mark.integration  # CLI runs as subprocesses (disk full, file-size limit)

REPO = Path(__file__).resolve().parents[1]
PAGE = 4096


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(mnt: Path, leave: int) -> Path:
    """Write a filler file so that about ``leave`` bytes stay free on ``mnt``."""
    filler = mnt / "filler.bin"
    filler.write_bytes(b"\0" * max(free_bytes(mnt) - leave, 0))
    assert abs(free_bytes(mnt) - leave) <= 2 * PAGE
    return filler


def assert_dataset_valid(out: Path) -> list[str]:
    """Every shard parses, no temp file is left, the manifest (if any) is JSON and lists exactly the shards."""
    shards = sorted(p.name for p in out.glob("part-*.parquet"))
    for name in shards:
        pq.read_table(out / name)  # raises on a torn or partial file
    assert not [p.name for p in out.iterdir() if p.name.startswith(".tmp-")]
    if (out / MANIFEST_NAME).exists():
        manifest = json.loads((out / MANIFEST_NAME).read_text())
        assert manifest["shards"] == shards
    return shards


def test_write_error_on_full_disk_names_file_and_reason_and_keeps_old_files(small_fs):
    """Store level, in process: the failed write raises StorageError, leaves no temp file, the old files stay."""
    store = Store(str(small_fs / "feats"))
    store.ensure()
    store.write_table("part-a.parquet", small_table(5))
    store.write_json(MANIFEST_NAME, {"shards": ["part-a.parquet"]})
    before = (small_fs / "feats" / MANIFEST_NAME).read_bytes()
    fill(small_fs, leave=2 * PAGE)

    with pytest.raises(StorageError) as exc:
        store.write_table("part-b.parquet", small_table(50))  # ~800 KB
    msg = str(exc.value)
    assert f"cannot write {small_fs / 'feats' / 'part-b.parquet'}: No space left on device" in msg
    assert "free space and rerun" in msg and exc.value.errno == 28
    with pytest.raises(StorageError, match=r"cannot write .*_manifest\.json: No space left on device"):
        store.write_json(MANIFEST_NAME, {"shards": ["part-a.parquet", "x" * 20_000]})

    assert sorted(os.listdir(small_fs / "feats")) == [MANIFEST_NAME, "part-a.parquet"]  # no .tmp-*, no part-b
    assert store.read_table("part-a.parquet").equals(small_table(5))
    assert (small_fs / "feats" / MANIFEST_NAME).read_bytes() == before


def test_file_size_limit_is_a_clear_error(tmp_path):
    """RLIMIT_FSIZE (SIGXFSZ ignored -> EFBIG) in a child process: no root needed."""
    code = f"""
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from helpers.tables import small_table
from moclip.dataset.storage import Store, StorageError
store = Store({str(tmp_path / 'feats')!r}); store.ensure()
store.write_table("part-a.parquet", small_table(2))
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
try:
    store.write_table("part-b.parquet", small_table(50))
except StorageError as e:
    print(e)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}  # helpers/, as pytest's pythonpath gives the tests
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"cannot write {tmp_path / 'feats' / 'part-b.parquet'}: File too large" in r.stdout
    assert sorted(os.listdir(tmp_path / "feats")) == ["part-a.parquet"]


def index_cmd(corpus: Path, out: Path) -> list[str]:
    return [MOCLIP, "index", str(corpus), "--out", str(out), "--clip-weights", "none", "--frames", "2",
            "--workers", "2", "--shard-size", "2", "--precision", "fp32"]


def run_index(corpus: Path, out: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(index_cmd(corpus, out), env=cli_env(tmp_path / "prefect-home"), capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_disk_full_during_index_then_rerun_after_freeing_space(tmp_path, small_fs):
    corpus = motion_corpus(tmp_path / "corpus", per_class=2, n_frames=20)  # 8 videos -> 4 shards of 2
    ref = tmp_path / "ref"
    r = run_index(corpus, ref, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    sizes = [-(-p.stat().st_size // PAGE) * PAGE for p in ref.glob("part-*.parquet")]
    manifest = -(-(ref / MANIFEST_NAME).stat().st_size // PAGE) * PAGE + 2 * PAGE  # it grows by the errors it lists
    assert len(sizes) == 4 and manifest < min(sizes), (manifest, sizes)  # the manifest fits, a third shard does not

    out = small_fs / "feats"
    out.mkdir()
    filler = fill(small_fs, leave=2 * max(sizes) + manifest)  # room for two shards and the manifest, not three shards
    r = run_index(corpus, out, tmp_path)
    # not a success: non-zero exit, and the failing files are named with the reason
    assert r.returncode != 0, r.stdout + r.stderr
    assert f"cannot write {out}/" in r.stderr and "No space left on device" in r.stderr, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    written = assert_dataset_valid(out)
    assert 1 <= len(written) < 4, written
    # the manifest's run history says which shards are missing, and so does the command
    last = read_manifest(str(out))["runs"][-1]
    assert len(last["crashed_shards"]) == 4 - len(written)
    assert all("No space left on device" in c["error"] for c in last["crashed_shards"])
    assert f"moclip: error: {4 - len(written)} shards ({2 * (4 - len(written))} videos) were not written" in r.stderr
    n_kept = sum(pq.read_metadata(out / n).num_rows for n in written)

    filler.unlink()  # free space, rerun the same command: only the missing videos are indexed
    r = run_index(corpus, out, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"8 videos: {8 - n_kept} indexed, 0 failed, {n_kept} unchanged" in r.stdout
    assert_dataset_valid(out)

    a, b = read_metadata(str(ref)), read_metadata(str(out))
    assert list(a["video_id"]) == list(b["video_id"]) and b["video_id"].is_unique
    assert list(b["status"]) == ["ok"] * 8
    fa, fb = load_features(str(ref)), load_features(str(out))
    assert np.array_equal(fa.mv, fb.mv) and np.array_equal(fa.clip, fb.clip)


# --- memory ---------------------------------------------------------------------------------------------------


def test_peak_memory_of_a_1080p_video_is_flat_in_its_length(tmp_path):
    short = measure(make_1080p_video(tmp_path / "short.mp4", 250))
    long = measure(make_1080p_video(tmp_path / "long.mp4", 1000))
    assert (short["width"], short["height"], long["n_frames"]) == (1920, 1080, 1000)
    print(f"1080p peak RSS growth: {short['growth_mb']:.0f} MB (250 frames), {long['growth_mb']:.0f} MB (1000)")
    assert long["growth_mb"] - short["growth_mb"] < 50  # streams: 4x the frames, not more memory
    assert long["growth_mb"] < 256  # the documented bound for one 1080p video on top of the imports
