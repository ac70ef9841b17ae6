"""moclip.files: atomic writes that really fail, and hashes against hashlib; real files in tmp_path, no mocks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from moclip.dataset.incremental import fingerprint
from moclip.dataset.storage import StorageError, Store
from moclip.files import CHUNK_SIZE, atomic_path, atomic_write_bytes, atomic_write_text, file_sha256, hash_file


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new bytes")
    assert target.read_bytes() == b"new bytes" and listing(tmp_path) == ["out.bin"]
    atomic_write_text(tmp_path / "t.txt", "é\r\nline\n")  # UTF-8, no newline translation
    assert (tmp_path / "t.txt").read_bytes() == "é\r\nline\n".encode()


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(TypeError):  # the data cannot be written: f.write fails after the temp file exists
        atomic_write_bytes(target, object())  # type: ignore[arg-type]
    assert target.read_bytes() == b"old" and listing(tmp_path) == ["out.bin"]

    def serialise(path: Path) -> None:  # a library that writes part of the file itself, then fails
        path.write_bytes(b"partial")
        raise ValueError("cannot serialise")

    with pytest.raises(ValueError, match="cannot serialise"), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.bin.") and tmp.exists()
        serialise(tmp)
    assert target.read_bytes() == b"old" and listing(tmp_path) == ["out.bin"]


def test_failed_replace_removes_temp(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()  # os.replace(file, non-empty directory) fails, even for root
    (tmp_path / "taken" / "inside").write_bytes(b"x")
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "taken", b"data")
    assert listing(tmp_path) == ["taken"] and listing(tmp_path / "taken") == ["inside"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    atomic_write_bytes(folder / "f", b"old")
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            atomic_write_bytes(folder / "f", b"new")
        assert (folder / "f").read_bytes() == b"old" and listing(folder) == ["f"]
    finally:
        folder.chmod(0o700)


def test_mode_like_open(tmp_path: Path) -> None:
    """A temp file is created as ``open(path, "wb")`` would create it (0o666 minus the umask), not 0o600."""
    (tmp_path / "plain").write_bytes(b"")
    atomic_write_bytes(tmp_path / "atomic", b"")
    assert (tmp_path / "atomic").stat().st_mode == (tmp_path / "plain").stat().st_mode


def test_custom_temp_name(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "part-a.parquet", prefix=".tmp-", suffix="-part-a.parquet") as tmp:
        assert tmp.name.startswith(".tmp-") and tmp.name.endswith("-part-a.parquet")
        tmp.write_bytes(b"x")
    assert listing(tmp_path) == ["part-a.parquet"]


def test_hashes_equal_hashlib(tmp_path: Path) -> None:
    data = np.random.default_rng(0).bytes(3 * CHUNK_SIZE + 12_345)  # several chunks and a partial one
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert hash_file(path, hashlib.sha256(), chunk_size=4096).hexdigest() == hashlib.sha256(data).hexdigest()
    assert fingerprint(str(path)) == "b2:" + hashlib.blake2b(data, digest_size=16).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_store_local_and_memory(tmp_path: Path) -> None:
    local = Store(str(tmp_path / "ds"))
    local.write_bytes("a.json", b"{}")
    assert listing(tmp_path / "ds") == ["a.json"]
    (tmp_path / "ds" / "dir.json").mkdir()
    (tmp_path / "ds" / "dir.json" / "x").write_bytes(b"")
    with pytest.raises(StorageError, match=r"cannot write .*dir\.json"):
        local.write_bytes("dir.json", b"{}")
    assert listing(tmp_path / "ds") == ["a.json", "dir.json"]  # no .tmp-* left

    mem = Store(f"memory://{tmp_path.name}/ds")
    mem.write_json("m.json", {"a": 1})
    assert mem.read_json("m.json") == {"a": 1} and mem.clean_temp() == 0
