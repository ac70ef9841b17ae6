"""One writer per dataset (moclip.dataset.lock): a second run waits, gives up with a clear message after its time
limit, and a holder that dies releases the lock with its process."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from moclip.dataset import Store
from moclip.dataset.lock import LOCK_NAME, DatasetBusy, dataset_lock

HOLD = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1])  # kept: a collected FileLock releases itself
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def holder(path) -> subprocess.Popen:
    """Another process holding the lock (as another moclip run would)."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_writer_waits_then_gives_up_with_a_message(tmp_path):
    store = Store(str(tmp_path / "ds"))
    store.ensure()
    other = holder(tmp_path / "ds" / LOCK_NAME)
    said: list[str] = []
    try:
        t0 = time.monotonic()
        with pytest.raises(DatasetBusy, match=r"another moclip run has been using this dataset for more than "
                                              r"0\.5 s .*run this again when it has finished"):
            with dataset_lock(store, 0.5, on_wait=said.append):
                pytest.fail("entered while another process held the lock")
        assert time.monotonic() - t0 >= 0.5
        assert said == [f"{store.url}: another moclip run is using this dataset; waiting for it to finish "
                        "(up to 0.5 s)"]
    finally:
        other.kill()
        other.wait()
    # the holder died without releasing: the OS released its lock, nothing to clean up by hand
    with dataset_lock(store, 0.5, on_wait=said.append) as locked:
        assert locked
    assert len(said) == 1


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    store = Store(str(tmp_path / "ds"))
    with pytest.raises(RuntimeError, match="boom"), dataset_lock(store, 1.0):
        raise RuntimeError("boom")
    with dataset_lock(store, 0.0) as locked:  # free at once
        assert locked


def test_object_stores_have_no_lock():
    with dataset_lock(Store("memory://moclip-lock-test"), 1.0) as locked:
        assert locked is False
