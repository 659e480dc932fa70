"""HRNet for pose (Sun, Xiao, Liu and Wang, "Deep High-Resolution Representation Learning for Human
Pose Estimation", CVPR'19).

Parallel multi-resolution branches with repeated exchange (fusion) units; the heatmaps come from the
highest-resolution branch through a 1x1 convolution.

Sources:

- Paper Sec. 3 and Fig. 2 ("Network instantiation"): a stem of two 3x3 stride-2 convolutions to
  stride 4; stage 1 = 4 bottleneck residual units of width 64 (output 256); stages 2/3/4 hold
  2/3/4 branches of widths C, 2C, 4C, 8C (C = 32 for HRNet-W32, 48 for W48), built from 1/4/3
  exchange blocks ("modules"), each with 4 residual units of two 3x3 convolutions per branch and one
  exchange unit; the last exchange unit feeds only the high-resolution output, from which a 1x1
  convolution regresses the K heatmaps. Exchange unit (Sec. 3, "Repeated multi-scale fusion"):
  high -> low by 3x3 stride-2 convolutions, low -> high by nearest upsampling after a 1x1
  convolution, summed.
- Official code, leoxiaobin/deep-high-resolution-net.pytorch ``lib/models/pose_hrnet.py``:
  ``BasicBlock``, ``Bottleneck`` (no conv biases, BN momentum 0.1); ``HighResolutionModule``
  (``_make_fuse_layers``: ``j > i`` -> ``conv1x1 - BN - Upsample(2^(j-i), nearest)``; ``j < i`` ->
  ``i - j`` stride-2 ``conv3x3 - BN`` with ReLU on all but the last; ``forward`` sums and applies
  ReLU; ``multi_scale_output=False`` builds only ``fuse_layers[0]``); ``PoseHighResolutionNet``
  (stem ``conv1 - bn1 - relu - conv2 - bn2 - relu``; ``layer1 = _make_layer(Bottleneck, 64, 4)``;
  ``_make_transition_layer``: a 3x3 convolution where a branch's width changes, and a new branch by
  stride-2 ``conv3x3 - BN - ReLU`` from the lowest-resolution branch (``y_list[-1]``);
  ``stage4`` with ``multi_scale_output=False``; ``final_layer`` a 1x1 convolution with bias);
  ``init_weights``: every convolution ~ N(0, 0.001) with zero bias, BN weight 1 and bias 0, then the
  ImageNet checkpoint loaded onto ``PRETRAINED_LAYERS`` (stem, ``layer1``, transitions, stages) with
  ``strict=False``, so the classification head and the extra fuse layers of the classifier's last
  module are ignored. Stage settings: ``experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml``
  (``NUM_MODULES`` 1/4/3, ``NUM_BLOCKS`` 4, ``NUM_CHANNELS`` 32/64/128/256, ``FINAL_CONV_KERNEL`` 1).
- Sizes: HRNet official README, COCO val table: W32 28.5M parameters, 7.1 GFLOPs; W48 63.6M,
  14.6 GFLOPs, both at 256x192. Built here: 28,536,113 and 63,595,745 parameters
  (17 joints); ``torch.utils.flop_counter`` counts 7.65 and 15.69 G multiply-accumulates (the
  summary's convention; the paper's counter differs).
- ImageNet weights: timm's ``hrnet_w32`` / ``hrnet_w48`` (``.ms_in1k``), the HRNet-Image-Classification
  checkpoints the official pose code loads (``hrnet_w32-36af842e.pth``); timm's module layout
  (``timm/models/hrnet.py``) is that of the classification code.

Deviations:

- The ImageNet weights are mapped structurally (stem, ``layer1`` blocks, transition branches, each
  stage module's branch blocks and fuse layers, convolution and BN layers paired in order with their
  shapes checked) instead of loaded by name; the result is the same set of tensors as the official
  ``strict=False`` load, and a mismatch is an error instead of a silently skipped key.
- ``width``, ``stem_width``, ``stage1_channels``, ``stage1_blocks``, ``num_modules`` and ``num_blocks``
  are constructor arguments (the official code reads them from its config; its stem and stage 1
  are fixed at 64). ``hrnet-tiny`` (C = 16, a 16-channel stem and stage 1, one module of 2 units per
  stage, 128x96) is ours, for tests and the demo.
- The input size must be divisible by 32 (the lowest branch has stride 32), so the nearest
  upsampling by ``2^(j - i)`` restores every branch's size exactly; the official code assumes it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from models.base import HeatmapEstimator, init_heatmap_weights
from models.pretrained import create_timm_model
from models.registry import COCO_FLIP_PAIRS, COCO_JOINTS, register_method, register_variant

# The classification HRNets timm has ImageNet weights for (timm/models/hrnet.py default_cfgs).
TIMM_WIDTHS: tuple[int, ...] = (18, 30, 32, 40, 44, 48, 64)
# Stage layout of those networks and of the pose network (pose_hrnet.py / w32_256x192_adam_lr1e-3.yaml).
PAPER_LAYOUT: dict[str, Any] = {"stem_width": 64, "stage1_channels": 64, "stage1_blocks": 4,
                                "num_modules": [1, 4, 3], "num_blocks": 4}


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int, relu: bool) -> nn.Sequential:
    """``conv (no bias) - BN (- ReLU)``; ``padding = kernel // 2``."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
                               nn.BatchNorm2d(out_channels)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BN and an identity skip: ``(B, C, h, w)`` -> ``(B, C, h, w)``."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None if in_channels == channels else _conv_bn(in_channels, channels, 1, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + skip)


