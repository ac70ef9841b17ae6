"""One writer at a time per dataset: an index run holds the dataset's lock from its plan to its manifest.

Two runs on the same dataset (a label job indexing into it while the nightly re-index runs, two terminals) would
otherwise plan against each other's half-written state, and one run's clean-up of temp files could remove the
other's files in flight. The lock is ``filelock``'s: an OS lock (``flock``) on ``_index.lock`` in the dataset
folder, so a run that dies releases it with its process: no stale lock to remove by hand. The second run waits
(a line says so) up to ``RunConfig.lock_timeout_s``, then fails with a message that says what to do.

Object stores (s3://, ...) have no such lock: there runs are not serialised, every file is still written
atomically, and a later run repairs what a collision leaves (duplicate rows; the last manifest written wins).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator

from filelock import FileLock, Timeout

from moclip.dataset.storage import Store

LOCK_NAME = "_index.lock"
LABEL_LOCK = "_label.lock"  # a label run's output folder: one label run writes it at a time
log = logging.getLogger(__name__)


class DatasetBusy(RuntimeError):
    """Another run held the dataset's lock for longer than this run would wait."""


@contextlib.contextmanager
def dataset_lock(store: Store, timeout_s: float, on_wait=None, name: str = LOCK_NAME,
                 what: str = "dataset") -> Iterator[bool]:
    """Hold ``store``'s lock ``name`` for the block (yields True; False on an object store, where there is none).

    If another run holds it, ``on_wait(message)`` is called once (default: a warning on this module's logger).
    ``what`` names the folder in messages (a label run also locks its output folder: ``LABEL_LOCK``)."""
    if not store.local:
        yield False
        return
    store.ensure()
    path = os.path.join(store.root, name)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        message = (f"{store.url}: another moclip run is using this {what}; waiting for it to finish "
                   f"(up to {timeout_s:g} s)")
        (on_wait or log.warning)(message)
        t0 = time.monotonic()
        try:
            lock.acquire(timeout=timeout_s)
        except Timeout:
            raise DatasetBusy(f"{store.url}: another moclip run has been using this {what} for more than "
                              f"{timeout_s:g} s (lock {path}); run this again when it has finished, or raise "
                              "--run.lock-timeout-s") from None
        log.info("%s: the other run finished after %.1f s; going on", store.url, time.monotonic() - t0)
    try:
        yield True
    finally:
        lock.release()
