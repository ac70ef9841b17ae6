"""Numeric precision: which reduced precision is fast on this machine, and autocast contexts for it."""

from __future__ import annotations

import contextlib

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def native_bf16_cpu() -> bool:
    """Whether this CPU has native bf16 instructions (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> cuda if available else cpu; a cuda device without CUDA is a clear error."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use device 'cpu'")
    return dev


def device_type(device: str) -> str:
    """"cuda" or "cpu": the kind of device ``device`` names; "auto" is this machine's (cuda if available). A cuda
    device is not checked here: the flow of a Dask cluster with GPU workers may run on a machine without one."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device).type


def default_precision(device: str = "auto") -> str:
    """The fastest precision that keeps embeddings close to fp32 on ``device``'s kind of machine.

    fp16 on CUDA; bf16 on CPUs with native bf16 instructions (AVX512-BF16 or AMX: ~3.5x faster than fp32 for
    ViT-B-32 here, embeddings within cosine 0.999 of fp32); fp32 elsewhere, where bf16 is emulated and slower.
    """
    if device_type(device) == "cuda":
        return "fp16"
    return "bf16" if native_bf16_cpu() else "fp32"


def train_precision(device: torch.device, precision: str = "auto") -> str:
    """Precision for training small nets: bf16 where it is native (CPU with AVX512-BF16/AMX, CUDA with bf16), else
    fp32. bf16 keeps fp32's range, so no loss scaling is needed; weights and optimiser state stay fp32."""
    if precision != "auto":
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"unknown training precision {precision!r}: use auto, fp32 or bf16")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if native_bf16_cpu() else "fp32"


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass (a no-op context for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[precision])