class Bottleneck(nn.Module):
    """1x1 - 3x3 - 1x1 (x4 channels) residual unit: ``(B, C_in, h, w)`` -> ``(B, 4 C, h, w)``."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None if in_channels == out_channels else _conv_bn(in_channels, out_channels, 1, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + skip)


def _fuse_path(widths: Sequence[int], source: int, target: int) -> nn.Module:
    """Exchange path from branch ``source`` to branch ``target`` (``widths[b]`` channels, stride ``4 * 2^b``)."""
    if source == target:
        return nn.Identity()
    if source > target:
        return nn.Sequential(nn.Conv2d(widths[source], widths[target], 1, bias=False), nn.BatchNorm2d(widths[target]),
                             nn.Upsample(scale_factor=2 ** (source - target), mode="nearest"))
    steps = target - source
    return nn.Sequential(*(
        _conv_bn(widths[source], widths[target] if k == steps - 1 else widths[source], 3, 2, relu=k < steps - 1)
        for k in range(steps)
    ))


class HighResolutionModule(nn.Module):
    """One exchange block: ``num_blocks`` basic units per branch, then the exchange unit.

    Input and output: a list of ``(B, widths[b], H / 2^b, W / 2^b)`` per branch ``b``; with
    ``multi_scale_output=False`` only the highest-resolution output is computed (a one-item list).
    """

    def __init__(self, widths: Sequence[int], num_blocks: int, multi_scale_output: bool = True) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(width, width) for _ in range(num_blocks))) for width in widths
        )
        outputs = len(widths) if multi_scale_output else 1
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(_fuse_path(widths, j, i) for j in range(len(widths))) for i in range(outputs)
        )
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        x = [branch(features) for branch, features in zip(self.branches, x, strict=True)]
        fused = []
        for paths in self.fuse_layers:
            assert isinstance(paths, nn.ModuleList), "fuse_layers holds one ModuleList of paths per output"
            total = paths[0](x[0])
            for path, features in zip(paths[1:], x[1:], strict=True):
                total = total + path(features)
            fused.append(self.relu(total))
        return fused


def _transition(previous: Sequence[int], current: Sequence[int]) -> nn.ModuleList:
    """Between stages: keep (or re-width with a 3x3 conv) each old branch; a new branch is made by stride-2
    ``conv3x3 - BN - ReLU`` steps from the lowest-resolution old branch."""
    layers: list[nn.Module] = []
    for i, width in enumerate(current):
        if i < len(previous):
            layers.append(nn.Identity() if previous[i] == width else _conv_bn(previous[i], width, 3, 1, relu=True))
        else:
            steps = i + 1 - len(previous)
            layers.append(nn.Sequential(*(
                _conv_bn(previous[-1], width if k == steps - 1 else previous[-1], 3, 2, relu=True)
                for k in range(steps)
            )))
    return nn.ModuleList(layers)


class PoseHighResolutionNet(nn.Module):
    """HRNet-W``width``: image ``(B, 3, H, W)`` -> heatmaps ``(B, K, H / 4, W / 4)``; H, W divisible by 32.

    Module names follow ``pose_hrnet.py`` (``conv1 ... stage4``, ``final_layer``), which are also those
    of the ImageNet checkpoints.
    """

    def __init__(self, num_joints: int, width: int = 32, stem_width: int = 64, stage1_channels: int = 64,
                 stage1_blocks: int = 4, num_modules: Sequence[int] = (1, 4, 3), num_blocks: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem_width, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.conv2 = nn.Conv2d(stem_width, stem_width, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        stage1_out = stage1_channels * Bottleneck.expansion
        self.layer1 = nn.Sequential(*(Bottleneck(stem_width if k == 0 else stage1_out, stage1_channels)
                                      for k in range(stage1_blocks)))
        widths = [width * 2 ** b for b in range(4)]
        previous = [stage1_out]
        self.transition1 = _transition(previous, widths[:2])
        self.stage2 = self._stage(widths[:2], num_modules[0], num_blocks, last_multi_scale=True)
        self.transition2 = _transition(widths[:2], widths[:3])
        self.stage3 = self._stage(widths[:3], num_modules[1], num_blocks, last_multi_scale=True)
        self.transition3 = _transition(widths[:3], widths)
        self.stage4 = self._stage(widths, num_modules[2], num_blocks, last_multi_scale=False)
        self.final_layer = nn.Conv2d(width, num_joints, 1)
        init_heatmap_weights(self)

    @staticmethod
    def _stage(widths: list[int], modules: int, num_blocks: int, last_multi_scale: bool) -> nn.Sequential:
        return nn.Sequential(*(HighResolutionModule(widths, num_blocks, last_multi_scale or k < modules - 1)
                               for k in range(modules)))

    @staticmethod
    def _enter(transition: nn.ModuleList, branches: list[torch.Tensor]) -> list[torch.Tensor]:
        """Apply a transition: old branches keep their index, new ones start from the lowest resolution."""
        return [layer(branches[i] if i < len(branches) else branches[-1]) for i, layer in enumerate(transition)]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(image)))
        x = self.relu(self.bn2(self.conv2(x)))
        branches = [self.layer1(x)]
        for transition, stage in ((self.transition1, self.stage2), (self.transition2, self.stage3),
                                  (self.transition3, self.stage4)):
            branches = stage(self._enter(transition, branches))
        return self.final_layer(branches[0])


# ----------------------------------------------------------------------------- ImageNet weights

_LEAVES = (nn.Conv2d, nn.BatchNorm2d)


def _unit_pairs(net: PoseHighResolutionNet, source: nn.Module) -> list[tuple[str, nn.Module, nn.Module]]:
    """Corresponding units of the pose network and a timm ``HighResolutionNet``, walked by structure.

    Units: the stem layers, each ``layer1`` block, each non-identity transition branch, and for every
    stage module each branch block and each fuse path the pose network has. Raises ValueError where
    the two structures disagree.
    """

    def zipped(where: str, allow_extra: bool = False) -> list[tuple[nn.Module, nn.Module]]:
        """The entries of the container at module path ``where`` in both networks, paired in order
        (timm's may have more with ``allow_extra``)."""
        ours, others = list(net.get_submodule(where).children()), list(source.get_submodule(where).children())
        if len(ours) > len(others) or (len(ours) != len(others) and not allow_extra):
            raise ValueError(f"ImageNet weights: {where} has {len(ours)} entries here and {len(others)} in timm")
        return list(zip(ours, others[: len(ours)], strict=True))

    pairs = [(name, net.get_submodule(name), source.get_submodule(name)) for name in ("conv1", "bn1", "conv2", "bn2")]
    pairs += [(f"layer1.{k}", a, b) for k, (a, b) in enumerate(zipped("layer1"))]
    for t in (1, 2, 3):
        for i, (a, b) in enumerate(zipped(f"transition{t}")):
            if isinstance(a, nn.Identity) != isinstance(b, nn.Identity):
                raise ValueError(f"ImageNet weights: transition{t}.{i} is an identity on one side only")
            if not isinstance(a, nn.Identity):
                pairs.append((f"transition{t}.{i}", a, b))
    for s in (2, 3, 4):
        for m, _ in enumerate(zipped(f"stage{s}")):
            where = f"stage{s}.{m}"
            for branch, _ in enumerate(zipped(f"{where}.branches")):
                pairs += [(f"{where}.branches.{branch}.{k}", x, y)
                          for k, (x, y) in enumerate(zipped(f"{where}.branches.{branch}"))]
            # The classifier's last module fuses into every branch; the pose network only into the first.
            for i, _ in enumerate(zipped(f"{where}.fuse_layers", allow_extra=True)):
                pairs += [(f"{where}.fuse_layers.{i}.{j}", x, y)
                          for j, (x, y) in enumerate(zipped(f"{where}.fuse_layers.{i}"))
                          if not isinstance(x, nn.Identity)]
    return pairs


def _leaves(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, _LEAVES)]


