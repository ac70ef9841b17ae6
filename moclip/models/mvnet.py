"""MV network: a small per-segment 2D CNN over (2 x H x W) motion grids, pooled over T segments (TSN-style).

Input ``mv`` [B, T, 2, H, W] and ``valid`` [B, T] (segments with no usable MV frames are left out of the mean).
Inputs are divided by a per-channel scale (the train set's RMS motion, see ``set_input_scale``): stored MVs are
small (a few % of the frame per frame), and unscaled they leave BatchNorm's running statistics far from the batch
statistics for many steps, so an early-stopped net can predict one class in eval mode.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def build_stages(stages: list[list[int]], in_channels: int, conv, pool) -> tuple[list[nn.Module], int]:
    """Conv blocks ``conv(cin, cout)`` per stage ([channels, n_convs]), a ``pool()`` between stages."""
    layers: list[nn.Module] = []
    cin = in_channels
    for i, (cout, n_convs) in enumerate(stages):
        for _ in range(n_convs):
            layers.append(conv(cin, cout))
            cin = cout
        if i < len(stages) - 1:
            layers.append(pool())
    return layers, cin


def masked_mean(x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean over segments [B, T, C] -> [B, C], leaving out segments with no usable MV frames."""
    if valid is None:
        return x.mean(1)
    w = (valid > 0).to(x.dtype)
    w = torch.where(w.sum(1, keepdim=True) > 0, w, torch.ones_like(w))  # no usable segment: plain mean
    return (x * w.unsqueeze(-1)).sum(1) / w.sum(1, keepdim=True)


def set_input_scale(net: nn.Module, mv_train: torch.Tensor) -> None:
    """Per-channel RMS of the training MV tensors [N, T, C, H, W] (no mean removed: zero means no motion)."""
    rms = mv_train.float().pow(2).mean(dim=(0, 1, 3, 4)).sqrt()
    net.input_scale.copy_(rms.clamp_min(1e-6))


class MVNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 2, stages: list[list[int]] | None = None,
                 temporal_kernel: int = 3, feature_dim: int = 256, dropout: float = 0.3, **_: object):
        super().__init__()
        self.register_buffer("input_scale", torch.ones(in_channels))
        layers, cin = build_stages(stages or [[32, 2], [64, 2], [128, 1]], in_channels, conv_bn,
                                   lambda: nn.MaxPool2d(2, ceil_mode=True))
        # channels-last: ~1.3x faster convolutions on CPU (oneDNN), ~2x with bf16 autocast
        self.spatial = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()).to(
            memory_format=torch.channels_last)
        self.temporal = nn.Sequential(
            nn.Conv1d(cin, cin, temporal_kernel, padding=temporal_kernel // 2), nn.ReLU(inplace=True))
        self.project = nn.Sequential(nn.Linear(cin, feature_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim

    def features(self, mv: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T, 2, H, W] -> [B, feature_dim] video features (what the fusion head sees)."""
        b, t = mv.shape[:2]
        mv = mv / self.input_scale.view(1, 1, -1, 1, 1)
        x = self.spatial(mv.flatten(0, 1).contiguous(memory_format=torch.channels_last)).view(b, t, -1)  # [B, T, C]
        x = self.temporal(x.transpose(1, 2)).transpose(1, 2)  # [B, T, C]
        return self.project(masked_mean(x, valid))

    def forward(self, mv: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(mv, valid)))


def conv21d(cin: int, cout: int) -> nn.Sequential:
    """(2+1)D convolution: a 3x3 spatial conv, then a 3-tap temporal conv, each with BatchNorm + ReLU."""
    mid = max(cin, cout)
    return nn.Sequential(
        nn.Conv3d(cin, mid, (1, 3, 3), padding=(0, 1, 1), bias=False), nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
        nn.Conv3d(mid, cout, (3, 1, 1), padding=(1, 0, 0), bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


class MVNet21D(nn.Module):
    """A tiny (2+1)D network over the whole [2, T, H, W] motion volume; masked mean over segments at the end."""

    def __init__(self, num_classes: int, in_channels: int = 2, stages: list[list[int]] | None = None,
                 feature_dim: int = 256, dropout: float = 0.3, **_: object):
        super().__init__()
        self.register_buffer("input_scale", torch.ones(in_channels))
        layers, cin = build_stages(stages or [[32, 1], [64, 1], [128, 1]], in_channels, conv21d,
                                   lambda: nn.MaxPool3d((1, 2, 2), ceil_mode=True))
        self.body = nn.Sequential(*layers).to(memory_format=torch.channels_last_3d)
        self.project = nn.Sequential(nn.Linear(cin, feature_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim

    def features(self, mv: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        mv = mv / self.input_scale.view(1, 1, -1, 1, 1)
        x = mv.transpose(1, 2).contiguous(memory_format=torch.channels_last_3d)  # [B, 2, T, H, W]
        x = self.body(x).mean(dim=(3, 4)).transpose(1, 2)  # [B, T, C]
        return self.project(masked_mean(x, valid))

    def forward(self, mv: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(mv, valid)))
