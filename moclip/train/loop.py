"""One short training loop for every model here (nanoGPT style: explicit, no framework).

AdamW, cosine learning rate, early stopping on validation top-1; the best epoch's weights are restored.
Forward passes run under autocast at ``FitConfig.precision`` (bf16 where native); weights and AdamW state stay fp32.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from moclip.models.run import BatchFn, predict
from moclip.precision import autocast

__all__ = ["BatchFn", "FitConfig", "History", "fit", "predict"]


@dataclass
class FitConfig:
    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    patience: int = 8  # epochs without a better val top-1 before stopping
    label_smoothing: float = 0.1
    seed: int = 0
    precision: str = "fp32"  # forward-pass precision: fp32 | bf16 (see moclip.precision.train_precision)


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)
    val_top1: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val_top1: float = -1.0

    def to_dict(self) -> dict:
        return {"train_loss": self.train_loss, "val_top1": self.val_top1, "best_epoch": self.best_epoch,
                "best_val_top1": self.best_val_top1}


def fit(model: nn.Module, batch: BatchFn, train_idx: np.ndarray, val_idx: np.ndarray, cfg: FitConfig,
        on_epoch: Callable[[int, float, float], None] | None = None) -> History:
    gen = np.random.default_rng(cfg.seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, fused=True)
    steps_per_epoch = max(1, math.ceil(len(train_idx) / cfg.batch_size))
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    hist, best_state, bad, best_loss = History(), copy.deepcopy(model.state_dict()), 0, float("inf")
    y_val = batch(val_idx, False)[1].cpu().numpy() if len(val_idx) else np.zeros(0, np.int64)
    for epoch in range(cfg.epochs):
        model.train()
        order = gen.permutation(train_idx)
        losses = []
        for i in range(0, len(order), cfg.batch_size):
            chunk = order[i:i + cfg.batch_size]
            if len(chunk) < 2 and len(order) > 2:
                continue  # BatchNorm needs two samples
            inputs, y = batch(chunk, True)
            with autocast(y.device, cfg.precision):
                logits = model(*inputs)
            loss = loss_fn(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        val_scores = predict(model, batch, val_idx, precision=cfg.precision)
        val_top1 = float((val_scores.argmax(1) == y_val).mean()) if len(val_idx) else float("nan")
        val_loss = float(loss_fn(torch.from_numpy(val_scores), torch.from_numpy(y_val))) if len(val_idx) else 0.0
        hist.train_loss.append(float(np.mean(losses)) if losses else float("nan"))
        hist.val_top1.append(val_top1)
        if on_epoch:
            on_epoch(epoch, hist.train_loss[-1], val_top1)
        # best = highest val top-1; ties go to the lower val loss (a more confident, better-calibrated model)
        if not len(val_idx) or (val_top1, -val_loss) > (hist.best_val_top1, -best_loss):
            hist.best_val_top1, hist.best_epoch, best_loss, bad = val_top1, epoch, val_loss, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return hist
