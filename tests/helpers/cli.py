"""The `moclip` (and `prefect`) commands as a user runs them: real processes, each with its own Prefect home."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

BIN = Path(sys.executable).parent
MOCLIP = str(BIN / "moclip")
PREFECT = str(BIN / "prefect")
REPO = Path(__file__).resolve().parents[2]

_template: Path | None = None
_lock = threading.Lock()


def prefect_home(dest: Path) -> Path:
    """A Prefect home of its own at ``dest``, its database already migrated.

    Each CLI run in the tests gets one, so a run the tests kill (SIGKILL mid-write) cannot leave a database that the
    next test's server then has to recover. The database is migrated once per test session (``prefect server
    database upgrade``, ~20 s) and copied from there, so a server starts warm (~10 s) instead of cold (30-75 s).
    """
    global _template
    with _lock:
        if _template is None:
            t = Path(tempfile.mkdtemp(prefix="moclip-test-prefect-template-"))
            atexit.register(shutil.rmtree, t, ignore_errors=True)
            env = {**_user_env(), "PREFECT_HOME": str(t)}
            subprocess.run([PREFECT, "server", "database", "upgrade", "-y"], env=env, check=True,
                           capture_output=True, timeout=600)
            _template = t
    shutil.copytree(_template, dest)
    return dest


def _user_env() -> dict[str, str]:
    """This process's environment without what the test session set for itself: no API URL (the CLI starts its own
    server, as for a user) and Prefect's default log level (the CLI sets its own)."""
    return {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_LOGGING_LEVEL")}


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of one CLI run: a user's, with its own Prefect home at ``home`` (see ``prefect_home``)."""
    if not home.exists():
        prefect_home(home)
    return {**_user_env(), "PREFECT_HOME": str(home), **extra}


def run_moclip(*args: str, home: Path, timeout: float = 600, **extra_env: str) -> subprocess.CompletedProcess:
    """``moclip ARGS`` through the installed console script, its output captured (so it is not a terminal)."""
    return subprocess.run([MOCLIP, *args], capture_output=True, text=True, timeout=timeout,
                          env=cli_env(home, **extra_env), cwd=REPO)