@torch.no_grad()
def copy_timm_weights(net: PoseHighResolutionNet, source: nn.Module) -> int:
    """Copy a timm ``HighResolutionNet``'s backbone weights onto ``net``; returns the number of tensors copied.

    Within each unit of ``_unit_pairs`` the convolution and BN layers are paired in order; their
    types and every parameter and buffer shape must agree (ValueError naming the unit otherwise).
    Nothing is copied unless the whole structure matches. The classification head (``incre_modules``,
    ``downsamp_modules``, ``final_layer``, ``classifier``) and ``final_layer`` here are not touched.
    """
    copies: list[tuple[torch.Tensor, torch.Tensor]] = []
    for name, mine, theirs in _unit_pairs(net, source):
        ours, others = _leaves(mine), _leaves(theirs)
        if len(ours) != len(others):
            raise ValueError(f"ImageNet weights: {name} has {len(ours)} conv/BN layers here and {len(others)} in timm")
        for k, (a, b) in enumerate(zip(ours, others, strict=True)):
            tensors = dict(itertools.chain(a.named_parameters(recurse=False), a.named_buffers(recurse=False)))
            sources = dict(itertools.chain(b.named_parameters(recurse=False), b.named_buffers(recurse=False)))
            if type(a) is not type(b) or tensors.keys() != sources.keys() or any(
                    tensors[key].shape != sources[key].shape for key in tensors):
                raise ValueError(f"ImageNet weights: layer {k} of {name} differs: {a} here, {b} in timm")
            copies += [(tensors[key], sources[key]) for key in tensors]
    for target, value in copies:
        target.copy_(value)
    return len(copies)


