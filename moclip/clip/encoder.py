"""The CLIP image encoder: a plain ``nn.Module`` around an open_clip model, and the ``load_clip`` factory.

Frames arrive as uint8 HxWx3 RGB arrays that the decoder already resized so their short side equals
``image_size`` (see ``target_size``); ``preprocess`` then does what open_clip's eval transform does after its
resize (center crop, to float in [0, 1], normalise), so features match open_clip's own preprocessing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch import nn

from moclip.config import ClipConfig
from moclip.precision import DTYPES, resolve_device

from .pretrained import ClipWeightsError, WeightsSpec, fetch_tag, resolve_weights

log = logging.getLogger(__name__)

RANDOM_INIT_SEED = 0  # "none" weights are seeded so that "random-init" features are reproducible


def target_size(width: int, height: int, image_size: int) -> tuple[int, int]:
    """(w, h) with the short side equal to ``image_size`` and the aspect ratio kept.

    The long side is truncated to int exactly like torchvision's ``Resize(image_size)`` (open_clip's
    "shortest" resize), so a frame resized to this size passes through open_clip's Resize unchanged.
    """
    if width < 1 or height < 1:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    if width <= height:
        return image_size, int(image_size * height / width)
    return int(image_size * width / height), image_size


def check_precision(precision: str, device: torch.device) -> torch.dtype:
    if precision not in DTYPES:
        raise ValueError(f"unknown precision {precision!r}: use fp32, bf16 or fp16")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device; on CPU use bf16 or fp32")
    return DTYPES[precision]


class ClipImageEncoder(nn.Module):
    """Frozen CLIP image tower: uint8 RGB frames in, float32 [N, D] embeddings out (not L2-normalised).

    ``model`` is the full open_clip model (text tower included, for zero-shot classification later);
    only its image side is used here.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        weights_id: str,
        is_random: bool,
        precision: str = "fp32",
        device: str | torch.device = "cpu",
        embed_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.dtype = check_precision(precision, self.device)
        self.precision = precision
        self.weights_id = weights_id
        self.is_random = is_random
        self.model = model.to(self.device, self.dtype).eval().requires_grad_(False)

        visual = model.visual
        pp = dict(getattr(visual, "preprocess_cfg", None) or {})
        size = pp.get("size", getattr(visual, "image_size", 224))
        if isinstance(size, (tuple, list)):
            if len(set(size)) != 1:
                raise ValueError(f"non-square CLIP input size {tuple(size)} is not supported")
            size = size[0]
        self.image_size = int(size)
        self.resize_mode: str = pp.get("resize_mode", "shortest")
        if self.resize_mode not in ("shortest", "squash"):
            log.warning("CLIP resize_mode %r not supported: frames are center-cropped instead", self.resize_mode)
        mean = pp.get("mean") or getattr(visual, "image_mean", None) or OPENAI_DATASET_MEAN
        std = pp.get("std") or getattr(visual, "image_std", None) or OPENAI_DATASET_STD
        f32 = {"dtype": torch.float32, "device": self.device}
        self.register_buffer("mean", torch.tensor(mean, **f32).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, **f32).view(-1, 1, 1), persistent=False)
        self.embed_dim = int(embed_dim if embed_dim is not None else visual.output_dim)

    @property
    def visual(self) -> nn.Module:
        return self.model.visual

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """(w, h) the decoder should resize a ``width`` x ``height`` frame to."""
        return target_size(width, height, self.image_size)

    # --- preprocessing ---------------------------------------------------------------------------------

    def _fit(self, frame: np.ndarray) -> np.ndarray:
        """One frame -> uint8 S x S x 3: center crop; resize first (torch bicubic) only if needed."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 HxWx3 RGB arrays, got {frame.dtype} {frame.shape}")
        s = self.image_size
        h, w = frame.shape[:2]
        if self.resize_mode == "squash":
            size = (s, s)
            needs_resize = (h, w) != size
        else:
            tw, th = target_size(w, h, s)
            size = (th, tw)
            needs_resize = min(h, w) != s  # a long side off by a pixel is only cropped, never resampled
        if needs_resize:  # fallback: the decoder should have done this with its own resampler
            t = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()
            antialias = size[0] < h or size[1] < w
            t = F.interpolate(t, size=size, mode="bicubic", align_corners=False, antialias=antialias)
            frame = t[0].round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
            h, w = size
        top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))  # as torchvision's center_crop
        return frame[top : top + s, left : left + s]

    def _uint8_batch(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 [N, 3, S, S] on the CPU (contiguous)."""
        batch = np.stack([self._fit(f) for f in frames])
        return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 [N, 3, S, S] (any device) -> normalised float32, same ops as ToTensor + Normalize."""
        return x.float().div_(255).sub_(self.mean).div_(self.std)

    def preprocess(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 HxWx3 RGB frames -> float32 [N, 3, S, S] on the CPU, normalised like open_clip."""
        if not len(frames):
            return torch.empty((0, 3, self.image_size, self.image_size))
        return self._normalize(self._uint8_batch(frames).to(self.device)).cpu()

    # --- inference -------------------------------------------------------------------------------------

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels [N, 3, S, S] -> image features [N, D] in the model's dtype (not normalised)."""
        return self.model.encode_image(pixels.to(self.device, self.dtype), normalize=False)

    def embed(self, frames: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Image embeddings, float32 [N, D], NOT L2-normalised (normalise before cosine / zero-shot use).

        Runs in batches under ``torch.inference_mode()``; the same code path on CPU and GPU. On CUDA the uint8
        batch is pinned, copied asynchronously and normalised on the device, and the next batch is cropped and
        stacked on the CPU while the GPU runs this one (its result is copied back only then).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out = []
        cuda = self.device.type == "cuda"

        def batch(i: int) -> torch.Tensor | None:
            """uint8 [N, S, S, 3] on the CPU (pinned for CUDA): channels go first on the device, not in a CPU copy."""
            if i >= len(frames):
                return None
            x = torch.from_numpy(np.stack([self._fit(f) for f in frames[i : i + batch_size]]))
            return x.pin_memory() if cuda else x

        with torch.inference_mode():
            x, i = batch(0), 0
            while x is not None:
                x = x.to(self.device, non_blocking=cuda).permute(0, 3, 1, 2).contiguous()
                y = self(self._normalize(x))  # on CUDA: launched, not waited for
                i += batch_size
                x = batch(i)  # the CPU's share of the next batch, while the device runs this one
                out.append(y.float().cpu())
        if not out:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return torch.cat(out).numpy()


# --- factory -----------------------------------------------------------------------------------------


def load_clip(cfg: ClipConfig, device: str = "cpu") -> ClipImageEncoder:
    """Build (once per process and settings) the image encoder for ``cfg`` on ``device``.

    Weights: an open_clip tag (from the Hugging Face cache, or downloaded; fails fast when offline), a local
    checkpoint file, or "none" (random init, seeded, so "random-init" features are reproducible).
    Raises ``ClipWeightsError`` when the weights cannot be resolved or loaded.
    """
    dev = resolve_device(device)
    cfg = cfg.resolved(str(dev))  # precision "auto": what this device runs best
    check_precision(cfg.precision, dev)
    spec = resolve_weights(cfg.model, cfg.weights, cfg.activation)
    with _LOAD_LOCK:  # threads of one worker process share one model
        return _load_cached(cfg.model, spec, cfg.precision, str(dev))


def clear_clip_cache() -> None:
    """Drop the models cached by ``load_clip`` (frees their memory once no encoder is referenced)."""
    with _LOAD_LOCK:
        _load_cached.cache_clear()


_LOAD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=3)
def _load_cached(model_name: str, spec: WeightsSpec, precision: str, device: str) -> ClipImageEncoder:
    model = _create_model(model_name, spec)
    embed_dim = (open_clip.get_model_config(model_name) or {}).get("embed_dim")
    return ClipImageEncoder(
        model,
        weights_id=spec.weights_id,
        is_random=spec.kind == "none",
        precision=precision,
        device=device,
        embed_dim=embed_dim,
    )


