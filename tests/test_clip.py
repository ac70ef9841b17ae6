"""CLIP appearance encoder: weights resolution, preprocessing parity with open_clip, precision, checkpoints."""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np
import open_clip
import pytest
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image

from moclip.clip import ClipImageEncoder, ClipWeightsError, clear_clip_cache, load_clip, resolve_weights, target_size
from moclip.clip import pretrained as clip_pretrained
from moclip.config import ClipConfig


def textured_frames(n: int, h: int = 224, w: int = 298, seed: int = 0) -> list[np.ndarray]:
    """Real-ish uint8 RGB frames: smooth colour blobs + oriented stripes + sensor noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    frames = []
    for i in range(n):
        low = torch.from_numpy(rng.uniform(0, 255, (1, 3, 6 + i % 5, 8 + i % 7)).astype(np.float32))
        img = torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)[0].numpy()
        freq, angle = rng.uniform(5, 40, 3), rng.uniform(0, 2 * np.pi, 3)
        stripes = np.stack(
            [40 * np.sin(2 * np.pi * freq[c] * (xx * np.cos(angle[c]) + yy * np.sin(angle[c]))) for c in range(3)]
        )
        img = np.clip(img + stripes + rng.normal(0, 12, (3, h, w)), 0, 255)
        frames.append(np.ascontiguousarray(img.astype(np.uint8).transpose(1, 2, 0)))
    return frames


@pytest.fixture(scope="module")
def encoder() -> ClipImageEncoder:
    return load_clip(ClipConfig(precision="fp32", model="ViT-B-32", weights="none"))


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return textured_frames(16)


# --- resolve_weights ---------------------------------------------------------------------------------


def test_resolve_none_and_tag():
    spec = resolve_weights("ViT-B-32", "none")
    assert (spec.kind, spec.weights_id) == ("none", "random-init")
    spec = resolve_weights("ViT-B-32", "openai")
    assert (spec.kind, spec.value, spec.weights_id) == ("tag", "openai", "ViT-B-32/openai")
    # open_clip's own tag normalisation (case, '-' -> '_') gives the canonical tag
    assert resolve_weights("ViT-B-32", "LAION2B-S34B-B79K").weights_id == "ViT-B-32/laion2b_s34b_b79k"


def test_resolve_unknown_tag_lists_options():
    with pytest.raises(ClipWeightsError, match="laion2b_s34b_b79k") as e:
        resolve_weights("ViT-B-32", "opneai")
    assert "'openai'" in str(e.value)  # close match suggested


def test_resolve_unknown_model():
    with pytest.raises(ClipWeightsError, match="unknown CLIP model 'ViT-B-33'.*ViT-B-32"):
        resolve_weights("ViT-B-33", "openai")


def test_resolve_missing_path_names_it(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(ClipWeightsError, match="not found") as e:
        resolve_weights("ViT-B-32", str(missing))
    assert str(missing) in str(e.value)
    with pytest.raises(ClipWeightsError, match="not found"):
        resolve_weights("ViT-B-32", "weights.safetensors")  # suffix alone makes it a path
    with pytest.raises(ClipWeightsError, match="directory"):
        resolve_weights("ViT-B-32", str(tmp_path))


def test_resolve_file_hash_is_stable(tmp_path):
    path = tmp_path / "w.bin"
    payload = os.urandom(3 << 20)  # > one hash chunk
    path.write_bytes(payload)
    spec = resolve_weights("ViT-B-32", str(path))
    assert spec.kind == "file" and spec.value == str(path)
    assert spec.weights_id == "file:" + hashlib.sha256(payload).hexdigest()[:16]  # GELU: the id files always had
    assert resolve_weights("ViT-B-32", str(path)) == spec
    path.write_bytes(payload[::-1])  # new content -> new id (size/mtime keyed cache must not go stale)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert resolve_weights("ViT-B-32", str(path)).weights_id != spec.weights_id


# --- preprocessing -----------------------------------------------------------------------------------


def test_target_size():
    assert target_size(320, 240, 224) == (298, 224)
    assert target_size(240, 320, 224) == (224, 298)
    assert target_size(224, 224, 224) == (224, 224)
    assert target_size(1920, 1080, 224) == (398, 224)


@pytest.mark.parametrize("size", [(298, 224), (224, 300), (301, 224), (224, 224)])
def test_preprocess_matches_open_clip(encoder, size):
    reference = image_transform_v2(PreprocessCfg(**encoder.visual.preprocess_cfg), is_train=False)
    w, h = size
    assert encoder.target_size(w, h)[0 if w <= h else 1] == encoder.image_size
    frame = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ours = encoder.preprocess([frame])[0]
    theirs = reference(Image.fromarray(frame))
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert (ours - theirs).abs().max().item() <= 1e-6


@pytest.mark.parametrize("size", [(100, 80), (640, 480)])
def test_preprocess_resizes_off_size_frames(encoder, size):
    w, h = size
    frame = textured_frames(1, h=h, w=w, seed=2)[0]
    reference = image_transform_v2(PreprocessCfg(**encoder.visual.preprocess_cfg), is_train=False)
    ours = encoder.preprocess([frame])[0]
    assert ours.shape == (3, 224, 224)
    # torch bicubic vs PIL bicubic: close, not identical
    assert (ours - reference(Image.fromarray(frame))).abs().mean().item() < 0.05


def test_preprocess_rejects_bad_frames(encoder):
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        encoder.preprocess([np.zeros((224, 224, 3), dtype=np.float32)])
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        encoder.preprocess([np.zeros((224, 224), dtype=np.uint8)])


# --- embedding ---------------------------------------------------------------------------------------


def test_encoder_attributes(encoder):
    assert encoder.image_size == 224 and encoder.embed_dim == 512
    assert encoder.is_random and encoder.weights_id == "random-init"
    assert encoder.precision == "fp32" and encoder.device == torch.device("cpu")
    assert not encoder.model.training and hasattr(encoder.model, "encode_text")  # text tower reachable
    assert load_clip(ClipConfig(precision="fp32", weights="none")) is encoder  # cached per process


@pytest.mark.slow
def test_embed_shape_batching_not_normalised(encoder, frames):
    emb = encoder.embed(frames, batch_size=64)
    assert emb.shape == (16, 512) and emb.dtype == np.float32
    assert not np.allclose(np.linalg.norm(emb, axis=1), 1.0)
    np.testing.assert_allclose(encoder.embed(frames, batch_size=5), emb, rtol=1e-4, atol=1e-4)
    assert encoder.embed([]).shape == (0, 512)


@pytest.mark.slow
def test_random_init_is_reproducible(encoder, frames):
    before = encoder.embed(frames[:4])
    clear_clip_cache()
    again = load_clip(ClipConfig(precision="fp32", weights="none"))
    assert again is not encoder
    np.testing.assert_array_equal(again.embed(frames[:4]), before)


def test_fp16_on_cpu_is_an_error():
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        load_clip(ClipConfig(weights="none", precision="fp16"), device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_cuda_without_cuda_is_an_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        load_clip(ClipConfig(precision="fp32", weights="none"), device="cuda")


@pytest.mark.slow
def test_bf16_close_to_fp32(encoder, frames):
    bf16 = load_clip(ClipConfig(weights="none", precision="bf16"))
    assert bf16.precision == "bf16" and next(bf16.model.parameters()).dtype == torch.bfloat16
    a, b = encoder.embed(frames), bf16.embed(frames)
    assert b.dtype == np.float32
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.999  # measured 0.99995 (random-init ViT-B-32, 16 textured frames)
    # random-init features share a large common component; compare what distinguishes images too
    m = a.mean(0)
    centred = ((a - m) * (b - m)).sum(1) / np.linalg.norm(a - m, axis=1) / np.linalg.norm(b - m, axis=1)
    assert centred.min() > 0.99  # measured 0.998


# --- checkpoints -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_checkpoint_round_trip(tmp_path, frames):
    torch.manual_seed(1234)
    original = open_clip.create_model("ViT-B-32").eval()
    path = tmp_path / "ckpt.pt"
    torch.save(original.state_dict(), path)

    enc = load_clip(ClipConfig(precision="fp32", weights=str(path)))
    assert not enc.is_random
    assert enc.weights_id.startswith("file:") and len(enc.weights_id) == len("file:") + 16  # GELU: no suffix
    assert enc.weights_id == resolve_weights("ViT-B-32", str(path)).weights_id
    few = frames[:8]
    with torch.inference_mode():
        expected = original.encode_image(enc.preprocess(few)).numpy()
    np.testing.assert_array_equal(enc.embed(few, batch_size=64), expected)


def test_corrupt_checkpoint_names_file(tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ClipWeightsError) as e:
        load_clip(ClipConfig(precision="fp32", weights=str(path)))
    assert str(path) in str(e.value)


class _Evil:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"visual.proj": _Evil(str(marker))}}, path)
    with pytest.raises(ClipWeightsError, match="evil.pt") as e:
        load_clip(ClipConfig(precision="fp32", weights=str(path)))
    assert "pickled Python objects are refused" in str(e.value)
    assert not marker.exists(), "the pickle payload ran"


# --- activation (GELU / QuickGELU) ------------------------------------------------------------------------


def _random_clip(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return open_clip.create_model(name).eval()


def _traced(model: torch.nn.Module, path, openai_attributes: bool):
    """A TorchScript archive of ``model``; with ``openai_attributes`` it carries, as OpenAI's released models do,
    ``input_resolution``, ``context_length`` and ``vocab_size`` beside the weights."""
    import copy

    m = copy.deepcopy(model)
    if openai_attributes:
        for name, value in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 49408)):
            if hasattr(m, name):  # open_clip keeps some as plain ints; OpenAI's model holds them as tensors
                delattr(m, name)
            m.register_buffer(name, torch.tensor(value))
    with torch.no_grad():
        traced = torch.jit.trace(m, (torch.zeros(1, 3, 224, 224), torch.zeros(1, 77, dtype=torch.long)),
                                 check_trace=False)
    traced.save(str(path))
    return path


@pytest.fixture(scope="module")
def quickgelu_ckpt(tmp_path_factory):
    """A random-init QuickGELU ViT-B-32 saved as a plain state dict and in OpenAI's TorchScript release format,
    plus the model itself as the reference."""
    model = _random_clip("ViT-B-32-quickgelu", 7)
    d = tmp_path_factory.mktemp("qg")
    torch.save(model.state_dict(), d / "qg.pt")
    return model, d / "qg.pt", _traced(model, d / "qg-jit.pt", openai_attributes=True)


def _embeds_like(enc, reference: torch.nn.Module, frames) -> bool:
    with torch.inference_mode():
        expected = reference.encode_image(enc.preprocess(frames)).numpy()
    return np.allclose(enc.embed(frames), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_state_dict_file_activation_is_explicit_and_recorded(quickgelu_ckpt, frames, caplog):
    """A state-dict file cannot tell its activation: 'auto' uses the model config's (GELU for ViT-B-32) and WARNS;
    the activation asked for is used and recorded in the weights id (and so in the settings hash)."""
    from moclip.config import FeatureSettings

    model, path, _ = quickgelu_ckpt
    few = frames[:4]
    with caplog.at_level("WARNING", logger="moclip.clip.pretrained"):
        auto = load_clip(ClipConfig(precision="fp32", weights=str(path)))
    assert auto.weights_id.startswith("file:") and "+" not in auto.weights_id  # GELU: the id files always had
    assert "cannot be told from the file" in caplog.text and "--clip-activation quickgelu" in caplog.text
    assert not _embeds_like(auto, model, few)  # GELU on QuickGELU weights: other features, silently before

    qg = load_clip(ClipConfig(precision="fp32", weights=str(path), activation="quickgelu"))
    assert qg.weights_id.endswith("+quickgelu") and qg.weights_id.split("+")[0] == auto.weights_id.split("+")[0]
    assert _embeds_like(qg, model, few)
    by_name = load_clip(ClipConfig(precision="fp32", model="ViT-B-32-quickgelu", weights=str(path)))
    assert by_name.weights_id.endswith("+quickgelu") and _embeds_like(by_name, model, few)

    s = FeatureSettings(clip=ClipConfig(weights=str(path), precision="fp32"))
    assert s.settings_hash(auto.weights_id) != s.settings_hash(qg.weights_id)


@pytest.mark.slow
def test_gelu_checkpoint_stays_gelu(tmp_path, frames):
    model = _random_clip("ViT-B-32", 8)
    path = tmp_path / "gelu.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    enc = load_clip(ClipConfig(precision="fp32", weights=str(path), activation="gelu"))
    assert "+" not in enc.weights_id and _embeds_like(enc, model, frames[:4])
    qg = load_clip(ClipConfig(precision="fp32", weights=str(path), activation="quickgelu"))
    assert not _embeds_like(qg, model, frames[:4])


@pytest.mark.slow
def test_openai_torchscript_checkpoint_is_detected_as_quickgelu(quickgelu_ckpt, frames, caplog):
    """OpenAI's release format (a TorchScript archive) is told apart and gets QuickGELU without being asked;
    torch.load(weights_only=True) refuses such archives, so they are read with torch.jit.load's state dict."""
    model, _, jit_path = quickgelu_ckpt
    spec = resolve_weights("ViT-B-32", str(jit_path))
    assert spec.torchscript and spec.quick_gelu and "OpenAI's TorchScript" in spec.activation_note
    with caplog.at_level("WARNING", logger="moclip.clip.pretrained"):
        enc = load_clip(ClipConfig(precision="fp32", weights=str(jit_path)))
    assert "cannot be told" not in caplog.text
    assert enc.weights_id.endswith("+quickgelu") and _embeds_like(enc, model, frames[:4])


