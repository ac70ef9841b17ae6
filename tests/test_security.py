"""Security group of the reliability table: what moclip exposes and what it agrees to load.

Bundles (safetensors + SHA-256, tampered bundle refused) are tested in test_train.py, CLIP checkpoints
(weights_only) in test_clip.py, manifest paths confined to the corpus root in test_corpus.py.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.integration  # the local Prefect server (the session's, started as the CLI starts its own)


def listening(port: int) -> list[str]:
    """Local addresses (hex, as /proc has them) of TCP sockets in state LISTEN (0A) on ``port``."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if int(local.rsplit(":", 1)[1], 16) == port and state == "0A":
                out.append(local.rsplit(":", 1)[0])
    return out


def test_the_local_prefect_server_listens_on_loopback_only(prefect_api):
    u = urlparse(prefect_api)  # flows.server.prefect_api, the CLI's own local server
    assert u.hostname == "127.0.0.1"
    addrs = listening(u.port)
    assert addrs, "the server was not listening"
    assert all(a == "0100007F" for a in addrs), addrs  # 127.0.0.1 in /proc's little-endian hex; never 0.0.0.0
