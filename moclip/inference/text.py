"""The CLIP text tower a dataset's image embeddings match: zero-shot class embeddings (training and labelling)."""

from __future__ import annotations

import numpy as np
import torch

from moclip import zeroshot
from moclip.config import ClipConfig
from moclip.dataset import read_settings


def _clip_config(manifest: dict) -> ClipConfig:
    """The dataset's CLIP settings, for building its text tower (any precision: the text is embedded in fp32)."""
    return read_settings(manifest).clip.model_copy(update={"precision": "fp32"})


def check_text_weights(url: str, manifest: dict) -> None:
    """Refuse CLIP weights that no longer resolve to the id the dataset's image embeddings were made with (a
    checkpoint file replaced in place, another activation): a text tower of other weights would not match them.
    Cheap (resolves, never loads): run it before any work that would need the text tower."""
    from moclip.clip import resolve_weights

    cfg = _clip_config(manifest)
    have, want = resolve_weights(cfg.model, cfg.weights, cfg.activation).weights_id, manifest.get("clip_weights_id")
    if want and have != want:
        raise ValueError(f"{url}: its CLIP image embeddings were made with weights {want}, but {cfg.weights!r} "
                         f"now resolves to {have}; the text tower would not match them. Restore those weights, "
                         "or re-index the dataset with the new ones")


def text_cache_id(manifest: dict) -> str:
    """Keys the text-embedding cache: the CLIP model and its weights id (file and random-init ids name no model)."""
    return f"{manifest['settings']['clip']['model']}:{manifest.get('clip_weights_id', 'unknown')}"


def load_clip_model(manifest: dict, device: torch.device, url: str = "the dataset"):
    """The full open_clip model (text tower included) the dataset was indexed with, and its tokenizer."""
    import open_clip

    from moclip.clip import load_clip

    check_text_weights(url, manifest)
    cfg = _clip_config(manifest)
    return load_clip(cfg, device=str(device)).model, open_clip.get_tokenizer(cfg.model)


def class_embeddings(manifest: dict, classes: list[str], prompts: str, device: torch.device,
                     url: str = "the dataset", own_prompts: dict[str, tuple[str, ...]] | None = None) -> np.ndarray:
    """Zero-shot embeddings [C, D] of ``classes`` by the dataset's text tower (cached; see moclip.zeroshot);
    ``own_prompts``: classes whose prompts are given instead of the template set ``prompts``."""
    clip_model, tokenizer = load_clip_model(manifest, device, url)
    return zeroshot.text_embeddings(clip_model, tokenizer, classes, text_cache_id(manifest), prompts,
                                    own_prompts=own_prompts)