@contextlib.contextmanager
def _without(logger: logging.Logger, start: str) -> Iterator[None]:
    """``logger`` drops records whose message starts with ``start`` meanwhile."""
    drop = logging.Filter()
    drop.filter = lambda record: not str(record.getMessage()).startswith(start)  # type: ignore[method-assign]
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _create_model(model_name: str, spec: WeightsSpec) -> nn.Module:
    """The fp32 open_clip model on the CPU, with the weights of ``spec`` loaded and its activation."""
    if spec.kind == "none":  # asked for: open_clip's warning that no weights were loaded says nothing new
        with torch.random.fork_rng(devices=[]), _without(logging.getLogger(), "No pretrained weights loaded"):
            torch.manual_seed(RANDOM_INIT_SEED)
            model, _, _ = open_clip.create_model_and_transforms(
                model_name, pretrained=None, pretrained_text=False, force_quick_gelu=spec.quick_gelu)
        return model
    if spec.kind == "file":
        try:
            if spec.torchscript:
                return _from_torchscript(model_name, spec)
            model, _, _ = open_clip.create_model_and_transforms(
                model_name, pretrained=spec.value, weights_only=True, force_quick_gelu=spec.quick_gelu)
        except Exception as e:  # torch.load / safetensors / load_state_dict raise many types
            raise ClipWeightsError(
                f"cannot load CLIP checkpoint {spec.value!r} into model {model_name!r}: {type(e).__name__}: {e}. "
                "It must be an open_clip/OpenAI state dict (or {'state_dict': ...}, or OpenAI's TorchScript "
                "release) for this model; pickled Python objects are refused."
            ) from e
        return model
    path = fetch_tag(model_name, spec.value)
    # OpenAI-trained weights expect QuickGELU; open_clip only warns when the model config (e.g. ViT-B-32)
    # disagrees, which silently degrades the features. spec.quick_gelu matches the weights instead.
    try:
        model, _, _ = open_clip.create_model_and_transforms(
            model_name,
            pretrained=spec.value,
            force_quick_gelu=spec.quick_gelu,
            weights_only=True,
        )
    except Exception as e:
        raise ClipWeightsError(f"cannot load CLIP weights {spec.weights_id} from {path!r}: {e}") from e
    return model


def _from_torchscript(model_name: str, spec: WeightsSpec) -> nn.Module:
    """OpenAI's TorchScript release: its tensors go into a plain open_clip model (its code is never run).

    ``torch.load(weights_only=True)`` refuses TorchScript archives; ``torch.jit.load`` reads them with TorchScript's
    own deserialiser (no Python unpickling), and only ``state_dict()`` is taken from the result.
    """
    state = dict(torch.jit.load(spec.value, map_location="cpu").state_dict())
    model = open_clip.create_model(model_name, pretrained=None, force_quick_gelu=spec.quick_gelu)
    # OpenAI's archives carry a few scalars, and traced modules their non-persistent buffers (attn_mask): not weights
    derived = {"input_resolution", "context_length", "vocab_size"} | {n for n, _ in model.named_buffers()}
    expected = model.state_dict().keys()
    state = {k: v.float() for k, v in state.items() if k in expected or k not in derived}
    model.load_state_dict(state, strict=True)
    return model
