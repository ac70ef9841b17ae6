"""CLIP zero-shot as a labeller: class names instead of a trained model (day one of an archive).

``ZeroShotModel`` answers what the label code asks of a ``Predictor`` (``classes``, ``device``, ``model_id``,
``mv_sources``, ``probs``): each video's (or window's) embedding, the mean of its normalised frames, against the
vocabulary's text embeddings made by the dataset's own text tower. ``probs`` are CLIP's zero-shot softmax at its
logit scale (100 x cosine): a ranking, **not calibrated** (a 0.9 is not right 90 % of the time). Changing the
vocabulary costs a text embedding and a matrix product per shard, never a re-index.
"""

from __future__ import annotations

import numpy as np
import torch

from moclip import zeroshot
from moclip.inference.features import Inputs
from moclip.inference.text import class_embeddings
from moclip.models.run import softmax
from moclip.precision import resolve_device

ZERO_SHOT_PREFIX = "zero-shot"


def zero_shot_model_id(weights_id: str, vocabulary: zeroshot.Vocabulary, templates: str) -> str:
    """What prediction rows name as their model: ``zero-shot:<CLIP weights id>:<vocabulary hash>``."""
    return f"{ZERO_SHOT_PREFIX}:{weights_id}:{vocabulary.digest(templates)}"


class ZeroShotModel:
    """A vocabulary's text embeddings [C, D], scoring image embeddings (see the module docstring)."""

    mv_sources = None  # trained on nothing: no motion-vector source is unseen
    random_init = False

    def __init__(self, classes: list[str], text: np.ndarray, model_id: str, device: torch.device | str = "cpu"):
        if len(classes) != len(text):
            raise ValueError(f"{len(classes)} class names but {len(text)} text embeddings")
        self.classes, self.text, self.model_id = list(classes), np.asarray(text, np.float32), model_id
        self.device = device if isinstance(device, torch.device) else resolve_device(device)

    @classmethod
    def for_dataset(cls, vocabulary: zeroshot.Vocabulary, templates: str, url: str, manifest: dict,
                    device: torch.device | str = "cpu") -> ZeroShotModel:
        """The vocabulary embedded by the text tower of the dataset at ``url`` (whose manifest is ``manifest``):
        refused when its CLIP weights no longer resolve to the ones its image embeddings were made with."""
        dev = device if isinstance(device, torch.device) else resolve_device(device)
        text = class_embeddings(manifest, list(vocabulary.names), templates, dev, url, vocabulary.own_prompts)
        model = cls(list(vocabulary.names), text,
                    zero_shot_model_id(str(manifest.get("clip_weights_id")), vocabulary, templates), dev)
        model.random_init = bool(manifest.get("clip_random"))
        return model

    def probs(self, x: Inputs) -> np.ndarray:
        """CLIP's zero-shot softmax [N, C] over the vocabulary (100 x cosine; not calibrated)."""
        return softmax(zeroshot.scores(x.clip.float().cpu().numpy(), self.text))
