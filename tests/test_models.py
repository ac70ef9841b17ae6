"""Architectures are data: every shipped config builds, runs, and reports its size."""

from __future__ import annotations

import pytest
import torch

from moclip.models import count_params, create_mvnet, flops_per_video, list_mvnet_configs, mvnet_config


@pytest.mark.parametrize("name", list_mvnet_configs())
def test_configs_build_and_run(name):
    net = create_mvnet(mvnet_config(name), num_classes=7)
    mv, valid = torch.randn(3, 8, 2, 15, 20), torch.tensor([[1] * 8, [0] * 8, [1, 0] * 4])
    assert net(mv, valid).shape == (3, 7)
    assert net.features(mv, valid).shape == (3, net.feature_dim)
    assert 0 < count_params(net) < 1_000_000 and flops_per_video(net, (8, 2, 15, 20)) > 0


def test_masked_segments_do_not_count():
    net = create_mvnet(mvnet_config("mvnet-tiny"), num_classes=3).eval()  # temporal kernel 1: no neighbour mixing
    mv = torch.randn(1, 8, 2, 15, 20)
    valid = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0]])
    other = mv.clone()
    other[:, 4:] = 100.0  # garbage in segments without usable MVs
    with torch.no_grad():
        a, b = net.features(mv, valid), net.features(other, valid)
    assert torch.allclose(a, b, atol=1e-6)
    with torch.no_grad():  # without the mask the garbage would count
        assert not torch.allclose(net.features(mv), net.features(other), atol=1e-3)


def test_unknown_config_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown MV-net config"):
        mvnet_config("mvnet-huge")
    with pytest.raises(ValueError, match="unknown MV-net type"):
        create_mvnet({"type": "lstm"}, 3)


@pytest.mark.parametrize("name", list_mvnet_configs())
def test_input_scale_is_the_train_rms_and_travels_with_the_weights(name):
    """Stored MVs are small (% of frame per frame); the net divides them by the train set's per-channel RMS so
    BatchNorm's running statistics start near the batch statistics (unscaled, early-stopped nets predicted one
    class in eval mode on the demo corpus)."""
    from moclip.models import set_input_scale

    torch.manual_seed(0)
    mv = torch.randn(64, 8, 2, 15, 20) * torch.tensor([0.05, 0.2]).view(1, 1, 2, 1, 1)
    net = create_mvnet(mvnet_config(name), num_classes=5)
    set_input_scale(net, mv)
    scaled = mv / net.input_scale.view(1, 1, -1, 1, 1)
    assert torch.allclose(scaled.pow(2).mean(dim=(0, 1, 3, 4)), torch.ones(2), atol=1e-3)
    other = create_mvnet(mvnet_config(name), num_classes=5)
    other.load_state_dict(net.state_dict())  # the bundle's safetensors carry it
    assert torch.equal(other.input_scale, net.input_scale)


# --- heads: standardisation and the missing-MV path ------------------------------------------------------------


def _fitted_head(seed: int = 0, dead: tuple[int, ...] = (3, 17, 40)) -> tuple:
    """A fusion head fitted on features where some MV dimensions are dead ReLU units (0 for every train video)."""
    from moclip.models import FusionHead, set_standardisation

    g = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(200, 64 + 32, generator=g))
    x[:, list(dead)] = 0.0
    head = FusionHead(64, 32, num_classes=5, hidden=32)
    set_standardisation(head, x)
    return head.eval(), x


def test_a_feature_constant_in_training_cannot_move_the_logits():
    """Dead features were divided by std.clamp_min(1e-6): one firing at inference moved the logits by ~10^6 times
    its value through a weight that was never trained. Now a dimension constant in training never reaches the
    head, whatever its value at inference."""
    head, x = _fitted_head()
    probe = x[:10].clone()
    with torch.no_grad():
        before = head(probe)
        for value in (0.5, 4.0, 1e3):
            fired = probe.clone()
            fired[:, [3, 17, 40]] = value
            assert torch.equal(head(fired), before), value
    assert head.active[[3, 17, 40]].sum() == 0 and head.active.sum() == 96 - 3


def test_a_near_constant_feature_is_amplified_a_bounded_amount():
    """A dimension that barely varied in training is standardised by at least STD_FLOOR x the typical std, so a
    unit change of it moves the standardised input by at most 1 / (STD_FLOOR x typical std)."""
    from moclip.models.heads import STD_FLOOR

    head, x = _fitted_head()
    x2 = x.clone()
    x2[:, 5] = 1e-3 * torch.randn(200, generator=torch.Generator().manual_seed(1)) + 0.2  # std ~ 1e-3
    head.fit_standardisation(x2)
    typical = x.std(0)[x.std(0) > 0].median()
    assert head.active[5] == 1 and head.std[5] >= STD_FLOOR * typical * 0.999
    z = (torch.full((96,), 10.0) - head.mean) / head.std * head.active
    assert z[5].abs() <= 10.0 / (STD_FLOOR * typical) + 1


def test_format1_heads_are_upgraded_on_load():
    """A bundle of format 1 has no ``active`` buffer and std floored at 1e-6: loading applies today's rule."""
    from moclip.models import FusionHead

    head, x = _fitted_head()
    old = {k: v for k, v in head.state_dict().items() if k != "active"}
    std = x.std(0)
    old["std"] = std.clamp_min(1e-6)  # what format 1 stored
    again = FusionHead(64, 32, num_classes=5, hidden=32)
    again.load_state_dict(old)
    assert torch.equal(again.active, head.active) and torch.allclose(again.std, head.std)


def test_mv_missing_takes_the_clip_only_path_exactly():
    """With ``mv_missing`` the head's MV block is 0 (the train mean), as modality dropout trained it, whatever the
    MV features are."""
    head, x = _fitted_head()
    probe = x[:6].clone()
    missing = torch.tensor([True, False, True, False, True, False])
    with torch.no_grad():
        z = (probe - head.mean) / head.std * head.active
        z[:, :64] = 0
        clip_only = head.net(z)
        garbage = probe.clone()
        garbage[:, :64] = 1e4
        out = head(garbage, missing)
        assert torch.allclose(out[missing], clip_only[missing], atol=1e-5)
        assert torch.allclose(head(probe, missing)[missing], clip_only[missing], atol=1e-5)
        assert torch.allclose(out[~missing], head(garbage)[~missing])


def test_stream_dropout_never_drops_both_streams():
    head, x = _fitted_head()
    head.train()
    head.stream_dropout = 1.0  # every sample loses a stream
    head.net = torch.nn.Identity()  # look at what reaches the MLP
    torch.manual_seed(0)
    z = head(x[:64], torch.ones(64, dtype=torch.bool))  # no MV: CLIP must survive for every sample
    assert (z[:, :64] == 0).all() and (z[:, 64:].abs().sum(1) > 0).all()
