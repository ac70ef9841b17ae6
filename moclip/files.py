"""Atomic file writes and file hashes: the one implementation every moclip module uses.

An atomic write goes to a temporary file in the target's folder (so the rename cannot cross filesystems), is
flushed and fsynced, then ``os.replace``d onto the target: readers see the old file or the whole new one, never a
part. On any failure (an exception from the caller's code, a full disk, Ctrl-C) the temporary file is removed and
the target is left as it was. Temporary files are created like ``open(path, "wb")`` creates files (mode 0o666
minus the umask), and their names start with ``.`` so folder listings that skip hidden files skip them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, TypeVar

CHUNK_SIZE = 1 << 20  # 1 MiB: reads of files being hashed


class _Hash(Protocol):
    def update(self, data: bytes, /) -> None: ...


H = TypeVar("H", bound=_Hash)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_temp(path: Path, prefix: str | None, suffix: str) -> Path:
    """A new, empty temporary file next to ``path`` (``O_EXCL``: never one another writer uses)."""
    while True:
        tmp = path.with_name(f"{f'.{path.name}.' if prefix is None else prefix}{uuid.uuid4().hex[:12]}{suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_path(path: str | Path, *, prefix: str | None = None, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for the caller to write (e.g. a library that writes to a path
    itself); when the block ends normally it is fsynced and replaces ``path``, on any exception it is removed.

    The temporary name is ``prefix + <random> + suffix``, ``prefix`` defaulting to ``.<name>.``."""
    path = Path(path)
    tmp = _create_temp(path, prefix, suffix)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | Path, data: bytes, *, prefix: str | None = None, suffix: str = ".tmp") -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_path(path, prefix=prefix, suffix=suffix) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically, encoded with ``encoding`` (no newline translation)."""
    atomic_write_bytes(path, text.encode(encoding))


def hash_file(path: str | Path, h: H, chunk_size: int = CHUNK_SIZE) -> H:
    """Feed the bytes of the file at ``path`` to the hash object ``h`` in ``chunk_size`` blocks; return ``h``."""
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            h.update(block)
    return h


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as lowercase hex."""
    return hash_file(path, hashlib.sha256()).hexdigest()
