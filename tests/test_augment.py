"""MV-aware augmentation: a horizontal flip mirrors the grid and negates x motion (flip is on by default)."""

from __future__ import annotations

import torch

from moclip.train.augment import augment, hflip, temporal_jitter
from moclip.train.pipeline import TrainConfig


def test_hflip_mirrors_the_grid_and_negates_x_motion():
    mv = torch.randn(2, 4, 2, 3, 5)
    out = hflip(mv, torch.tensor([True, False]))
    assert torch.equal(out[0, :, 0], -mv[0, :, 0].flip(-1))  # x motion: mirrored and negated
    assert torch.equal(out[0, :, 1], mv[0, :, 1].flip(-1))  # y motion: mirrored only
    assert torch.equal(out[1], mv[1])  # not flipped
    # a rightward pan becomes a leftward one: the mean x motion changes sign
    pan = torch.zeros(1, 4, 2, 3, 5)
    pan[:, :, 0] = 2.0
    assert (hflip(pan, torch.tensor([True]))[:, :, 0] == -2.0).all()


def test_flip_is_on_by_default_and_flips_about_half_the_batch():
    assert TrainConfig().flip is True
    mv = torch.zeros(400, 8, 2, 3, 5)
    mv[:, :, 0] = 1.0  # every video pans right
    valid = torch.ones(400, 8, dtype=torch.int32)
    out, _ = augment(mv, valid, torch.Generator().manual_seed(0), flip=True)
    flipped = (out[:, :, 0] < 0).all(dim=(1, 2, 3))
    assert 150 < int(flipped.sum()) < 250
    kept, _ = augment(mv, valid, torch.Generator().manual_seed(0), flip=False)
    assert (kept[:, :, 0] > 0).all()


def test_temporal_jitter_keeps_shape_and_segment_order():
    mv = torch.arange(8, dtype=torch.float32).view(1, 8, 1, 1, 1).expand(64, 8, 2, 1, 1).clone()
    valid = torch.arange(8).view(1, 8).expand(64, 8).clone()
    out, v = temporal_jitter(mv, valid, torch.Generator().manual_seed(1))
    assert out.shape == mv.shape and v.shape == valid.shape
    assert (out[:, 1:, 0, 0, 0] >= out[:, :-1, 0, 0, 0]).all()  # time never runs backwards
    assert torch.equal(out[:, :, 0, 0, 0].long(), v)  # MVs and their validity move together


def test_fusion_batches_train_on_means_of_random_frame_subsets():
    """``clip_subsets``: a training batch's CLIP part is the normalised mean of k of each clip's K frames (k from 1
    to K, one per batch), so a 2-frame window is no stranger to the head than an 8-frame clip; validation batches
    and the MV part are untouched."""
    import numpy as np
    import torch

    from moclip.train.pipeline import _fusion_batches

    n, k_max, mv_dim = 6, 8, 3
    frames = torch.eye(k_max).repeat(n, 1, 1)  # frame j of every clip: the unit vector e_j
    clip = torch.nn.functional.normalize(frames.mean(1), dim=1)  # the 8-frame mean the head is trained beside
    fused = torch.cat([torch.arange(n * mv_dim, dtype=torch.float32).reshape(n, mv_dim), clip], dim=1)
    y, missing = np.arange(n), torch.zeros(n, dtype=torch.bool)
    batches = _fusion_batches(fused, y, missing, frames, seed=0)
    idx = np.arange(n)
    (x_val, _), _ = batches(idx, False)
    assert torch.equal(x_val, fused)
    ks = set()
    for _ in range(40):
        (x, miss), labels = batches(idx, True)
        assert torch.equal(x[:, :mv_dim], fused[:, :mv_dim]) and torch.equal(labels, torch.from_numpy(y))
        used = (x[:, mv_dim:] > 0).sum(1)  # how many frames went into each row's mean
        assert (used == used[0]).all()  # one k per batch
        k = int(used[0])
        assert torch.allclose(x[:, mv_dim:][x[:, mv_dim:] > 0], torch.full((n * k,), k ** -0.5))  # a mean, normalised
        ks.add(k)
    assert ks == set(range(1, k_max + 1))  # every k from 1 to K occurs
    assert torch.equal(_fusion_batches(fused, y, missing, None, seed=0)(idx, True)[0][0], fused)  # off: as stored
