"""Convolutional Pose Machines (Wei, Ramakrishna, Kanade and Sheikh, CVPR'16).

A sequence of T convolutional stages that each output K + 1 belief maps (the K joints and a
background map) at stride 8; every stage >= 2 sees shared image features, the previous stage's
beliefs and a centre map, and every stage is supervised (intermediate supervision).

Sources:

- Paper Sec. 3.1-3.3 and Fig. 2: stage 1 predicts beliefs from the image alone; stage t >= 2 takes
  image features x' (a shared image branch) and the beliefs b_{t-1}; large receptive fields
  (11x11 convolutions on the belief maps at stride 8); T = 6 for MPII; 368x368 input; intermediate
  supervision, the loss summed over stages (Sec. 3.3, Eq. 4-5) with ideal belief maps "Gaussian
  peaks" at the joints (Sec. 3.3).
- Official code, shihenw/convolutional-pose-machines-release ``training/genProto.py`` (the
  architecture that generates ``model/_trained_MPI/pose_deploy_centerMap.prototxt`` of the MPII
  6-stage model, ``testing/config.m`` models 1 and 2):
  stage 1 ``C9(128) P - C9(128) P - C9(128) P - C5(32) - C9(512) - D - C1(512) - D - C1(K+1)``
  (ReLU after every convolution but the last, dropout 0.5, max pooling 3x3 stride 2 with Caffe's
  ceil rounding); the image branch of stage 2 ``C9(128) P`` x3 is shared by every later stage (the
  ``$`` share point), each stage t >= 2 has its own ``C5(32)`` on it, concatenates
  ``[C5 output, b_{t-1}, pooled centre map]`` (the ``@`` concat) and applies
  ``C11(128) - C11(128) - C11(128) - C1(128) - C1(K+1)``. Weights ~ N(0, 0.01), biases 0 (the
  ``gaussian``/``constant`` fillers); stage-1 convolutions learn at 5x the base LR; biases at twice
  their weights' LR without weight decay (``param {lr_mult, decay_mult}``). Solver: SGD momentum
  0.9, weight decay 5e-4, base LR 8e-5, ``step`` x0.333 every 136,106 iterations, 600k iterations,
  batch 16 (``getSolverPrototxt``, ``__main__``).
  The centre map is an extra input plane: ``pool_center_lower`` = average pooling 9x9 stride 8 of
  a Gaussian with sigma 21 px (``config.m`` ``sigma = 21``) at the person centre; at test time it
  sits at the centre of the 368 box (``testing/src/applyModel.m`` ``produceCenterLabelMap``).
- Belief-map targets: the CPM data layer of the authors' Caffe fork (``cpm_data_transformer.cpp``
  ``generateLabelMap`` / ``putGaussianMaps``, as carried into CMU-Perceptual-Computing-Lab/caffe_train):
  heatmap pixel g sits at crop pixel ``stride / 2 - 0.5 + g * stride`` (the ``HeatmapCodec`` grid),
  an unrounded Gaussian per labelled joint with sigma 7 crop px (0.875 heatmap px at stride 8),
  nothing for unlabelled joints, and the background map ``max(1 - max_j map_j, 0)``. The loss is
  Caffe's ``EuclideanLoss`` per stage, ``sum((pred - target)^2) / (2 B)`` over all K + 1 maps with no
  per-joint weights, summed over the stages.
- Parameter count: 31,219,866 with 14 joints + background (the released MPII models); 31,377,062
  with MPII's 16 joints (``cpm``, +0.5%). The other prototxt of the release,
  ``model/_trained_MPI/pose_deploy_resize.prototxt``, is a later VGG-19-based model (conv1_1 ...
  conv4_7_CPM, 7x7 stage convolutions, 3 stages in ``testing/python/config``) with 29.85M
  parameters at 6 stages; it is not the paper's architecture.
- Cross-check: mmpose ``mmpose/models/backbones/cpm.py`` has the same kernel sizes and widths but adds
  BatchNorm, pads its pooling (padding 1) and feeds no centre map.

Deviations:

- The centre Gaussian sits at the crop centre ``((W - 1) / 2, (H - 1) / 2)`` (the person centre of
  a top-down crop) in the project's pixel-centre convention; the Caffe data layer puts it at pixel
  ``W / 2`` and the MATLAB test code at 0-based ``W / 2 - 1``. The centred one is mirror-symmetric,
  so the flipped pass of the flip test sees the same centre map. The map is computed on the fly
  from the input size, not fed as a fourth image channel.
- The official data layer supervises stage 1 with the belief maps of every person in the crop and
  stages >= 2 with the centred person only; the DataModule yields the centred person only, so
  every stage gets the same targets.
- Input normalisation: the recipes use the data layer's ``x / 256 - 0.5`` (``data.normalisation:
  centred``) on RGB where the official code feeds BGR; the crop is the DataModule's (MPII box = 1.25 x
  the annotated scale), not the official ``target_dist`` 1.171 scale normalisation; the recipe draws
  rotation and scale uniformly as the data layer does, but the scale factor resizes the box, not the
  image (docs/fidelity.md).
- Targets come from ``HeatmapCodec``'s unbiased encoding: the same unrounded Gaussian on the same
  grid, but values below 1% are kept (the data layer zeroes them) and a joint whose Gaussian lies
  wholly outside the map gets an empty map, as in the data layer.
- Decoding and flip test are the project's (``decoder``, ``flip_test``; the recipes decode with DARK);
  the official evaluation resizes the final stage's maps x8 to the image, averages them over a
  multi-scale search, takes the argmax there and never flips.
  The background map is never decoded and never swapped when flipping back.
- ``cpm-tiny`` (3 stages, widths 16 / 64 / 16, 5x5 image and 7x7 stage kernels, 128x128) is ours,
  for tests and the demo. ``image_kernel`` and ``stage_kernel`` exist for it; the paper's are 9 and 11.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.base import HeatmapEstimator, Outputs
from models.registry import MPII_FLIP_PAIRS, MPII_JOINTS, register_method, register_variant
from pixelgrid import DEFAULT_CONVENTION

# The Caffe data layer skips Gaussian values below 1% (``exponent > ln(100)``).
_GAUSSIAN_CUTOFF = 4.6052


def centre_map(height: int, width: int, sigma: float, *, device: torch.device | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(1, 1, H, W)`` Gaussian of ``sigma`` px at the crop centre ((W - 1) / 2, (H - 1) / 2).

    ``exp(-d^2 / (2 sigma^2))``, zero where that is below 1% (the CPM data layer's cut-off).
    """
    ys = torch.arange(height, device=device, dtype=dtype) - (height - 1) / 2
    xs = torch.arange(width, device=device, dtype=dtype) - (width - 1) / 2
    exponent = (ys[:, None] ** 2 + xs[None, :] ** 2) / (2.0 * sigma**2)
    values = torch.where(exponent > _GAUSSIAN_CUTOFF, 0.0, torch.exp(-exponent))
    return values[None, None]


