"""CLIP zero-shot: class names to words, the prompt ensemble, the text cache, and extra classes scored against the
trained ones (random-init CLIP: the arithmetic is what is tested, not CLIP's knowledge)."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch

from moclip import zeroshot
from moclip.clip import load_clip
from moclip.config import ClipConfig


@pytest.mark.parametrize(("name", "words"), [
    ("ApplyEyeMakeup", "apply eye makeup"), ("HandStandPushups", "hand stand pushups"), ("YoYo", "yo yo"),
    ("brush_hair", "brush hair"), ("jump-rope", "jump rope"), ("PlayingDaf", "playing daf"),
    ("  Still ", "still"), ("TaiChi", "tai chi"), ("BaseballPitch", "baseball pitch"), ("JumpingJack", "jumping jack"),
    ("IceDancing2", "ice dancing2"), ("UCFSports", "ucf sports"),
])
def test_class_names_become_words(name, words):
    assert zeroshot.humanize(name) == words


def test_prompt_sets():
    assert len(zeroshot.TEMPLATE_SETS["short"]) == 8 and len(zeroshot.TEMPLATE_SETS["clip-ucf101"]) == 48
    assert "a photo of a person {}." in zeroshot.TEMPLATE_SETS["clip-ucf101"]
    assert all(t.count("{}") == 1 for ts in zeroshot.TEMPLATE_SETS.values() for t in ts)


@pytest.fixture(scope="module")
def clip_model():
    enc = load_clip(ClipConfig(precision="fp32", weights="none"))
    return enc.model, open_clip.get_tokenizer("ViT-B-32")


def test_prompt_ensemble_is_the_mean_of_normalised_prompts(clip_model, tmp_path, monkeypatch):
    monkeypatch.setenv("MOCLIP_CACHE", str(tmp_path))
    model, tok = clip_model
    names = ["ApplyEyeMakeup", "brush_hair", "YoYo"]
    emb = zeroshot.text_embeddings(model, tok, names, "test-weights", "short")
    assert emb.shape == (3, 512) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    with torch.inference_mode():
        for i, name in enumerate(names):
            texts = [t.format(zeroshot.humanize(name)) for t in zeroshot.TEMPLATE_SETS["short"]]
            e = model.encode_text(tok(texts), normalize=True).mean(0)
            assert np.allclose(emb[i], (e / e.norm()).numpy(), atol=1e-5)
    # cached on disk, keyed by the weights id: the same id reads the file, another id computes its own
    files = list((tmp_path / "text").glob("*.npy"))
    assert len(files) == 1 and np.array_equal(np.load(files[0]), emb)
    np.save(files[0], np.zeros_like(emb))
    assert not zeroshot.text_embeddings(model, tok, names, "test-weights", "short").any()  # from the cache
    assert zeroshot.text_embeddings(model, tok, names, "other-weights", "short").any()
    assert len(list((tmp_path / "text").glob("*.npy"))) == 2
    with pytest.raises(ValueError, match="unknown prompt set"):
        zeroshot.text_embeddings(model, tok, names, "x", "long")


def test_one_extra_class_is_not_certain_everywhere():
    """Extra names are scored against the trained classes' names too: a single extra class used to get
    probability 1.0 on every video (a softmax over one name)."""
    rng = np.random.default_rng(0)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    from moclip.label import extra_class_columns
    from moclip.train.calibrate import softmax

    trained, extra = unit(rng.normal(size=(4, 16))), unit(rng.normal(size=(1, 16)))
    videos = unit(np.concatenate([trained + 0.3 * rng.normal(size=(4, 16)), extra + 0.3 * rng.normal(size=(1, 16))]))
    cols = extra_class_columns(videos, trained, extra, ["juggling"], top_k=5)
    probs = np.array([p[0] for p in cols["zero_shot_probs"]])
    assert (probs < 1.0).all() and probs.max() - probs.min() > 0.1
    assert probs.argmax() == 4  # the video near the extra name's embedding
    cos = videos @ np.concatenate([trained, extra]).T
    assert np.allclose(probs, softmax(100 * cos)[:, 4], atol=1e-5)
    assert np.allclose([m[0] for m in cols["zero_shot_margin"]], cos[:, 4] - cos[:, :4].max(1), atol=1e-6)
    assert np.allclose([c[0] for c in cols["zero_shot_cosine"]], cos[:, 4], atol=1e-6)
    assert cols["zero_shot_margin"][4][0] > 0 > cols["zero_shot_margin"][0][0]