def load_imagenet_weights(net: PoseHighResolutionNet, width: int) -> int:
    """Copy timm's ImageNet ``hrnet_w{width}`` (cached, else downloaded) onto ``net``'s backbone; returns the
    tensor count. Neither cached nor reachable -> ``PretrainedWeightsUnavailable``."""
    source = create_timm_model(f"hrnet_w{width}", pretrained=True, owner=f"hrnet-w{width}")
    return copy_timm_weights(net, source)


PRETRAINED: tuple[str, ...] = ("imagenet", "none")


@register_method("hrnet")
class HRNet(HeatmapEstimator):
    """HRNet-W``width`` top-down pose estimator (heatmaps from the highest-resolution branch).

    ``pretrained``: ``"imagenet"`` (or True) copies timm's ImageNet ``hrnet_w{width}`` backbone onto the
    network (downloads; needs the paper layout and a width timm has weights for), ``"none"`` (or
    False) keeps the official N(0, 0.001) initialisation. ``num_modules`` are the exchange blocks of
    stages 2, 3 and 4; ``num_blocks`` the residual units per branch in each of them.
    """

    def __init__(
        self,
        *,
        width: int = 32,
        stem_width: int = 64,
        stage1_channels: int = 64,
        stage1_blocks: int = 4,
        num_modules: Sequence[int] = (1, 4, 3),
        num_blocks: int = 4,
        pretrained: str | bool = "imagenet",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        height, width_px = self.input_size
        if height % 32 or width_px % 32:
            raise ValueError(f"hrnet input_size {[height, width_px]} must be divisible by 32 (lowest branch stride)")
        if len(num_modules) != 3 or min(num_modules) < 1 or min(width, stem_width, stage1_channels,
                                                                   stage1_blocks, num_blocks) < 1:
            raise ValueError(f"hrnet needs 3 positive num_modules and positive sizes, got num_modules="
                             f"{list(num_modules)}, width={width}, stem_width={stem_width}, stage1_channels="
                             f"{stage1_channels}, stage1_blocks={stage1_blocks}, num_blocks={num_blocks}")
        if isinstance(pretrained, bool):
            mode = "imagenet" if pretrained else "none"
        else:
            mode = str(pretrained).lower()
        if mode not in PRETRAINED:
            raise ValueError(f"unknown pretrained {pretrained!r}; valid: {', '.join(PRETRAINED)} (or true/false)")
        self.net = PoseHighResolutionNet(self.num_joints, width, stem_width, stage1_channels, stage1_blocks,
                                         num_modules, num_blocks)
        if mode == "imagenet":
            layout = {"stem_width": stem_width, "stage1_channels": stage1_channels, "stage1_blocks": stage1_blocks,
                      "num_modules": list(num_modules), "num_blocks": num_blocks}
            if layout != PAPER_LAYOUT or width not in TIMM_WIDTHS:
                raise ValueError(f"pretrained='imagenet' needs the paper layout {PAPER_LAYOUT} and a width in "
                                 f"{list(TIMM_WIDTHS)}; got {layout}, width {width} (use pretrained='none')")
            count = load_imagenet_weights(self.net, width)
            rank_zero_info(f"hrnet: copied {count} ImageNet tensors from timm hrnet_w{width} onto the backbone")


_COCO: dict[str, Any] = {"num_joints": COCO_JOINTS, "flip_pairs": COCO_FLIP_PAIRS}
register_variant("hrnet-w32", "hrnet", input_size=(256, 192), paper_gflops=7.1, paper_params=28.5,
                 width=32, **_COCO)
register_variant("hrnet-w48", "hrnet", input_size=(256, 192), paper_gflops=14.6, paper_params=63.6,
                 width=48, **_COCO)
register_variant("hrnet-tiny", "hrnet", input_size=(128, 96), tiny=True, width=16, stem_width=16,
                 stage1_channels=16, stage1_blocks=1, num_modules=[1, 1, 1], num_blocks=2, pretrained="none",
                 **_COCO)