def pool_centre_map(centre: torch.Tensor) -> torch.Tensor:
    """Caffe ``pool_center_lower``: average pooling 9x9 stride 8 with ceil rounding, ``(B, 1, H, W) ->
    (B, 1, H / 8, W / 8)`` for H, W divisible by 8; border windows average their in-image part."""
    return F.avg_pool2d(centre, kernel_size=9, stride=8, ceil_mode=True)


def _conv(in_channels: int, out_channels: int, kernel: int, relu: bool = True) -> list[nn.Module]:
    """``genProto.py`` ``C``: a same-padded convolution (``pad = floor(k / 2)``), ReLU unless it feeds a loss."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


def _pool() -> nn.Module:
    """``genProto.py`` ``P``: Caffe max pooling 3x3 stride 2, no padding, ceil rounding (H -> H / 2 for even H)."""
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


def _image_branch(width: int, kernel: int) -> list[nn.Module]:
    """``C9 P`` three times (``kernel`` 9): image ``(B, 3, H, W)`` -> ``(B, width, H / 8, W / 8)``."""
    return [*_conv(3, width, kernel), _pool(),
            *_conv(width, width, kernel), _pool(),
            *_conv(width, width, kernel), _pool()]


class CPMNet(nn.Module):
    """The CPM network: image ``(B, 3, H, W)`` -> ``stages`` belief maps ``(B, K + 1, H / 8, W / 8)``.

    ``width`` is the image-branch and stage width (128 in the paper), ``head_width`` stage 1's
    1x1 width (512), ``branch_width`` the per-stage feature convolution's (32); ``dropout`` follows
    stage 1's two wide layers (0.5); ``centre_sigma`` is the centre Gaussian's in input px (21);
    ``image_kernel`` / ``stage_kernel`` are the image branches' and stages' large kernels (9 / 11).
    """

    def __init__(self, num_joints: int, stages: int = 6, width: int = 128, head_width: int = 512,
                 branch_width: int = 32, dropout: float = 0.5, centre_sigma: float = 21.0,
                 image_kernel: int = 9, stage_kernel: int = 11, caffe_init: bool = True) -> None:
        super().__init__()
        maps = num_joints + 1
        self.centre_sigma = float(centre_sigma)
        self.stage1 = nn.Sequential(
            *_image_branch(width, image_kernel), *_conv(width, branch_width, 5),
            *_conv(branch_width, head_width, image_kernel),
            nn.Dropout(dropout), *_conv(head_width, head_width, 1), nn.Dropout(dropout),
            *_conv(head_width, maps, 1, relu=False),
        )
        self.shared = nn.Sequential(*_image_branch(width, image_kernel)) if stages > 1 else None
        self.features = nn.ModuleList(nn.Sequential(*_conv(width, branch_width, 5)) for _ in range(stages - 1))
        self.refine = nn.ModuleList(
            nn.Sequential(
                *_conv(branch_width + maps + 1, width, stage_kernel), *_conv(width, width, stage_kernel),
                *_conv(width, width, stage_kernel),
                *_conv(width, width, 1), *_conv(width, maps, 1, relu=False),
            )
            for _ in range(stages - 1)
        )
        if caffe_init:
            self._caffe_init()

    def _caffe_init(self) -> None:
        # genProto.py fillers: weight gaussian std 0.01, bias constant 0.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        beliefs = [self.stage1(image)]
        if self.shared is None:
            return beliefs
        batch, _, height, width = image.shape
        centre = pool_centre_map(centre_map(height, width, self.centre_sigma, device=image.device, dtype=image.dtype))
        centre = centre.expand(batch, -1, -1, -1)
        shared = self.shared(image)
        for features, refine in zip(self.features, self.refine, strict=True):
            beliefs.append(refine(torch.cat([features(shared), beliefs[-1], centre], dim=1)))
        return beliefs


def _final_stage(outputs: Outputs) -> torch.Tensor:
    return outputs[-1] if isinstance(outputs, (list, tuple)) else outputs


def belief_targets(joint_maps: torch.Tensor) -> torch.Tensor:
    """Joint maps ``(B, K, h, w)`` -> the K + 1 CPM targets ``(B, K + 1, h, w)``: background ``max(1 - max_j, 0)``."""
    background = (1.0 - joint_maps.amax(dim=1, keepdim=True)).clamp_min(0.0)
    return torch.cat([joint_maps, background], dim=1)


def euclidean_loss(beliefs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Caffe ``EuclideanLoss``: ``sum((beliefs - targets)^2) / (2 B)`` over ``(B, C, h, w)``."""
    return (beliefs - targets).pow(2).sum() / (2.0 * beliefs.shape[0])


