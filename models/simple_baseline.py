"""SimpleBaseline (Xiao, Wu and Wei, "Simple Baselines for Human Pose Estimation and Tracking", ECCV'18).

A ResNet backbone followed by three deconvolutions and a 1x1 heatmap head.

Sources:

- Paper Sec. 2: ResNet backbone (ImageNet pre-trained), three deconvolutional layers with batch
  normalisation and ReLU, 256 filters of 4x4 with stride 2 each, then a 1x1 convolution producing
  the K heatmaps; 256x192 input -> 64x48 heatmaps; Adam, LR 1e-3, x0.1 at epochs 90 and 120, 140
  epochs (Sec. 4.1).
- Official code, microsoft/human-pose-estimation.pytorch ``lib/models/pose_resnet.py``
  (``PoseResNet._make_deconv_layer`` and ``final_layer``, ``init_weights``): ``ConvTranspose2d``
  with kernel 4, padding 1, output padding 0, no bias (``DECONV_WITH_BIAS: false``), BN, ReLU; the
  head is a 1x1 ``Conv2d`` with bias; deconvolution and head weights ~ N(0, 0.001), biases 0,
  BN weight 1 and bias 0.
- Parameter and GFLOP figures of the variants: HRNet official README (COCO val table): R50 / R101 / R152
  at 256x192 with 34.0 / 53.0 / 68.6 M parameters and 8.9 / 12.4 / 15.7 GFLOPs.

Deviations: the backbone comes from timm (``resnetXX.tv_in1k``, the torchvision ImageNet weights
the official code loads, when ``pretrained`` is true). ``simplebaseline-tiny`` is ours: a
quarter-width ResNet-18 with 64-channel deconvolutions at 128x96, for tests and the demo.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from models.base import HeatmapEstimator, init_heatmap_weights
from models.pretrained import create_timm_model, timm_num_features
from models.registry import COCO_FLIP_PAIRS, COCO_JOINTS, register_method, register_variant


class DeconvHead(nn.Module):
    """Deconvolutions (4x4, stride 2, no bias) + BN + ReLU, then a 1x1 heatmap conv: ``(B, C, h, w)`` ->
    ``(B, K, h * 2^n, w * 2^n)``."""

    def __init__(self, in_channels: int, num_joints: int, channels: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for out_channels in channels:
            layers += [
                nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1,
                                   output_padding=0, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = out_channels
        self.deconv = nn.Sequential(*layers)
        self.final = nn.Conv2d(in_channels, num_joints, kernel_size=1)
        init_heatmap_weights(self)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.final(self.deconv(features))


class PoseResNet(nn.Module):
    """timm ResNet (stride 32) + ``DeconvHead``: image ``(B, 3, H, W)`` -> heatmaps ``(B, K, H/4, W/4)``."""

    def __init__(self, backbone: str, num_joints: int, deconv_channels: Sequence[int], pretrained: bool,
                 backbone_args: Mapping[str, Any]) -> None:
        super().__init__()
        # num_classes=0 and global_pool="" leave the last stage's feature map as the output;
        # zero_init_last=False keeps torchvision's initialisation (timm zeroes each block's last BN).
        self.backbone = create_timm_model(backbone, pretrained=pretrained, owner=f"simplebaseline ({backbone})",
                                          num_classes=0, global_pool="", **{"zero_init_last": False, **backbone_args})
        self.head = DeconvHead(timm_num_features(self.backbone), num_joints, deconv_channels)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(image))


@register_method("simplebaseline")
class SimpleBaseline(HeatmapEstimator):
    """SimpleBaseline: ``backbone`` is a timm ResNet name; ``pretrained`` loads its ImageNet weights
    (downloads); ``deconv_channels`` one entry per 2x deconvolution (three, so the stride is 32 / 8 = 4);
    ``backbone_args`` extra timm constructor arguments (e.g. ``channels`` for a narrow ResNet)."""

    def __init__(
        self,
        *,
        backbone: str = "resnet50.tv_in1k",
        pretrained: bool = True,
        deconv_channels: Sequence[int] = (256, 256, 256),
        backbone_args: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        height, width = self.input_size
        if height % 32 or width % 32:
            raise ValueError(f"simplebaseline input_size {[height, width]} must be divisible by 32 (the ResNet stride)")
        if len(deconv_channels) != 3:
            raise ValueError(f"deconv_channels must have 3 entries (stride 32 -> 4), got {list(deconv_channels)}")
        self.net = PoseResNet(backbone, self.num_joints, deconv_channels, pretrained, dict(backbone_args or {}))


_COCO: dict[str, Any] = {"num_joints": COCO_JOINTS, "flip_pairs": COCO_FLIP_PAIRS}
register_variant("simplebaseline-res50", "simplebaseline", input_size=(256, 192), paper_gflops=8.9,
                 paper_params=34.0, backbone="resnet50.tv_in1k", **_COCO)
register_variant("simplebaseline-res101", "simplebaseline", input_size=(256, 192), paper_gflops=12.4,
                 paper_params=53.0, backbone="resnet101.tv_in1k", **_COCO)
register_variant("simplebaseline-res152", "simplebaseline", input_size=(256, 192), paper_gflops=15.7,
                 paper_params=68.6, backbone="resnet152.tv_in1k", **_COCO)
register_variant("simplebaseline-tiny", "simplebaseline", input_size=(128, 96), tiny=True,
                 backbone="resnet18", pretrained=False, deconv_channels=[64, 64, 64],
                 backbone_args={"channels": [16, 32, 64, 128], "stem_width": 16}, **_COCO)
