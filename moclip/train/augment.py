"""MV-aware augmentation, on batches of MV tensors [B, T, 2, H, W] (x motion is channel 0)."""

from __future__ import annotations

import torch


def hflip(mv: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the samples where ``flip`` [B] is true: reverse the W axis and negate the x motion."""
    flipped = mv.flip(-1)
    flipped[:, :, 0] = -flipped[:, :, 0]
    return torch.where(flip.view(-1, 1, 1, 1, 1), flipped, mv)


def temporal_jitter(mv: torch.Tensor, valid: torch.Tensor, gen: torch.Generator,
                    min_keep: float = 0.75) -> tuple[torch.Tensor, torch.Tensor]:
    """A random contiguous run of segments (>= ``min_keep`` of them), resampled back to T (nearest)."""
    b, t = mv.shape[:2]
    lo = max(1, int(round(min_keep * t)))
    length = torch.randint(lo, t + 1, (b,), generator=gen)
    start = (torch.rand(b, generator=gen) * (t - length + 1)).floor().long()
    pos = (torch.arange(t).float() + 0.5) / t  # [T] in (0, 1)
    idx = (start[:, None] + (pos[None, :] * length[:, None]).floor().long()).clamp_max(t - 1)  # [B, T]
    rows = torch.arange(b)[:, None]
    return mv[rows, idx], valid[rows, idx]


def augment(mv: torch.Tensor, valid: torch.Tensor, gen: torch.Generator,
            flip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Temporal jitter, then (with ``flip``) a horizontal flip of a random half of the batch."""
    mv, valid = temporal_jitter(mv, valid, gen)
    if not flip:
        return mv, valid
    flipped = torch.rand(mv.shape[0], generator=gen) < 0.5
    return hflip(mv, flipped), valid
