"""A trained bundle ready for inference, for evaluation and labelling alike.

    p = Predictor.load(path, device)      the bundle loaded once (weights hash-checked once), the models rebuilt
                                          from their stored constructor arguments (meta.architecture), eval mode
    p.meta  p.classes  p.settings  p.temperature  p.precision  p.text
    p.check_dataset(url, manifest)        refuse features indexed with other settings than the model's
    p.method_scores(x, idx)               every method's class scores (evaluate)
    p.fusion_probs(x)                     calibrated fusion probabilities; CLIP-only path where MVs are missing
    p.zero_shot_text(names, url, manifest)  class embeddings of names the model was never trained on
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from moclip import zeroshot
from moclip.bundle import Bundle, load_bundle
from moclip.config import FeatureSettings
from moclip.dataset import whole_clip_settings
from moclip.inference.features import Inputs, fused_features
from moclip.inference.meta import BundleMeta, validate_meta
from moclip.inference.text import class_embeddings
from moclip.models.run import predict, softmax
from moclip.precision import autocast, resolve_device, train_precision


def _rows(*tensors: torch.Tensor) -> Callable:
    """Inference batches (``moclip.models.run.predict``): the rows ``idx`` of each tensor, no labels."""

    def batch(idx: np.ndarray, train: bool):
        i = torch.from_numpy(idx).to(tensors[0].device)
        return tuple(t[i] for t in tensors), None

    return batch


def method_scores(x: Inputs, idx: np.ndarray, net, head, probe, text: np.ndarray, fused: torch.Tensor,
                  precision: str = "fp32") -> dict[str, np.ndarray]:
    """Class scores [len(idx), C] of every method on the rows ``idx``; ``fused``: all rows' fused features."""
    rows = torch.from_numpy(idx).to(x.clip.device)
    return {
        "zero_shot_mean": zeroshot.scores(x.clip[rows].cpu().numpy(), text),
        "zero_shot_single": zeroshot.scores(x.clip_frames[idx, x.clip_frames.shape[1] // 2], text),
        "mv_only": predict(net, _rows(x.mv, x.valid), idx, precision=precision),
        "clip_linear_probe": predict(probe, _rows(x.clip), idx, precision=precision),
        "fusion": predict(head, _rows(fused, x.mv_missing), idx, precision=precision),
    }


class Predictor:
    """A bundle's models on one device, with its typed metadata (see the module docstring)."""

    def __init__(self, meta: BundleMeta, weights: dict[str, dict[str, torch.Tensor]], device: torch.device,
                 path: Path | None = None):
        a = meta.architecture
        net = a.mvnet.build()
        net.load_state_dict(weights["mvnet"])
        head = a.fusion.build()
        head.load_state_dict(weights["fusion"])  # format 1: standardisation upgraded (moclip.models.heads)
        probe = a.probe.build()
        probe.load_state_dict(weights["probe"])
        self.meta, self.device, self.path = meta, device, path
        self.net, self.head, self.probe = net.to(device).eval(), head.to(device).eval(), probe.to(device).eval()
        self.text: np.ndarray = weights["text"]["class_embeddings"].numpy()  # [C, D] trained classes' embeddings
        self.precision = train_precision(device, meta.train_config.precision)  # as trained, where native here

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto") -> Predictor:
        """The bundle at ``path`` (refused if any weights file does not match its recorded hash) on ``device``."""
        return cls.from_bundle(load_bundle(path), device)

    @classmethod
    def from_bundle(cls, bundle: Bundle, device: str | torch.device = "auto") -> Predictor:
        dev = device if isinstance(device, torch.device) else resolve_device(device)
        return cls(validate_meta(bundle.meta, bundle.path), bundle.weights, dev, bundle.path)

    @property
    def classes(self) -> list[str]:
        return self.meta.classes

    @property
    def settings(self) -> FeatureSettings:
        """The feature settings the models were trained on (a dataset to score must be indexed with them)."""
        return self.meta.features.settings

    @property
    def temperature(self) -> dict[str, float]:
        """Each calibrated model's temperature, fitted on val (1.0: a format-1 bundle, uncalibrated)."""
        return self.meta.temperature

    @property
    def model_id(self) -> str:
        """Names the model in predictions: the start of the fusion weights' SHA-256."""
        return str(self.meta.files.get("fusion.safetensors", "?"))[:16]

    def check_dataset(self, url: str, manifest: dict) -> None:
        """Refuse a dataset indexed with other feature settings (or other CLIP weights) than the model's."""
        want = self.meta.features.settings_hash
        # windows of whole-clip features: compared as the whole-clip settings
        have = whole_clip_settings(manifest, url)[1] if manifest.get("settings") else manifest.get("settings_hash")
        if have != want:
            raise ValueError(f"{url}: indexed with feature settings {have}, but the model was trained on {want} "
                             f"(CLIP weights {manifest.get('clip_weights_id')} vs "
                             f"{self.meta.clip.weights_id}); index it with the model's settings")

    def fused(self, x: Inputs) -> torch.Tensor:
        """What the fusion head sees, for every row of ``x``."""
        return fused_features(self.net, x.mv, x.valid, x.clip, self.precision, self.meta.fusion.mv_input)

    def method_scores(self, x: Inputs, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Every method's class scores [len(idx), C] on the rows ``idx`` of ``x``."""
        return method_scores(x, idx, self.net, self.head, self.probe, self.text, self.fused(x), self.precision)

    @torch.no_grad()
    def fusion_logits(self, x: Inputs) -> np.ndarray:
        """The fusion head's logits [N, C], in one pass; rows without usable MVs take its CLIP-only path."""
        with autocast(self.device, self.precision):
            return self.head(self.fused(x), x.mv_missing).float().cpu().numpy()

    def fusion_probs(self, x: Inputs) -> np.ndarray:
        """Calibrated fusion probabilities [N, C] over the trained classes: ``softmax(logits / T_fusion)``."""
        return softmax(self.fusion_logits(x), self.temperature["fusion"])

    probs = fusion_probs  # what labelling asks of any labeller (``moclip.inference.zero_shot.ZeroShotModel`` too)

    @property
    def mv_sources(self) -> dict[str, int] | None:
        """Training videos by MV source (None: a bundle from before it was recorded)."""
        return self.meta.mv_sources

    @property
    def random_init(self) -> bool:
        """Whether the CLIP the model was trained on had random weights."""
        return self.meta.clip.random_init

    def zero_shot_text(self, names: list[str], url: str, manifest: dict) -> np.ndarray:
        """Zero-shot embeddings [len(names), D] of class names by the text tower of the dataset at ``url`` (whose
        manifest is ``manifest``), with the prompts the model was trained with."""
        return class_embeddings(manifest, names, self.meta.train_config.prompts, self.device, url)