@pytest.mark.slow
def test_another_torchscript_archive_is_not_taken_for_openai(tmp_path, frames, caplog):
    """A traced GELU model (open_clip's own trace, without OpenAI's attributes) cannot tell its activation: GELU
    from the model config, with the warning; its weights load all the same."""
    model = _random_clip("ViT-B-32", 9)
    path = _traced(model, tmp_path / "gelu-jit.pt", openai_attributes=False)
    spec = resolve_weights("ViT-B-32", str(path))
    assert spec.torchscript and not spec.quick_gelu and "cannot be told" in spec.activation_note
    enc = load_clip(ClipConfig(precision="fp32", weights=str(path)))
    assert enc.weights_id == spec.weights_id and "+" not in enc.weights_id and _embeds_like(enc, model, frames[:4])


def test_registry_hash_decides_activation():
    """A file whose SHA-256 is an official OpenAI checkpoint's (open_clip's registry URL carries it) is QuickGELU."""
    known = clip_pretrained.registry_checkpoints()
    digest, (name, qg) = next((d, v) for d, v in known.items() if v[0] == "ViT-B-32/openai")
    assert qg is True and name == "ViT-B-32/openai"
    facts = clip_pretrained.FileFacts
    assert clip_pretrained.detect_quick_gelu(facts(digest, False, False))[0] is True
    assert clip_pretrained.detect_quick_gelu(facts("0" * 64, True, False)) == (None, "")


