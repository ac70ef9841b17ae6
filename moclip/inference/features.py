"""A dataset's features as the models take them, and the frozen features the heads see (training shares these)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from moclip import zeroshot
from moclip.dataset import FeatureSet
from moclip.precision import autocast


def mv_missing(valid: torch.Tensor) -> torch.Tensor:
    """[N, T] usable-MV counts per segment -> [N] bool: the video has no usable motion vectors at all."""
    return (valid > 0).sum(1) == 0


@dataclass
class Inputs:
    """Every video's model inputs, on one device."""

    mv: torch.Tensor  # [N, T, 2, H, W] motion-vector tensors
    valid: torch.Tensor  # [N, T] usable-MV counts per segment
    clip: torch.Tensor  # [N, D] video embedding: mean of normalised frames
    clip_frames: np.ndarray  # [N, K, D]
    mv_missing: torch.Tensor  # [N] bool: no segment has usable motion vectors (all-intra, 1 frame, ...)

    @classmethod
    def of(cls, fs: FeatureSet, device: torch.device) -> Inputs:
        valid = torch.from_numpy(fs.mv_valid).to(device)
        return cls(mv=torch.from_numpy(fs.mv).to(device), valid=valid,
                   clip=torch.from_numpy(zeroshot.video_embedding(fs.clip)).float().to(device), clip_frames=fs.clip,
                   mv_missing=mv_missing(valid))


@torch.no_grad()
def mv_features(net: torch.nn.Module, mv: torch.Tensor, valid: torch.Tensor, batch: int = 512,
                precision: str = "fp32", probabilities: bool = False) -> torch.Tensor:
    """The MV net's penultimate features [N, F] (``probabilities``: its class probabilities [N, C], which nets
    trained on other videos give on one scale), in eval mode."""
    net.eval()
    f = net if probabilities else net.features
    with autocast(mv.device, precision):
        out = torch.cat([f(mv[i:i + batch], valid[i:i + batch]).float() for i in range(0, len(mv), batch)])
    return out.softmax(dim=1) if probabilities else out


def fused_features(net: torch.nn.Module, mv: torch.Tensor, valid: torch.Tensor, clip: torch.Tensor,
                   precision: str = "fp32", mv_input: str = "features") -> torch.Tensor:
    """What the fusion head sees: [frozen MV-net features (or probabilities: ``mv_input``) || CLIP embedding]."""
    probabilities = mv_input == "probabilities"
    return torch.cat([mv_features(net, mv, valid, precision=precision, probabilities=probabilities), clip], dim=1)
