"""Heads trained on frozen features: the fusion MLP and the CLIP linear probe."""

from __future__ import annotations

import torch
from torch import nn


class FusionHead(nn.Module):
    """MLP on [MV-net features || CLIP features], each standardised with train-set statistics.

    Modality dropout: in training, each sample loses one whole stream (set to its train mean) with probability
    ``stream_dropout``. The MV net was trained on the same videos, so its features look more reliable on train
    than they are on test; dropping streams makes the head use both.
    """

    def __init__(self, mv_dim: int, clip_dim: int, num_classes: int, hidden: int = 512, dropout: float = 0.5,
                 stream_dropout: float = 0.3):
        super().__init__()
        self.stream_dropout = stream_dropout
        self.register_buffer("mean", torch.zeros(mv_dim + clip_dim))
        self.register_buffer("std", torch.ones(mv_dim + clip_dim))
        self.mv_dim, self.clip_dim = mv_dim, clip_dim
        self.net = nn.Sequential(
            nn.Dropout(dropout / 2), nn.Linear(mv_dim + clip_dim, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std
        if self.training and self.stream_dropout > 0:
            b = z.shape[0]
            drop = torch.rand(b, 1, device=z.device) < self.stream_dropout
            which_mv = torch.rand(b, 1, device=z.device) < 0.5
            keep_mv = ~(drop & which_mv)
            keep_clip = ~(drop & ~which_mv)
            mask = torch.cat([keep_mv.expand(b, self.mv_dim), keep_clip.expand(b, self.clip_dim)], dim=1)
            z = z * mask
        return self.net(z)


class LinearProbe(nn.Module):
    """Logistic regression on standardised CLIP features."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x - self.mean) / self.std)


def set_standardisation(model: nn.Module, x_train: torch.Tensor) -> None:
    model.mean.copy_(x_train.mean(0))
    model.std.copy_(x_train.std(0).clamp_min(1e-6))