def test_tag_activation_and_override():
    assert resolve_weights("ViT-B-32", "openai").quick_gelu is True  # the registry says so
    assert resolve_weights("ViT-B-32", "laion2b_s34b_b79k").quick_gelu is False
    forced = resolve_weights("ViT-B-32", "openai", "gelu")
    assert not forced.quick_gelu and forced.weights_id == "ViT-B-32/openai+gelu"
    assert resolve_weights("ViT-B-32", "none", "quickgelu").weights_id == "random-init+quickgelu"
    with pytest.raises(ClipWeightsError, match="built with QuickGELU"):
        resolve_weights("ViT-B-32-quickgelu", "none", "gelu")
    with pytest.raises(ClipWeightsError, match="unknown CLIP activation"):
        resolve_weights("ViT-B-32", "none", "relu")


# --- offline -----------------------------------------------------------------------------------------


@pytest.fixture
def hub_state():
    """Undo what the offline switch does to this process (env var, huggingface_hub constant, probe memo)."""
    from huggingface_hub import constants

    saved = (
        os.environ.get("HF_HUB_OFFLINE"),
        constants.HF_HUB_OFFLINE,
        clip_pretrained._offline_reason,
        clip_pretrained._probed,
    )
    yield
    env, const, reason, probed = saved
    if env is None:
        os.environ.pop("HF_HUB_OFFLINE", None)
    else:
        os.environ["HF_HUB_OFFLINE"] = env
    constants.HF_HUB_OFFLINE = const
    clip_pretrained._offline_reason, clip_pretrained._probed = reason, probed


