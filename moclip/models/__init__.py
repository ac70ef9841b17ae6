"""Models trained on frozen features: the MV network, the fusion head and the CLIP linear probe."""

from moclip.models.factory import (
    PAPER_MV_NET,
    count_params,
    create_mvnet,
    flops_per_video,
    list_mvnet_configs,
    mvnet_config,
)
from moclip.models.heads import FusionHead, LinearProbe, set_standardisation
from moclip.models.mvnet import MVNet, MVNet21D, set_input_scale

__all__ = [
    "PAPER_MV_NET", "FusionHead", "LinearProbe", "MVNet", "MVNet21D", "count_params", "create_mvnet", "flops_per_video",
    "list_mvnet_configs", "mvnet_config", "set_input_scale", "set_standardisation",
]
