"""The training configs of the tests: FAST (a model good enough to label with: the motion corpus's directions are
learnt) and QUICK (a few epochs: a bundle to exercise code paths, not to be right)."""

from __future__ import annotations

from moclip.config import TrainConfig

FAST = TrainConfig(flip=False, mv_epochs=20, head_epochs=20, patience=30, device="cpu")
QUICK = TrainConfig(flip=False, mv_epochs=3, head_epochs=3, patience=10, device="cpu")
