"""Seeded training gives the same weights on a GPU too: deterministic CUDA kernels while a model trains.

On the CPU, seeded training is already byte-identical (tests/test_train.py). On CUDA, cuDNN may pick different
convolution algorithms per run (autotuning) and some kernels accumulate with atomics in no fixed order; inside
``deterministic(device)`` cuDNN uses deterministic algorithms without autotuning, and
``torch.use_deterministic_algorithms`` makes every op use its deterministic kernel. ``warn_only``: an op that has
none (none of moclip's do today) warns with its name instead of failing a long training run; such a warning names
what varies between runs. cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` set before its first call; it is set here when
unset (a process that already used cuBLAS keeps its workspace; a training worker normally has not).

What still varies: results on a GPU differ from the CPU's, and may differ between GPU models, drivers and torch
versions (other kernels); on one machine with one software stack, a seed gives one bundle.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_DETERMINISTIC = ":4096:8"


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels for the block on a CUDA ``device`` (a no-op on the CPU); the previous settings are
    restored after it, so a process that also labels or indexes keeps its fast kernels there."""
    if device.type != "cuda":
        yield
        return
    os.environ.setdefault(CUBLAS_ENV, CUBLAS_DETERMINISTIC)
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]
