"""CLIP appearance stream: weights resolution (tag / checkpoint file / "none") and the image encoder."""

from moclip.precision import default_precision, resolve_device

from .encoder import ClipImageEncoder, clear_clip_cache, load_clip, target_size
from .pretrained import ClipWeightsError, WeightsSpec, hub_reachable, resolve_weights

__all__ = [
    "ClipImageEncoder",
    "ClipWeightsError",
    "WeightsSpec",
    "clear_clip_cache",
    "default_precision",
    "hub_reachable",
    "load_clip",
    "resolve_device",
    "resolve_weights",
    "target_size",
]
