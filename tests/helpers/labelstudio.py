"""A real Label Studio server for the tests, on loopback, in a virtual environment of its own (its Django pins must
not touch moclip's): installed once into the user's cache (``MOCLIP_TEST_CACHE``, default ~/.cache/moclip-tests;
~1 GB, ~3 minutes), started per test session with a legacy API token and local-files serving of a media folder.

The install starts in the background when the test session starts (``start_install``), so it overlaps the tests
that run before the first one that needs the server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

VERSION = "1.23.*"
TOKEN = "moclip-test-token-0123456789"
USER, PASSWORD = "moclip@example.com", "moclip-test-password"
_install: subprocess.Popen | None = None
_lock = threading.Lock()


def home() -> Path:
    return Path(os.environ.get("MOCLIP_TEST_CACHE", Path.home() / ".cache" / "moclip-tests")) / "label-studio-1.23"


def _ready(venv: Path) -> bool:
    return (venv / "bin" / "label-studio").exists() and (venv / ".installed").exists()


def start_install() -> None:
    """Begin installing Label Studio in the background unless it is there (or being installed)."""
    global _install
    with _lock:
        venv = home()
        if _install is not None or _ready(venv):
            return
        venv.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(venv, ignore_errors=True)  # a half-finished install of an earlier session
        python = shutil.which("python3") or sys.executable
        script = (f'"{python}" -m venv "{venv}" && "{venv}/bin/pip" install -q "label-studio=={VERSION}" '
                  f'&& touch "{venv}/.installed"')
        log = open(venv.parent / "label-studio-install.log", "w")  # noqa: SIM115 - the process writes it
        _install = subprocess.Popen(["bash", "-c", script], stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)


def installed(timeout_s: float = 900) -> Path:
    """The Label Studio virtual environment, waiting for the background install."""
    start_install()
    if _install is not None:
        _install.wait(timeout=timeout_s)
    venv = home()
    if not _ready(venv):
        log = venv.parent / "label-studio-install.log"
        raise RuntimeError(f"Label Studio {VERSION} did not install: {log.read_text()[-2000:] if log.exists() else ''}")
    return venv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    token: str
    media: Path  # Label Studio's LOCAL_FILES_DOCUMENT_ROOT: videos under a folder below it are served
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start(data: Path, timeout_s: float = 300) -> Server:
    """A fresh server with its data in ``data`` (a user with a legacy token, local files under ``data/media``)."""
    import httpx

    venv = installed()
    media = data / "media"
    media.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "PREFECT_"))},
           "LABEL_STUDIO_BASE_DATA_DIR": str(data / "ls"), "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(media), "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
           "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true", "SENTRY_DSN": "", "COLLECT_ANALYTICS": "false"}
    log = open(data / "label-studio.log", "w")  # noqa: SIM115 - the process writes it
    proc = subprocess.Popen([str(venv / "bin" / "label-studio"), "start", "--no-browser", "--internal-host",
                             "127.0.0.1", "--port", str(port), "--username", USER, "--password", PASSWORD,
                             "--user-token", TOKEN, "--enable-legacy-api-token"],
                            env=env, cwd=data, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = (data / "label-studio.log").read_text()[-3000:]
            raise RuntimeError(f"Label Studio exited ({proc.returncode}): {said}")
        try:
            if httpx.get(f"{url}/health", timeout=2).json().get("status") == "UP":
                return Server(url, TOKEN, media, proc)
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1)
    proc.kill()
    raise RuntimeError(f"Label Studio did not answer within {timeout_s} s: "
                       f"{(data / 'label-studio.log').read_text()[-3000:]}")
