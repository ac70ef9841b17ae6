"""Query vectors in a dataset's CLIP space: text by its text tower, a video (or a moment of one) by its image
encoder. Both refuse CLIP weights that no longer resolve to the ones the dataset was indexed with."""

from __future__ import annotations

import numpy as np
import torch

from moclip import zeroshot
from moclip.dataset import read_settings
from moclip.inference.text import check_text_weights, class_embeddings
from moclip.search.catalog import SearchError
from moclip.video.frames import DecodeError

MOMENT_S = 2.0  # a moment of a video (--like VIDEO@SECONDS) on a dataset without windows: this many seconds


def text_vector(text: str, dataset: str, manifest: dict, device: torch.device) -> np.ndarray:
    """The unit embedding [D] of ``text`` as written (no prompt template) by the dataset's text tower."""
    if not text.strip():
        raise SearchError("the text query is empty")
    emb = class_embeddings(manifest, [text], "plain", device, dataset, own_prompts={text: (text,)})
    return zeroshot.normalize(emb[0])


def like_vector(path: str, at_s: float | None, dataset: str, manifest: dict, device: str = "cpu") -> np.ndarray:
    """The unit embedding [D] of a video file as indexing embeds it (``at_s`` None: its K evenly spread frames), or
    of a moment of it: a window's worth of frames centred on ``at_s`` (the dataset's window, else ``MOMENT_S``)."""
    from moclip.clip import load_clip
    from moclip.video.extract import extract_video
    from moclip.video.thumbnail import duration_of, frames_at

    settings = read_settings(manifest, dataset)
    check_text_weights(dataset, manifest)
    encoder = load_clip(settings.clip.model_copy(update={"precision": "fp32"}), device=device)
    try:
        if at_s is None:
            feats = extract_video(path, settings.mv, settings.clip.frames, rgb_size=encoder.target_size)
            frames = feats.frames
        else:
            length = duration_of(path)
            if length and at_s > length:
                raise SearchError(f"{path}: {at_s:g} s is past its end ({length:.2f} s)")
            w = settings.window.seconds if settings.window.enabled else MOMENT_S
            k = settings.window.frames if settings.window.enabled else settings.clip.frames
            lo, hi = max(0.0, at_s - w / 2), at_s + w / 2
            if length:
                lo, hi = max(0.0, min(lo, length - w)), min(hi, length)
            times = [min(lo + (i + 0.5) * (hi - lo) / k, max(length - 1e-3, 0.0) if length else hi) for i in range(k)]
            frames = frames_at(path, times, encoder.image_size)
    except DecodeError as e:
        raise SearchError(str(e) if path in str(e) else f"{path}: cannot be decoded ({e})") from e
    emb = encoder.embed(frames)
    return zeroshot.video_embedding(emb[None])[0]
