"""Security group of the reliability table: what moclip exposes and what it agrees to load.

Bundles (safetensors + SHA-256, tampered bundle refused) are tested in test_train.py, CLIP checkpoints
(weights_only) in test_clip.py, manifest paths confined to the corpus root in test_corpus.py.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.cli import cli_env

pytestmark = pytest.mark.integration  # starts the local Prefect server in a child process

REPO = Path(__file__).resolve().parents[1]

LISTENERS = r"""
import os, sys
from urllib.parse import urlparse
from flows.runtime import prefect_api

def listening(port):
    # (local address, state) of TCP sockets on this port; state 0A = LISTEN
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if int(local.rsplit(":", 1)[1], 16) == port and state == "0A":
                out.append(local.rsplit(":", 1)[0])
    return out

with prefect_api() as url:
    u = urlparse(url)
    print(u.hostname, listening(u.port))
"""


def test_the_local_prefect_server_listens_on_loopback_only(tmp_path):
    env = cli_env(tmp_path / "prefect", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", LISTENERS], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    host, addrs = out.stdout.strip().splitlines()[-1].split(" ", 1)
    assert host == "127.0.0.1"
    addrs = ast.literal_eval(addrs)  # a printed list of hex addresses
    assert addrs, "the server was not listening"
    assert all(a == "0100007F" for a in addrs), addrs  # 127.0.0.1 in /proc's little-endian hex; never 0.0.0.0
