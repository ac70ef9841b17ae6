from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

# Isolate Prefect before anything imports it: own home (SQLite database), no analytics, quiet logs.
if "PREFECT_HOME" not in os.environ:
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="moclip-test-prefect-")
    atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)
if "MOCLIP_CACHE" not in os.environ:  # text-embedding cache: never the user's ~/.cache/moclip
    os.environ["MOCLIP_CACHE"] = tempfile.mkdtemp(prefix="moclip-test-cache-")
    atexit.register(shutil.rmtree, os.environ["MOCLIP_CACHE"], ignore_errors=True)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.pop("PREFECT_API_URL", None)

import pytest  # noqa: E402

TESTS = Path(__file__).parent  # tests/helpers/ is the package "helpers": pyproject's pytest pythonpath

SHARED = TESTS.parent.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data not present at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def motion_dataset(tmp_path_factory) -> str:
    """An indexed dataset of the motion corpus (4 directions x 8 clips), shared by the session's tests that only
    read it (labelling, predictions, evaluation)."""
    from helpers.datasets import index_in_process, motion_corpus

    corpus = motion_corpus(tmp_path_factory.mktemp("motion_corpus"), per_class=8)
    return index_in_process(corpus, tmp_path_factory.mktemp("motion_ds"))


@pytest.fixture(scope="session")
def motion_bundle(motion_dataset, tmp_path_factory) -> Path:
    """A model trained on ``motion_dataset`` (``helpers.training.FAST``), shared by the session's tests."""
    from helpers.training import FAST

    from moclip.train.pipeline import train

    model = tmp_path_factory.mktemp("motion_model")
    train(motion_dataset, model, FAST, log=lambda m: None)
    return model


@pytest.fixture(scope="session")
def prefect_api():
    """A real Prefect API server on 127.0.0.1 for the whole session, reachable by Dask worker processes."""
    from flows.server import prefect_api as api

    with api() as url:
        yield url


def pytest_collection_modifyitems(session, config, items):
    """Tests that need a Label Studio server: its install (once, into the user's cache) starts now, in the
    background, so it overlaps the tests that run first."""
    if any("label_studio" in getattr(item, "fixturenames", ()) for item in items):
        from helpers.labelstudio import start_install

        start_install()


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """A real Label Studio server on 127.0.0.1 for the session (tests/helpers/labelstudio.py)."""
    from helpers.labelstudio import start

    server = start(tmp_path_factory.mktemp("label-studio"))
    yield server
    server.stop()


@pytest.fixture
def small_fs(tmp_path):
    """A 4 MB tmpfs mounted at tmp_path/mnt (root only); unmounted afterwards."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if not shutil.which("mount") or os.geteuid() != 0:
        pytest.skip("needs root and mount(8) for a small tmpfs")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
