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
    return load_clip(ClipConfig(model="ViT-B-32", weights="none"))


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
    assert spec.weights_id == "file:" + hashlib.sha256(payload).hexdigest()[:16]
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
    assert load_clip(ClipConfig(weights="none")) is encoder  # cached per process


def test_embed_shape_batching_not_normalised(encoder, frames):
    emb = encoder.embed(frames, batch_size=64)
    assert emb.shape == (16, 512) and emb.dtype == np.float32
    assert not np.allclose(np.linalg.norm(emb, axis=1), 1.0)
    np.testing.assert_allclose(encoder.embed(frames, batch_size=5), emb, rtol=1e-4, atol=1e-4)
    assert encoder.embed([]).shape == (0, 512)


def test_random_init_is_reproducible(encoder, frames):
    before = encoder.embed(frames[:4])
    clear_clip_cache()
    again = load_clip(ClipConfig(weights="none"))
    assert again is not encoder
    np.testing.assert_array_equal(again.embed(frames[:4]), before)


def test_fp16_on_cpu_is_an_error():
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        load_clip(ClipConfig(weights="none", precision="fp16"), device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_cuda_without_cuda_is_an_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        load_clip(ClipConfig(weights="none"), device="cuda")


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


def test_checkpoint_round_trip(tmp_path, frames):
    torch.manual_seed(1234)
    original = open_clip.create_model("ViT-B-32").eval()
    path = tmp_path / "ckpt.pt"
    torch.save(original.state_dict(), path)

    enc = load_clip(ClipConfig(weights=str(path)))
    assert not enc.is_random
    assert enc.weights_id.startswith("file:") and len(enc.weights_id) == len("file:") + 16
    assert enc.weights_id == resolve_weights("ViT-B-32", str(path)).weights_id
    few = frames[:8]
    with torch.inference_mode():
        expected = original.encode_image(enc.preprocess(few)).numpy()
    np.testing.assert_array_equal(enc.embed(few, batch_size=64), expected)


def test_corrupt_checkpoint_names_file(tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ClipWeightsError) as e:
        load_clip(ClipConfig(weights=str(path)))
    assert str(path) in str(e.value)


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


def _openai_cached_or_online() -> bool:
    from huggingface_hub import try_to_load_from_cache

    cfg = open_clip.get_pretrained_cfg("ViT-B-32", "openai")
    repo = cfg["hf_hub"].rstrip("/")
    for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        if isinstance(try_to_load_from_cache(repo, name), str):
            return True
    return clip_pretrained.hub_reachable()


def test_missing_tag_offline_fails_fast(hub_state):
    if _openai_cached_or_online():
        pytest.skip("ViT-B-32/openai is cached, or the hub is reachable (the test would download it)")
    start = time.perf_counter()
    with pytest.raises(ClipWeightsError) as e:
        load_clip(ClipConfig(model="ViT-B-32", weights="openai"))
    elapsed = time.perf_counter() - start
    msg = str(e.value)
    assert elapsed < 5.0, f"offline failure took {elapsed:.1f} s"
    assert "ViT-B-32/openai" in msg and "not in the local Hugging Face cache" in msg
    assert clip_pretrained.hub_cache_dir() in msg and "no network" in msg
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