@register_method("cpm")
class ConvolutionalPoseMachine(HeatmapEstimator):
    """CPM: ``stages`` stages of K + 1 belief maps at stride 8, each supervised with the Euclidean loss.

    ``sigma`` is the target Gaussian's in heatmap px (7 crop px / 8), encoded unrounded as the
    official data layer does. ``stage1_lr_mult`` and ``bias_lr_mult`` are the prototxt's LR
    multipliers (biases also get no weight decay); ``caffe_init`` selects the N(0, 0.01) fillers.
    """

    net: CPMNet

    output_stride = 8
    # Its centre map and belief-map grid are written for the aligned grid (module docstring).
    conventions = (DEFAULT_CONVENTION,)
    # Belief maps per stage beyond the K joints: the background map (always the last channel).
    extra_maps = 1

    def __init__(
        self,
        *,
        stages: int = 6,
        width: int = 128,
        head_width: int = 512,
        branch_width: int = 32,
        dropout: float = 0.5,
        centre_sigma: float = 21.0,
        image_kernel: int = 9,
        stage_kernel: int = 11,
        caffe_init: bool = True,
        stage1_lr_mult: float = 5.0,
        bias_lr_mult: float = 2.0,
        sigma: float = 0.875,
        unbiased_encoding: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(sigma=sigma, unbiased_encoding=unbiased_encoding, **kwargs)
        if stages < 1 or min(width, head_width, branch_width) < 1:
            raise ValueError(f"stages and widths must be >= 1, got stages={stages}, width={width}, "
                             f"head_width={head_width}, branch_width={branch_width}")
        if not 0.0 <= dropout < 1.0 or centre_sigma <= 0 or stage1_lr_mult <= 0 or bias_lr_mult <= 0:
            raise ValueError(f"need 0 <= dropout < 1 and positive centre_sigma and LR multipliers, got "
                             f"dropout={dropout}, centre_sigma={centre_sigma}, stage1_lr_mult={stage1_lr_mult}, "
                             f"bias_lr_mult={bias_lr_mult}")
        if image_kernel < 1 or stage_kernel < 1 or image_kernel % 2 == 0 or stage_kernel % 2 == 0:
            raise ValueError(f"image_kernel and stage_kernel must be positive odd sizes, "
                             f"got {image_kernel}, {stage_kernel}")
        self.net = CPMNet(self.num_joints, stages, width, head_width, branch_width, dropout, centre_sigma,
                          image_kernel, stage_kernel, caffe_init)

    def compute_loss(self, outputs: Outputs, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Sum over stages of the Euclidean loss against all K + 1 target maps (no per-joint weights)."""
        stages = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        joint_maps, _ = self.codec.encode(batch["keypoints"], batch["visible"])
        targets = belief_targets(joint_maps).to(stages[0].dtype)
        return sum((euclidean_loss(stage, targets) for stage in stages[1:]), euclidean_loss(stages[0], targets))

    def final_heatmaps(self, outputs: Outputs) -> torch.Tensor:
        """Final-stage joint maps ``(B, K, h, w)``, the background map dropped."""
        return _final_stage(outputs)[:, : self.num_joints]

    def build_optimizer(self) -> torch.optim.Optimizer:
        """The base optimiser over four parameter groups with the prototxt's LR and decay multipliers."""
        hp = self.hparams
        groups = []
        for params, lr_mult, decay in self._parameter_groups():
            if params:
                groups.append({"params": params, "lr": hp["lr"] * lr_mult, "weight_decay": hp["weight_decay"] * decay})
        if hp["optimizer"] == "adam":
            return torch.optim.Adam(groups, lr=hp["lr"])
        if hp["optimizer"] == "rmsprop":
            return torch.optim.RMSprop(groups, lr=hp["lr"], alpha=hp["alpha"], eps=hp["eps"])
        return torch.optim.SGD(groups, lr=hp["lr"], momentum=hp["momentum"])

    def _parameter_groups(self) -> list[tuple[list[nn.Parameter], float, float]]:
        """(parameters, LR multiplier, weight-decay multiplier): stage-1 and other weights, then biases."""
        hp = self.hparams
        stage1 = {id(p) for p in self.net.stage1.parameters()}
        # Keyed by (in stage 1, is a bias).
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {(a, b): [] for a in (True, False) for b in (True, False)}
        for name, param in self.named_parameters():
            groups[(id(param) in stage1, name.endswith(".bias"))].append(param)
        return [
            (groups[(True, False)], hp["stage1_lr_mult"], 1.0),
            (groups[(False, False)], 1.0, 1.0),
            (groups[(True, True)], hp["stage1_lr_mult"] * hp["bias_lr_mult"], 0.0),
            (groups[(False, True)], hp["bias_lr_mult"], 0.0),
        ]


# The paper's optimiser (SGD, LR 8e-5, momentum 0.9, weight decay 5e-4) is a run setting:
# benchmark/configs/method/cpm.yaml.
_MPII: dict[str, Any] = {"num_joints": MPII_JOINTS, "flip_pairs": MPII_FLIP_PAIRS}
# The paper gives no parameter or FLOP figure; 31.2M is the released 6-stage MPII model's size.
register_variant("cpm", "cpm", input_size=(368, 368), paper_params=31.2, stages=6, **_MPII)
register_variant("cpm-tiny", "cpm", input_size=(128, 128), tiny=True, stages=3, width=16, head_width=64,
                 branch_width=16, image_kernel=5, stage_kernel=7, **_MPII)
