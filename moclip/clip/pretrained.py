"""Where CLIP weights come from: an open_clip pretrained tag, a local checkpoint file, or "none".

``resolve_weights`` only looks things up (registry, file system); it never downloads. ``fetch_tag`` makes a
tag's checkpoint available locally (Hugging Face cache or download) and fails fast, with a message that says
what to do, when it is not cached and the hub cannot be reached.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from typing import Literal

import open_clip
from open_clip.pretrained import download_pretrained, get_pretrained_cfg

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
RANDOM_INIT_ID = "random-init"
PROBE_TIMEOUT_S = 1.5
FIX_HINT = (
    "To fix: pass a local checkpoint with `--clip-weights PATH` (an open_clip/OpenAI state dict for this "
    "model), or `--clip-weights none` for a RANDOMLY INITIALISED encoder (runs the pipeline end to end, but "
    "its features carry no appearance information)."
)

WeightsKind = Literal["tag", "file", "none"]


class ClipWeightsError(RuntimeError):
    """CLIP weights cannot be resolved or loaded; the message says which and what to do."""


@dataclass(frozen=True)
class WeightsSpec:
    """Resolved weights: ``value`` is the canonical tag, the absolute file path, or "none"."""

    kind: WeightsKind
    value: str
    weights_id: str  # pins the actual weights in the dataset's settings hash


def looks_like_path(weights: str) -> bool:
    seps = [s for s in (os.sep, os.altsep, "/") if s]
    return any(s in weights for s in seps) or weights.lower().endswith(CHECKPOINT_SUFFIXES)


def file_sha256_prefix(path: str, chunk_size: int = 1 << 20) -> str:
    """First 16 hex digits of the file's SHA-256, read in chunks."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    with _HASH_LOCK:
        if key in _HASH_CACHE:
            return _HASH_CACHE[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    digest = h.hexdigest()[:16]
    with _HASH_LOCK:
        _HASH_CACHE[key] = digest
    return digest


_HASH_CACHE: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def _options(valid: list[str], given: str) -> str:
    close = difflib.get_close_matches(given, valid, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"{hint} Valid options: {', '.join(valid)}."


def _canonical_tag(model: str, weights: str) -> str | None:
    """The registry's spelling of ``weights`` for ``model`` (open_clip lower-cases and maps '-' to '_')."""
    tags = open_clip.list_pretrained_tags_by_model(model)
    if weights in tags:
        return weights
    cleaned = weights.lower().replace("-", "_")
    return cleaned if cleaned in tags else None


def resolve_weights(model: str, weights: str) -> WeightsSpec:
    """Decide what ``weights`` means for ``model``; never downloads, raises ``ClipWeightsError`` if invalid.

    Order: "none" (random init) -> anything path-like (contains a separator or ends in a checkpoint suffix)
    must be an existing file -> a known open_clip tag for ``model`` -> an existing file without suffix.
    """
    if model not in open_clip.list_models():
        if model.startswith(("hf-hub:", "local-dir:")):
            raise ClipWeightsError(
                f"CLIP model {model!r}: hf-hub:/local-dir: models are not supported; use a built-in model name "
                "and pass its checkpoint with `--clip-weights PATH`."
            )
        raise ClipWeightsError(f"unknown CLIP model {model!r}." + _options(open_clip.list_models(), model))
    if weights.strip().lower() == "none":
        return WeightsSpec("none", "none", RANDOM_INIT_ID)

    path = os.path.expanduser(weights)
    if looks_like_path(weights):
        return _file_spec(path, weights)
    tag = _canonical_tag(model, weights)
    if tag is not None:
        return WeightsSpec("tag", tag, f"{model}/{tag}")
    if os.path.isfile(path):
        return _file_spec(path, weights)
    tags = open_clip.list_pretrained_tags_by_model(model)
    if not tags:
        raise ClipWeightsError(
            f"CLIP model {model!r} has no open_clip pretrained tags, and {weights!r} is not a local file. "
            "Pass a checkpoint with `--clip-weights PATH` or `--clip-weights none` (random init)."
        )
    raise ClipWeightsError(
        f"{weights!r} is neither a local checkpoint file nor a pretrained tag of CLIP model {model!r}."
        + _options(tags, weights)
        + " Or pass a checkpoint path, or 'none' (random init)."
    )


def _file_spec(path: str, given: str) -> WeightsSpec:
    if os.path.isdir(path):
        raise ClipWeightsError(f"CLIP weights {given!r} is a directory; pass the checkpoint file inside it.")
    if not os.path.isfile(path):
        raise ClipWeightsError(f"CLIP checkpoint file not found: {path!r} (from --clip-weights {given!r}).")
    path = os.path.abspath(path)  # an absolute path can never be mistaken for a tag by open_clip
    try:
        digest = file_sha256_prefix(path)
    except OSError as e:
        raise ClipWeightsError(f"cannot read CLIP checkpoint {path!r}: {e}") from e
    return WeightsSpec("file", path, f"file:{digest}")


# --- Hugging Face hub reachability -------------------------------------------------------------------


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def hub_reachable(timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the hub answers an HTTPS HEAD within ``timeout_s`` (DNS, proxy and TLS included).

    Uses huggingface_hub's own HTTP client, so proxies and CA settings are those a download would use. A bare
    TCP connect is not enough: some networks accept every connection and drop it later, and then a download
    retries for ~46 s. Any HTTP status counts as reachable.
    """
    from huggingface_hub.utils import get_session

    result: list[bool] = []

    def probe() -> None:
        try:
            get_session().head(hub_endpoint(), timeout=timeout_s, follow_redirects=False)
            result.append(True)
        except Exception:  # DNS, connect, TLS, proxy and timeout errors all mean "not reachable"
            result.append(False)

    t = threading.Thread(target=probe, daemon=True, name="moclip-hub-probe")
    t.start()
    t.join(timeout_s + 0.5)  # getaddrinfo ignores timeouts: bound the whole probe here
    return bool(result and result[0])


_OFFLINE_LOCK = threading.Lock()
_offline_reason: str | None = None  # set once per process when the hub is known to be out of reach
_probed = False


def ensure_hub_mode() -> str | None:
    """Switch huggingface_hub to offline mode if the hub cannot be reached; returns why, or None if online.

    Respects an explicit ``HF_HUB_OFFLINE`` in the environment. huggingface_hub reads that variable once, at
    import, into ``huggingface_hub.constants.HF_HUB_OFFLINE``; so both are set here.
    """
    global _offline_reason, _probed
    from huggingface_hub import constants

    with _OFFLINE_LOCK:
        if _offline_reason is not None:
            return _offline_reason
        if "HF_HUB_OFFLINE" in os.environ:  # the user decided; huggingface_hub read it at import
            return "HF_HUB_OFFLINE is set" if constants.is_offline_mode() else None
        if not _probed:
            _probed = True
            if not hub_reachable():
                _offline_reason = f"{hub_endpoint()} is not reachable"
                os.environ["HF_HUB_OFFLINE"] = "1"
                constants.HF_HUB_OFFLINE = True
                log.warning("Hugging Face hub unreachable (%s): using only locally cached weights", _offline_reason)
        return _offline_reason


def hub_cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def fetch_tag(model: str, tag: str) -> str:
    """Local path of the tag's checkpoint (from the cache, or downloaded); ``ClipWeightsError`` if neither."""
    cfg = get_pretrained_cfg(model, tag)
    if not cfg:
        raise ClipWeightsError(f"{tag!r} is not a pretrained tag of CLIP model {model!r}.")
    source = cfg.get("hf_hub") or cfg.get("url") or cfg.get("file") or "?"
    offline = ensure_hub_mode()
    try:
        path = download_pretrained(cfg)
    except Exception as e:  # huggingface_hub / urllib raise many types; all mean "not available"
        if offline:
            raise ClipWeightsError(
                f"CLIP weights {model}/{tag} (hub: {source}) are not in the local Hugging Face cache "
                f"({hub_cache_dir()}), and there is no network ({offline}). {FIX_HINT}"
            ) from e
        raise ClipWeightsError(f"could not download CLIP weights {model}/{tag} (hub: {source}): {e}. {FIX_HINT}") from e
    if not path:
        raise ClipWeightsError(f"open_clip has no download source for CLIP weights {model}/{tag}. {FIX_HINT}")
    return path
