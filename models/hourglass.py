"""Stacked Hourglass Networks (Newell, Yang and Deng, ECCV'16).

Sources:

- Paper Sec. 3.1-3.4: residual modules throughout, 256 features, each hourglass pools down four
  times (max pooling) and comes back with nearest-neighbour upsampling, adding a skip branch at
  every resolution; 256x256 input, a 7x7 stride-2 convolution and a residual module and max
  pooling bring it to 64x64; stacks with intermediate supervision: each stack's predictions and
  features are mapped by 1x1 convolutions and added to the stack's input. 8 stacks in the final
  model (also 2 and 4 in the paper's comparisons); RMSprop 2.5e-4.
- Official code, umich-vl/pose-hg-train ``src/models/hg.lua`` and ``src/models/layers/Residual.lua``
  (and the PyTorch port bearpaw/pytorch-pose ``pose/models/hourglass.py``):
  stem ``conv 7x7/2 (3 -> 64) - BN - ReLU - Residual(64, 128) - maxpool - Residual(128, 128) -
  Residual(128, nFeats)``; ``hourglass(n)``: up branch ``Residual``, low branch ``maxpool -
  Residual - hourglass(n - 1) (or Residual at n = 1) - Residual - nearest x2``, summed; per stack
  ``hourglass(4) - Residual - lin (1x1 conv - BN - ReLU) - 1x1 conv to K heatmaps``; between
  stacks ``inter = inter + conv1x1(ll) + conv1x1(heatmaps)``. ``Residual`` is the pre-activation
  bottleneck ``BN - ReLU - 1x1 (n -> n/2) - BN - ReLU - 3x3 (n/2) - BN - ReLU - 1x1 (n/2 -> n)``
  with a 1x1 skip convolution when the widths differ; convolutions have biases; ``nModules = 1``.
- 8-stack size: about 25.1M parameters (HRNet paper, COCO table).

Deviations: ``features`` also scales the stem (``features / 4``, ``features / 2``), which is the
official stem at 256; ``hourglass-tiny`` (2 stacks, 32 features, 128x128) is ours, for tests and the demo.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.base import HeatmapEstimator
from models.registry import MPII_FLIP_PAIRS, MPII_JOINTS, register_method, register_variant


class Residual(nn.Module):
    """Pre-activation bottleneck: ``(B, C_in, h, w)`` -> ``(B, C_out, h, w)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True), nn.Conv2d(in_channels, mid, 1),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, out_channels, 1),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class Hourglass(nn.Module):
    """One hourglass of ``depth`` poolings: ``(B, C, h, w)`` -> ``(B, C, h, w)``; h, w divisible by 2^depth."""

    def __init__(self, depth: int, channels: int) -> None:
        super().__init__()
        self.up = Residual(channels, channels)
        self.down = Residual(channels, channels)
        self.inner = Hourglass(depth - 1, channels) if depth > 1 else Residual(channels, channels)
        self.after = Residual(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.after(self.inner(self.down(F.max_pool2d(x, 2, stride=2))))
        return self.up(x) + F.interpolate(low, scale_factor=2, mode="nearest")


def _lin(channels: int) -> nn.Sequential:
    """hg.lua ``lin``: 1x1 conv - BN - ReLU."""
    return nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class StackedHourglassNet(nn.Module):
    """``stacks`` hourglasses: image ``(B, 3, H, W)`` -> list of ``stacks`` heatmaps ``(B, K, H/4, W/4)``."""

    def __init__(self, stacks: int, features: int, num_joints: int, depth: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, features // 4, 7, stride=2, padding=3), nn.BatchNorm2d(features // 4), nn.ReLU(inplace=True),
            Residual(features // 4, features // 2), nn.MaxPool2d(2, stride=2),
            Residual(features // 2, features // 2), Residual(features // 2, features),
        )
        self.hourglasses = nn.ModuleList(Hourglass(depth, features) for _ in range(stacks))
        self.features = nn.ModuleList(
            nn.Sequential(Residual(features, features), _lin(features)) for _ in range(stacks)
        )
        self.heads = nn.ModuleList(nn.Conv2d(features, num_joints, 1) for _ in range(stacks))
        self.remap_features = nn.ModuleList(nn.Conv2d(features, features, 1) for _ in range(stacks - 1))
        self.remap_heatmaps = nn.ModuleList(nn.Conv2d(num_joints, features, 1) for _ in range(stacks - 1))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(image)
        outputs = []
        for i, (hourglass, features, head) in enumerate(zip(self.hourglasses, self.features, self.heads, strict=True)):
            y = features(hourglass(x))
            heatmaps = head(y)
            outputs.append(heatmaps)
            if i < len(self.remap_features):
                x = x + self.remap_features[i](y) + self.remap_heatmaps[i](heatmaps)
        return outputs


@register_method("hourglass")
class StackedHourglass(HeatmapEstimator):
    """Stacked Hourglass: ``stacks`` hourglasses of ``features`` channels; intermediate supervision on
    every stack's heatmaps. The input size must be divisible by 64 (stride 4, then four poolings)."""

    def __init__(self, *, stacks: int = 8, features: int = 256, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if stacks < 1 or features < 4 or features % 4:
            raise ValueError(f"stacks must be >= 1 and features a positive multiple of 4, got {stacks}, {features}")
        height, width = self.input_size
        if height % 64 or width % 64:
            raise ValueError(f"hourglass input_size {[height, width]} must be divisible by 64")
        self.net = StackedHourglassNet(stacks, features, self.num_joints)


# The paper's optimiser (RMSprop, LR 2.5e-4) is a run setting: benchmark/configs/method/hourglass.yaml.
_MPII: dict[str, Any] = {"num_joints": MPII_JOINTS, "flip_pairs": MPII_FLIP_PAIRS}
for _stacks in (1, 2, 4, 8):
    register_variant(f"hourglass-{_stacks}", "hourglass", input_size=(256, 256),
                     paper_params=25.1 if _stacks == 8 else None, stacks=_stacks, **_MPII)
register_variant("hourglass-tiny", "hourglass", input_size=(128, 128), tiny=True, stacks=2, features=32, **_MPII)
