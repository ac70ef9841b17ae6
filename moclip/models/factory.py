"""Model factory: architectures are data (``moclip/model_configs/*.json``), weights live in bundles."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from moclip.models.mvnet import MVNet, MVNet21D

ARCHITECTURES = {"2d": MVNet, "r2plus1d": MVNet21D}

CONFIG_DIR = Path(__file__).resolve().parent.parent / "model_configs"


def list_mvnet_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("mvnet-*.json"))


def mvnet_config(name_or_path: str) -> dict:
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise ValueError(f"unknown MV-net config {name_or_path!r}: use one of {', '.join(list_mvnet_configs())} "
                         "or a JSON file path")
    return json.loads(path.read_text())


def create_mvnet(config: dict, num_classes: int) -> MVNet | MVNet21D:
    kind = config.get("type", "2d")
    if kind not in ARCHITECTURES:
        raise ValueError(f"unknown MV-net type {kind!r}: use one of {', '.join(ARCHITECTURES)}")
    kwargs = {k: v for k, v in config.items() if k not in ("description", "type")}
    return ARCHITECTURES[kind](num_classes=num_classes, **kwargs)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_video(model: MVNet | MVNet21D, mv_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on one video (torch's FLOP counter: 2 x multiply-accumulates)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    x = torch.zeros((1, *mv_shape))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, torch.ones(1, mv_shape[0]))
    model.train(was_training)
    return int(counter.get_total_flops())


# The paper's motion stream, for comparison: EfficientNet-B0 (5.29 M params, 0.39 GFLOPs at 224x224 counted
# as multiply-adds; x2 for FLOPs as torch counts them) on 3 TSN segments.
PAPER_MV_NET = {"params": 5_288_548, "flops_per_video": 3 * 2 * 390_000_000,
                "description": "EfficientNet-B0 x 3 segments on 2-channel MV images, 224x224 (paper)"}
