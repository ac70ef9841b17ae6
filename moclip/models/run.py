"""Running a trained model: batched forward passes without gradients, and scores -> probabilities. Shared by
training (validation, ``moclip.train``) and serving (``moclip.inference``), which does not depend on training."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from moclip.precision import autocast

# batch(indices, train) -> (inputs tuple, labels)
BatchFn = Callable[[np.ndarray, bool], tuple[tuple[torch.Tensor, ...], torch.Tensor]]


@torch.no_grad()
def predict(model: nn.Module, batch: BatchFn, idx: np.ndarray, batch_size: int = 512,
            precision: str = "fp32") -> np.ndarray:
    """The model's outputs for rows ``idx`` ([len(idx), C] float32), ``batch_size`` rows a pass, in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    with autocast(device, precision):
        out = [model(*batch(idx[i:i + batch_size], False)[0]).float().cpu()
               for i in range(0, len(idx), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` (float64 inside, float32 out)."""
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
