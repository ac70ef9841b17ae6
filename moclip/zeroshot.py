"""CLIP zero-shot classification: class names -> prompt ensemble -> text embeddings -> cosine scores.

Text embeddings are cached on disk (keyed by CLIP weights id, templates and class names), because a prompt
ensemble over 101 classes costs tens of seconds on a CPU and never changes for the same weights.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import torch

from moclip.files import atomic_write_bytes
from moclip.vocabulary import Vocabulary, humanize, read_vocabulary_file

__all__ = ["TEMPLATE_SETS", "Vocabulary", "cache_dir", "humanize", "normalize", "read_vocabulary_file", "scores",
           "text_embeddings", "video_embedding"]

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    # a compact ensemble of the CLIP paper's UCF101 prompts
    "short": (
        "a video of a person {}.", "a photo of a person {}.", "a video of a person doing {}.",
        "a video of a person performing {}.", "a video of a person practicing {}.", "a example of a person {}.",
        "a demonstration of a person {}.", "a photo of the person doing {}.",
    ),
    # the CLIP paper's full UCF101 ensemble (48 prompts)
    "clip-ucf101": tuple(
        f"a {kind} of {art} person {verb}{{}}."
        for verb in ("", "using ", "doing ", "during ", "performing ", "practicing ")
        for art in ("a", "the")
        for kind in ("photo", "video", "example", "demonstration")
    ),
    "plain": ("{}",),
}

def cache_dir() -> Path:
    return Path(os.environ.get("MOCLIP_CACHE", Path.home() / ".cache" / "moclip")) / "text"


def text_embeddings(model: torch.nn.Module, tokenizer, classnames: list[str], weights_id: str,
                    templates: str = "short", batch_size: int = 256, use_cache: bool = True,
                    own_prompts: dict[str, tuple[str, ...]] | None = None) -> np.ndarray:
    """L2-normalised class embeddings [C, D]: the mean of each class's normalised prompt embeddings. A class in
    ``own_prompts`` (a vocabulary's prompt text: ``Vocabulary``) takes those prompts as they are, instead of the
    template set filled with its name."""
    if templates not in TEMPLATE_SETS:
        raise ValueError(f"unknown prompt set {templates!r}: use one of {', '.join(TEMPLATE_SETS)}")
    prompts = TEMPLATE_SETS[templates]
    own = {c: list(p) for c, p in (own_prompts or {}).items() if c in classnames and p}
    blob = [weights_id, prompts, classnames] + ([sorted(own.items())] if own else [])
    key = hashlib.sha256(json.dumps(blob).encode()).hexdigest()[:24]
    path = cache_dir() / f"{key}.npy"
    if use_cache and path.is_file():
        return np.load(path)
    import open_clip  # only on a cache miss

    device = next(model.parameters()).device
    with torch.inference_mode():  # open_clip's own prompt-ensemble builder: mean of normalised prompts, normalised
        weights = open_clip.build_zero_shot_classifier(
            model, tokenizer, [humanize(c) for c in classnames], prompts,
            num_classes_per_batch=max(1, batch_size // len(prompts)), device=device)
    emb = weights.T.float().cpu().numpy()
    if own:
        with torch.inference_mode():
            for i, c in enumerate(classnames):
                if c in own:
                    e = model.encode_text(tokenizer(own[c]).to(device), normalize=True).float().mean(0)
                    emb[i] = (e / e.norm()).cpu().numpy()
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.save(buf, emb)
        atomic_write_bytes(path, buf.getvalue())
    return emb


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def video_embedding(clip_frames: np.ndarray) -> np.ndarray:
    """[N, K, D] frame embeddings -> [N, D]: mean of the L2-normalised frames, normalised again."""
    return normalize(normalize(clip_frames).mean(1))


def scores(image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """Cosine similarity x 100 (CLIP's logit scale), [N, C]."""
    return 100.0 * normalize(image_emb) @ text_emb.T
