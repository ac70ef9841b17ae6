"""A trained-model bundle: a folder of safetensors weights plus ``bundle.json`` (classes, CLIP id, settings,
metrics, and the SHA-256 of every weights file). Loading never unpickles anything and refuses a bundle whose
files do not match their recorded hashes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from moclip.config import recorded_schema, schema_problem
from moclip.files import atomic_path, atomic_write_text, file_sha256

BUNDLE_FORMAT = 2  # 2: temperatures ("calibration"), "active" standardisation buffers
READABLE_FORMATS = (1, 2)  # format 1 loads as uncalibrated (T = 1), its standardisation upgraded (models.heads)
META_NAME = "bundle.json"


class BundleError(RuntimeError):
    """A model bundle is missing, incomplete, from an unknown format, or has been modified."""


@dataclass
class Bundle:
    path: Path
    meta: dict
    weights: dict[str, dict[str, torch.Tensor]]  # part name -> state dict

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]


def save_bundle(path: str | Path, meta: dict, weights: dict[str, dict[str, torch.Tensor]]) -> Path:
    """Write weights (one safetensors file per part) then ``bundle.json`` last, each atomically."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    files = {}
    for part, state in weights.items():
        name = f"{part}.safetensors"
        with atomic_path(path / name) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
        files[name] = file_sha256(path / name)
    full = {**meta, "format": BUNDLE_FORMAT, "files": files,
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write_text(path / META_NAME, json.dumps(full, indent=2, sort_keys=True, default=str))
    return path


def check_format(meta: dict, where: str | Path = META_NAME) -> dict:
    """``meta``, if this moclip reads its bundle format; else ``BundleError``."""
    if meta.get("format") not in READABLE_FORMATS:
        raise BundleError(f"{where}: bundle format {meta.get('format')!r}, this moclip reads "
                          f"{', '.join(map(str, READABLE_FORMATS))}")
    settings = (meta.get("features") or {}).get("settings")
    problem = schema_problem(recorded_schema(settings)) if isinstance(settings, dict) else None
    if problem:
        raise BundleError(f"{where}: trained on {problem}: train it again on a dataset indexed by this moclip "
                          "(`moclip index` re-indexes an old dataset)")
    return meta


def read_bundle_json(path: str | Path) -> dict:
    """The ``bundle.json`` of the bundle folder ``path``, format-checked (no weights read)."""
    path = Path(path)
    meta_path = path / META_NAME
    if not meta_path.is_file():
        raise BundleError(f"{path}: not a moclip model bundle (no {META_NAME})")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BundleError(f"{meta_path}: unreadable ({e})") from e
    return check_format(meta, meta_path)


def load_bundle(path: str | Path) -> Bundle:
    path = Path(path)
    meta_path = path / META_NAME
    meta = read_bundle_json(path)
    weights = {}
    for name, digest in meta.get("files", {}).items():
        f = path / name
        if Path(name).name != name or not name.endswith(".safetensors"):
            raise BundleError(f"{meta_path}: refusing file entry {name!r}")
        if not f.is_file():
            raise BundleError(f"{f}: missing from the bundle")
        if file_sha256(f) != digest:
            raise BundleError(f"{f}: SHA-256 does not match {META_NAME}; the bundle was modified, refusing to load")
        weights[name.removesuffix(".safetensors")] = load_file(str(f))
    return Bundle(path=path, meta=meta, weights=weights)
