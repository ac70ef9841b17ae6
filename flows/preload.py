"""Build the CLIP encoder once, in the process that local worker processes are forked from.

``flows.processes`` starts a fork server that imports torch, open_clip and moclip once; it imports this module too.
When ``request`` named an encoder before that server started, the server builds it (CPU only) into
``load_clip``'s cache, so every worker forked from it starts with the model in memory, its weights shared
copy-on-write, instead of building its own (~1 s of CPU and ~600 MB for ViT-B-32 per worker). Anything that goes
wrong here is only logged: workers then load the model themselves and report the error as usual.
"""

from __future__ import annotations

import json
import logging
import os

from moclip.config import ClipConfig

ENV = "MOCLIP_PRELOAD_CLIP"
log = logging.getLogger(__name__)


def request(clip: ClipConfig, device: str) -> None:
    """Ask a fork server started after this call to build ``clip`` for ``device`` (honoured for "cpu" only)."""
    os.environ[ENV] = json.dumps({"clip": clip.model_dump(), "device": device})


def preload() -> bool:
    """Build the requested encoder into this process's cache; True when it did."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return False
    try:
        spec = json.loads(wanted)
        if spec.pop("device", None) != "cpu":  # a process that forks must never initialise CUDA
            return False
        import torch

        from moclip.clip import load_clip

        torch.set_num_threads(1)  # no OpenMP thread pool in a process that forks; workers set their own count
        load_clip(ClipConfig.model_validate(spec["clip"]), device="cpu")
        return True
    except Exception as e:  # noqa: BLE001 - the workers load it themselves and report any error
        log.warning("could not preload CLIP for the workers (%s: %s); each worker loads it", type(e).__name__, e)
        return False


if os.environ.get(ENV):  # imported by the fork server (flows.processes.WORKER_PRELOAD)
    preload()
