"""Heads trained on frozen features: the fusion MLP and the CLIP linear probe.

Both standardise their input with train-set statistics. A feature dimension that was constant in training (a
ReLU unit of the MV net that never fired on a training video, say) carries no information the head could have
learnt, and a weight behind it was never trained; standardising it by its (zero) std would turn any value it
takes on a new video into a huge input. Such dimensions are switched off (``active`` = 0: they never reach the
head), and every other std is floored at a fraction of the typical std, so no input dimension is amplified by
more than ``1 / STD_FLOOR`` times the typical one.
"""

from __future__ import annotations

import torch
from torch import nn

# A dimension whose train std is below CONSTANT x the median std is constant in training: switched off.
CONSTANT = 1e-4
# Every other std is at least STD_FLOOR x the median std (a near-constant dimension is amplified at most 100x).
STD_FLOOR = 1e-2


def floor_and_mask(std: torch.Tensor, zero: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(std to divide by, active) from raw stds: below CONSTANT x the median std (of those above ``zero``) a
    dimension is constant (inactive, divided by 1); every other std is at least STD_FLOOR x that median."""
    positive = std[std > zero]
    typical = positive.median() if len(positive) else torch.tensor(1.0, device=std.device)
    active = std > torch.clamp(CONSTANT * typical, min=zero)
    return torch.where(active, std.clamp_min(STD_FLOOR * typical), torch.ones_like(std)), active.float()


def standardisation_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, std, active) of the rows ``x`` [N, D]: ``std`` floored and ``active`` 0 for constant dimensions."""
    d = x.shape[1]
    if len(x) == 0:
        return torch.zeros(d, device=x.device), torch.ones(d, device=x.device), torch.zeros(d, device=x.device)
    x = x.float()
    std = x.std(0) if len(x) > 1 else torch.zeros(d, device=x.device)
    return (x.mean(0), *floor_and_mask(std))


class _Standardised(nn.Module):
    """``mean`` / ``std`` / ``active`` buffers and the standardisation they define."""

    def _init_standardisation(self, dim: int) -> None:
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.register_buffer("active", torch.ones(dim))

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std * self.active

    def _blocks(self) -> list[slice]:
        """The input's blocks whose statistics are fitted separately."""
        return [slice(None)]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Bundles of format 1 have no ``active`` buffer and floored the std at 1e-6 (absolute): apply the rule above
        # to their statistics, block by block as fitting does, so an old model no longer amplifies a dead feature
        # a million times either (a std of exactly 1e-6 was a constant dimension).
        if prefix + "std" in state_dict and prefix + "active" not in state_dict:
            std = state_dict[prefix + "std"].clone()
            active = torch.zeros_like(std)
            for block in self._blocks():
                std[block], active[block] = floor_and_mask(std[block], zero=1e-6)
            state_dict[prefix + "std"], state_dict[prefix + "active"] = std, active
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class FusionHead(_Standardised):
    """MLP on [MV-net features || CLIP features], each standardised with train-set statistics.

    Modality dropout: in training, each sample loses one whole stream (standardised to 0, the train mean) with
    probability ``stream_dropout``. The MV net was trained on the same videos, so its features look more reliable
    on train than they are on test; dropping streams makes the head use both. A video without usable motion
    vectors (``mv_missing``) takes that same path, in training and at inference: its MV block is 0 (the train
    mean), so the head predicts it from CLIP alone, as it learnt to.
    """

    def __init__(self, mv_dim: int, clip_dim: int, num_classes: int, hidden: int = 512, dropout: float = 0.5,
                 stream_dropout: float = 0.3):
        super().__init__()
        self.stream_dropout = stream_dropout
        self._init_standardisation(mv_dim + clip_dim)
        self.mv_dim, self.clip_dim = mv_dim, clip_dim
        self.net = nn.Sequential(
            nn.Dropout(dropout / 2), nn.Linear(mv_dim + clip_dim, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def _blocks(self) -> list[slice]:
        return [slice(0, self.mv_dim), slice(self.mv_dim, None)]

    def fit_standardisation(self, x_train: torch.Tensor, mv_missing: torch.Tensor | None = None) -> None:
        """Train-set statistics; the MV block's come from the videos that have motion vectors only."""
        mv_rows = x_train if mv_missing is None else x_train[~mv_missing]
        mv_stats = standardisation_stats(mv_rows[:, :self.mv_dim])
        clip_stats = standardisation_stats(x_train[:, self.mv_dim:])
        for buf, a, b in zip((self.mean, self.std, self.active), mv_stats, clip_stats):
            buf.copy_(torch.cat([a, b]))

    def forward(self, x: torch.Tensor, mv_missing: torch.Tensor | None = None) -> torch.Tensor:
        z = self.standardise(x)
        b = z.shape[0]
        keep_mv = torch.ones(b, 1, dtype=torch.bool, device=z.device)
        keep_clip = keep_mv
        if mv_missing is not None:
            keep_mv = ~mv_missing.view(b, 1).bool()
        if self.training and self.stream_dropout > 0:
            drop = torch.rand(b, 1, device=z.device) < self.stream_dropout
            which_mv = torch.rand(b, 1, device=z.device) < 0.5
            keep_mv = keep_mv & ~(drop & which_mv)
            keep_clip = ~(drop & ~which_mv) | ~keep_mv  # never drop both streams of one sample
        if mv_missing is not None or self.training:
            mask = torch.cat([keep_mv.expand(b, self.mv_dim), keep_clip.expand(b, self.clip_dim)], dim=1)
            z = z * mask
        return self.net(z)


class LinearProbe(_Standardised):
    """Logistic regression on standardised CLIP features."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self._init_standardisation(dim)
        self.linear = nn.Linear(dim, num_classes)

    def fit_standardisation(self, x_train: torch.Tensor) -> None:
        for buf, v in zip((self.mean, self.std, self.active), standardisation_stats(x_train)):
            buf.copy_(v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.standardise(x))


def set_standardisation(model: FusionHead | LinearProbe, x_train: torch.Tensor) -> None:
    """Fit ``model``'s input standardisation on the training rows ``x_train``."""
    model.fit_standardisation(x_train)
