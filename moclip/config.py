"""Settings that change features, and settings that only change how a job runs.

Everything that changes the bytes of a feature lives in ``MVConfig`` / ``ClipConfig`` and goes into the
dataset's settings hash; everything else (workers, shard size, device) does not.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

SCHEMA_VERSION = 1
ACTIVATIONS = ("auto", "gelu", "quickgelu")  # ClipConfig.activation: see moclip.clip.pretrained

VIDEO_EXTENSIONS = (
    ".avi", ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".m2ts", ".3gp", ".flv",
    ".wmv", ".ogv", ".gif",
)


@dataclass(frozen=True)
class MVConfig:
    """How a video's motion vectors become one fixed-shape tensor (T x 2 x H x W)."""

    segments: int = 8  # T: TSN-style temporal segments
    grid: tuple[int, int] = (15, 20)  # (H, W) cells; 320x240 at 16 px macroblocks is exactly 15 x 20
    backend: str = "pyav"  # "pyav" or "mvextractor"
    max_frames: int = 216_000  # cap on decoded frames per video (2 h at 30 fps)

    def __post_init__(self) -> None:
        if self.segments < 1:
            raise ValueError(f"segments must be >= 1, got {self.segments}")
        if len(self.grid) != 2 or min(self.grid) < 1:
            raise ValueError(f"grid must be two positive ints (H, W), got {self.grid}")
        if self.backend not in ("pyav", "mvextractor"):
            raise ValueError(f"unknown MV backend {self.backend!r}: use 'pyav' or 'mvextractor'")
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")
        object.__setattr__(self, "grid", (int(self.grid[0]), int(self.grid[1])))


@dataclass(frozen=True)
class ClipConfig:
    """Which CLIP image encoder embeds which frames."""

    model: str = "ViT-B-32"
    weights: str = "openai"  # open_clip pretrained tag, a local checkpoint path, or "none" (random init)
    frames: int = 8  # K RGB frames per video
    precision: str = "fp32"  # "fp32", "bf16" (CPU or GPU) or "fp16" (GPU only)
    # "auto" (from the tag, the model config or the checkpoint), "gelu" or "quickgelu"; the resolved one is part
    # of the weights id (moclip.clip.pretrained), which is how it enters the settings hash
    activation: str = "auto"

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown CLIP activation {self.activation!r}: use auto, gelu or quickgelu")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"unknown precision {self.precision!r}: use fp32, bf16 or fp16")


@dataclass(frozen=True)
class FeatureSettings:
    """Everything that changes stored features; its hash decides what an incremental rerun reuses."""

    mv: MVConfig = field(default_factory=MVConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    def settings_hash(self, weights_id: str | None = None) -> str:
        """Hash of the settings; ``weights_id`` pins the actual CLIP weights (e.g. checkpoint file hash)."""
        payload = self.to_dict()
        payload["clip"]["weights_id"] = weights_id or payload["clip"]["weights"]
        payload["mv"].pop("max_frames", None)  # a cap only decides failure, never feature bytes
        payload["clip"].pop("activation", None)  # the resolved activation is in the weights id
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class RunConfig:
    """How an index job runs (never changes features)."""

    shard_size: int = 16  # videos per Dask task
    workers: int | None = None  # local Dask worker processes; None = one per core
    dask_address: str | None = None  # existing scheduler, e.g. tcp://10.0.0.5:8786
    clip_batch_size: int = 64
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda"
    decode_timeout_s: float = 1800.0  # per-video decode time limit, checked between frames (1 h of 1080p fits)
    decode_hard_timeout_s: float | None = None  # past it the decoding process is killed; None: decode_timeout_s + 60

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.decode_hard_timeout_s is not None and self.decode_hard_timeout_s <= 0:
            raise ValueError(f"decode_hard_timeout_s must be > 0, got {self.decode_hard_timeout_s}")

    @property
    def hard_timeout_s(self) -> float:
        """Seconds one video may spend in the decoder before its process is killed (a hang inside one frame)."""
        return self.decode_hard_timeout_s or self.decode_timeout_s + 60.0
