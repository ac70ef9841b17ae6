"""Where CLIP weights come from: an open_clip pretrained tag, a local checkpoint file, or "none".

``resolve_weights`` only looks things up (registry, file system); it never downloads. ``fetch_tag`` makes a
tag's checkpoint available locally (Hugging Face cache or download) and fails fast, with a message that says
what to do, when it is not cached and the hub cannot be reached.

The activation is part of the weights: OpenAI's CLIP (and a few others) were trained with QuickGELU, most
open_clip models with GELU, and the wrong one degrades every feature without an error. ``activation`` "auto" takes
it from the tag's registry entry, from the model config (``ViT-B-32-quickgelu``), or from the checkpoint file
where the file tells (OpenAI's TorchScript release format; a SHA-256 equal to a registry checkpoint's); where it
cannot tell it uses the model config's and says so. The resolved activation is in the weights id, so it keys
the settings hash and the text-embedding cache.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import logging
import os
import re
import threading
import zipfile
from dataclasses import dataclass, field
from typing import Literal

import open_clip
from open_clip.pretrained import download_pretrained, get_pretrained_cfg

from moclip.config import ACTIVATIONS
from moclip.files import hash_file

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
    weights_id: str  # pins the actual weights (and activation) in the dataset's settings hash
    quick_gelu: bool = False  # build the model with QuickGELU
    activation_note: str = field(default="", compare=False)  # how the activation was decided
    torchscript: bool = False  # the file is a TorchScript archive (OpenAI's release format)


def looks_like_path(weights: str) -> bool:
    seps = [s for s in (os.sep, os.altsep, "/") if s]
    return any(s in weights for s in seps) or weights.lower().endswith(CHECKPOINT_SUFFIXES)


@dataclass(frozen=True)
class FileFacts:
    sha256: str  # hex
    torchscript: bool  # a TorchScript archive (torch.jit.save)
    openai_format: bool  # ...holding OpenAI's CLIP model (its input_resolution / context_length / vocab_size)


def file_facts(path: str, chunk_size: int = 1 << 20) -> FileFacts:
    """What a checkpoint's bytes say: SHA-256 (read in chunks) and its format; cached by (real path, size, mtime)."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    with _HASH_LOCK:
        if key in _HASH_CACHE:
            return _HASH_CACHE[key]
    digest = hash_file(path, hashlib.sha256(), chunk_size).hexdigest()
    torchscript, openai = torchscript_format(path)
    facts = FileFacts(digest, torchscript, openai)
    with _HASH_LOCK:
        _HASH_CACHE[key] = facts
    return facts


def torchscript_format(path: str) -> tuple[bool, bool]:
    """(is a TorchScript archive, holds OpenAI's CLIP model), from the zip's listing and its object table (the
    names of the module's attributes; no unpickling). OpenAI's released models carry ``input_resolution``,
    ``context_length`` and ``vocab_size`` beside their weights (open_clip drops exactly these when it loads them)."""
    if not zipfile.is_zipfile(path):
        return False, False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        if not any(n.split("/", 1)[-1].startswith("code/") or n.endswith("/constants.pkl") for n in names):
            return False, False
        table = next((n for n in names if n.split("/", 1)[-1] == "data.pkl"), None)
        data = z.read(table) if table else b""
    return True, all(k in data for k in (b"input_resolution", b"context_length", b"vocab_size"))


_HASH_CACHE: dict[tuple[str, int, int], FileFacts] = {}
_WARNED: set[str] = set()  # checkpoints whose undetermined activation was already warned about
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


def resolve_weights(model: str, weights: str, activation: str = "auto") -> WeightsSpec:
    """Decide what ``weights`` means for ``model``; never downloads, raises ``ClipWeightsError`` if invalid.

    Order: "none" (random init) -> anything path-like (contains a separator or ends in a checkpoint suffix)
    must be an existing file -> a known open_clip tag for ``model`` -> an existing file without suffix.
    ``activation`` ("auto", "gelu", "quickgelu"): see the module docstring.
    """
    if activation not in ACTIVATIONS:
        raise ClipWeightsError(f"unknown CLIP activation {activation!r}: use one of {', '.join(ACTIVATIONS)}")
    if model not in open_clip.list_models():
        if model.startswith(("hf-hub:", "local-dir:")):
            raise ClipWeightsError(
                f"CLIP model {model!r}: hf-hub:/local-dir: models are not supported; use a built-in model name "
                "and pass its checkpoint with `--clip-weights PATH`."
            )
        raise ClipWeightsError(f"unknown CLIP model {model!r}." + _options(open_clip.list_models(), model))
    model_qg = bool((open_clip.get_model_config(model) or {}).get("quick_gelu", False))
    if activation == "gelu" and model_qg:
        raise ClipWeightsError(f"CLIP model config {model!r} is built with QuickGELU; for GELU use the model name "
                               f"without '-quickgelu' ({model.removesuffix('-quickgelu')!r})")
    if weights.strip().lower() == "none":
        return _with_activation(WeightsSpec("none", "none", RANDOM_INIT_ID), model_qg, activation,
                                "the model config's")

    path = os.path.expanduser(weights)
    tag = None if looks_like_path(weights) else _canonical_tag(model, weights)
    if tag is None and (looks_like_path(weights) or os.path.isfile(path)):
        return _file_spec(path, weights, model, model_qg, activation)
    if tag is not None:
        tag_qg = bool(get_pretrained_cfg(model, tag).get("quick_gelu", False))
        return _with_activation(WeightsSpec("tag", tag, f"{model}/{tag}"), model_qg or tag_qg, activation,
                                f"as the {model}/{tag} weights were trained")
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


