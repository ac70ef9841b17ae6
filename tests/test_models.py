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