OFFLINE_PROBE = """
import json, sys, time
start = time.perf_counter()
from moclip.clip import ClipWeightsError, load_clip
from moclip.clip import pretrained
from moclip.config import ClipConfig
t0 = time.perf_counter()
try:
    load_clip(ClipConfig(precision="fp32", model="ViT-B-32", weights="openai"))
    out = {"error": None}
except ClipWeightsError as e:
    out = {"error": str(e)}
out.update(elapsed=time.perf_counter() - t0, cache=pretrained.hub_cache_dir())
print(json.dumps(out))
"""


@pytest.mark.slow
def test_missing_tag_offline_fails_fast(tmp_path):
    """Runs everywhere: a child process with HF_HUB_OFFLINE=1 and an empty Hugging Face cache of its own (so a
    machine that has the weights cached, or can reach the hub, tests the same thing)."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "MOCLIP_CACHE": str(tmp_path)}
    env.pop("HF_HUB_CACHE", None)
    env.pop("HUGGINGFACE_HUB_CACHE", None)
    run = subprocess.run([sys.executable, "-c", OFFLINE_PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    msg = out["error"]
    assert msg is not None, "loading ViT-B-32/openai with an empty cache offline must fail"
    assert out["elapsed"] < 5.0, f"offline failure took {out['elapsed']:.1f} s"
    assert out["cache"].startswith(str(tmp_path / "hf"))
    assert "ViT-B-32/openai" in msg and "not in the local Hugging Face cache" in msg
    assert out["cache"] in msg and "no network" in msg
    assert "--clip-weights PATH" in msg and "--clip-weights none" in msg and "RANDOMLY" in msg


def test_offline_switch_sets_env_and_hub_constant(hub_state, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(clip_pretrained, "_offline_reason", None)
    monkeypatch.setattr(clip_pretrained, "_probed", False)
    monkeypatch.setattr(clip_pretrained, "hub_reachable", lambda: False)
    assert "not reachable" in clip_pretrained.ensure_hub_mode()
    assert os.environ["HF_HUB_OFFLINE"] == "1" and constants.is_offline_mode()


def test_explicit_offline_env_is_respected(hub_state, monkeypatch):
    def no_probe() -> bool:
        raise AssertionError("must not probe when HF_HUB_OFFLINE is set")

    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(clip_pretrained, "_offline_reason", None)
    monkeypatch.setattr(clip_pretrained, "hub_reachable", no_probe)
    assert clip_pretrained.ensure_hub_mode() is None