def _with_activation(spec: WeightsSpec, natural_qg: bool, activation: str, why: str) -> WeightsSpec:
    """``spec`` with its activation: the natural one for "auto", else the one asked for (then in the id)."""
    qg = natural_qg if activation == "auto" else activation == "quickgelu"
    name = "quickgelu" if qg else "gelu"
    weights_id = spec.weights_id if qg == natural_qg else f"{spec.weights_id}+{name}"
    note = f"{name} ({why})" if activation == "auto" else f"{name} (asked for)"
    return WeightsSpec(spec.kind, spec.value, weights_id, qg, note, spec.torchscript)


def _file_spec(path: str, given: str, model: str, model_qg: bool, activation: str) -> WeightsSpec:
    if os.path.isdir(path):
        raise ClipWeightsError(f"CLIP weights {given!r} is a directory; pass the checkpoint file inside it.")
    if not os.path.isfile(path):
        raise ClipWeightsError(f"CLIP checkpoint file not found: {path!r} (from --clip-weights {given!r}).")
    path = os.path.abspath(path)  # an absolute path can never be mistaken for a tag by open_clip
    try:
        facts = file_facts(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise ClipWeightsError(f"cannot read CLIP checkpoint {path!r}: {e}") from e
    digest = facts.sha256
    detected, why = detect_quick_gelu(facts)
    if activation != "auto":
        qg, note = activation == "quickgelu", f"{activation} (asked for)"
        if detected is not None and detected != qg:
            log.warning("CLIP checkpoint %s: %s, but --clip-activation %s was asked for", path, why, activation)
    elif model_qg:
        qg, note = True, f"quickgelu (model config {model})"
    elif detected is not None:
        qg, note = detected, f"{'quickgelu' if detected else 'gelu'} ({why})"
    else:
        qg = False
        note = (f"gelu: the activation of {path} cannot be told from the file, so the model config's ({model}: GELU) "
                "is used. OpenAI-trained weights need QuickGELU: pass `--clip-activation quickgelu` (or the model "
                f"{model}-quickgelu) for them, `--clip-activation gelu` to silence this warning")
        with _HASH_LOCK:
            first = digest not in _WARNED
            _WARNED.add(digest)
        if first:
            log.warning("CLIP checkpoint activation: %s", note)
    # GELU keeps the id files had before activations were recorded (datasets indexed with it stay valid)
    return WeightsSpec("file", path, f"file:{digest[:16]}" + ("+quickgelu" if qg else ""), qg, note,
                       facts.torchscript)


_SHA256_IN_URL = re.compile(r"/([0-9a-f]{64})/")


@functools.lru_cache(maxsize=1)
def registry_checkpoints() -> dict[str, tuple[str, bool]]:
    """SHA-256 -> (model/tag, quick_gelu) of the registry checkpoints whose URL carries their SHA-256 (OpenAI's)."""
    from open_clip.pretrained import _PRETRAINED

    out = {}
    for name, tags in _PRETRAINED.items():
        for tag, cfg in tags.items():
            m = _SHA256_IN_URL.search(cfg.get("url") or "")
            if m:
                out.setdefault(m.group(1), (f"{name}/{tag}", bool(cfg.get("quick_gelu", False))))
    return out


def detect_quick_gelu(facts: FileFacts) -> tuple[bool | None, str]:
    """Whether a checkpoint was trained with QuickGELU, when its bytes tell; (None, "") when they do not."""
    known = registry_checkpoints().get(facts.sha256)
    if known:
        return known[1], f"its SHA-256 is that of open_clip's {known[0]} checkpoint"
    if facts.openai_format:
        return True, "OpenAI's TorchScript CLIP release format (OpenAI's CLIP models use QuickGELU)"
    return None, ""


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
