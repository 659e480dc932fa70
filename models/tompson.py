"""Tompson et al.: a multi-resolution coarse heat-map ConvNet, a learned spatial model and a fine
"pose refinement" model that crops the shared features around each coarse estimate.

Papers:

- J. Tompson, R. Goroshin, A. Jain, Y. LeCun, C. Bregler, "Efficient Object Localization Using
  Convolutional Networks", CVPR'15 (arXiv 1411.4280). Followed here:
  - Sec. 3 (coarse heat-map regression model, its architecture figure): the input goes through
    convolutional towers of one architecture at full and at half resolution (a multi-resolution
    bank); each tower is ``5x5 conv 128 - ReLU - 2x2 max pool - 5x5 conv 128 - ReLU - 2x2 max pool
    - 5x5 conv 128 - ReLU - 9x9 conv 512 - ReLU``; the half-resolution output is upsampled x2 and
    combined with the full-resolution one; SpatialDropout, then 1x1 convolutions (256, 256, K)
    give K heat-maps at 1/4 of the input resolution.
  - Sec. 3 (its SpatialDropout subsection): dropout of whole feature maps, ``nn.Dropout2d``, placed before the
    1x1 convolutions.
  - Sec. 3 (loss): MSE between the predicted heat-maps and Gaussian targets of constant sigma
    (about 1.5 output pixels) centred on the ground-truth joints; unannotated joints add nothing.
  - Sec. 4 (fine heat-map model, the cascade figure and the crop-module figure): for each joint the
    coarse location (the heat-map maximum) centres a window; the crop module cuts that window out
    of the coarse model's convolutional features at every resolution bank, brings the crops to one
    size and feeds them to a small ConvNet whose weights are shared by all joints (the paper's
    Siamese network, one instance per joint); its output is a fine heat-map over the window whose
    maximum gives the offset added to the coarse location; fine and coarse are trained jointly
    (sum of the coarse and fine MSE terms) and the fine model reuses the coarse features, so its
    loss also trains them (back-propagation through the crop module).
- J. Tompson, A. Jain, Y. LeCun, C. Bregler, "Joint Training of a Convolutional Network and a
  Graphical Model for Human Pose Estimation", NIPS'14, Sec. 3.2 (the spatial model): every joint's
  heat-map is re-weighted by learned pairwise priors, ``e_a = exp(sum_v log(SoftPlus(w_a|v) *
  ReLU(e_v) + SoftPlus(b_v->a)))``, the convolutions ``w_a|v`` (large kernels) acting on the
  heat-maps; SoftPlus keeps the priors and biases positive. Trained jointly with the part detector
  on the same MSE objective.

Official code: none is public (the authors' Torch7 code was never released; the MPII evaluation
kit ships only their predictions). Everything here is written from the papers.

How gradients flow: the crop centres are the coarse estimates (``argmax``: not differentiable) and
are detached; ``torchvision.ops.roi_align`` is differentiable with respect to the feature maps, so
the fine loss back-propagates through the crops into both convolutional towers (``fine_backprop
=True``; ``False`` detaches the features and trains the fine model on frozen-in-effect features).
The spatial model's output is a further supervised stage; its gradients reach the coarse head.

Deviations (all ours unless stated):

- No local contrast normalisation of the input (the paper normalises each bank's input with LCN);
  the images come ImageNet-normalised from the data module. The half-resolution input is a 2x2
  average pool of the image.
- "Same" padding everywhere, so the heat-map is exactly ``(H/4, W/4)`` (PoseBench's heat-map
  contract); the paper's sliding-window model used valid convolutions.
- The two banks are combined by addition after nearest-neighbour x2 upsampling of the half-resolution
  bank (the paper's figure shows the upsampled low-resolution features merged with the full
  resolution ones; the exact merge was not re-checked).
- Input size 256x256 for MPII (PoseBench's MPII crop; the paper's FLIC input is 320x240) and MPII's
  16 joints.
- The fine model crops the pooled outputs of the first two convolution stages of each bank (strides
  2 and 4 of the full bank, 4 and 8 of the half bank) with ``roi_align`` (bilinear, ``aligned=True``)
  straight to the fine grid, and concatenates them; a shared trunk (1x1 reduction, two 3x3
  convolutions, ReLU) then a per-joint 1x1 filter gives each joint its heat-map (the paper's
  per-resolution convolution stacks and layer sizes were not re-checked; a concatenation followed
  by a convolution equals per-resolution convolutions summed). Window 72 input px on a 36x36 grid
  (stride 2) in the paper variant, as we read the crop-module figure (not re-checked).
- Training crops: the paper trains the coarse model first and then the cascade at its estimates.
  We train both from the start; where the coarse estimate is farther than a quarter window from the
  ground truth (per axis), the training window is centred at the ground truth displaced uniformly by
  up to a quarter window (DeepPose-style simulated displacement), so the fine model sees its target
  from the first step. Fine targets are Gaussians of ``fine_sigma`` grid px at the sub-pixel
  ground truth; joints outside their window get weight 0. Fine loss weight ``fine_weight`` (1.0).
- Spatial model: all K x K joint pairs (the paper chose a subset of pairs per data set), kernels of
  ``spatial_kernel`` heat-map px (63 at 64x64: offsets up to half the map), computed by direct
  grouped convolution instead of the paper's FFT. Initialised to the identity (self prior = delta,
  other terms = 1), the sum of logs is clamped at 30 before ``exp`` for numerical safety, and both
  the part-detector and the spatial-model heat-maps are supervised (the paper pre-trains the part
  detector, then the spatial model, then fine-tunes jointly). ``spatial_model=False`` drops it.
- Heat-map coordinates follow PoseBench's convention (pixel centres at integers; crop px =
  (heat-map px + 0.5) * 4 - 0.5); decoding uses the configured decoder (the paper: argmax); the
  fine offset is clamped to the window. Flip test (not in the paper) averages the coarse heat-maps
  and, at the averaged coarse estimates, the fine heat-maps of both passes.
- ``batch_norm`` (off in the paper variant, on in ``tompson-tiny``) adds BatchNorm after every
  tower and fine convolution, so the tiny preset learns in seconds on a CPU; ``tompson-tiny`` is
  ours (towers of 8, 16, 16, 32 channels with 5, 5, 5, 7 kernels, 128x128 input, a 24 px window on a
  12x12 grid, 7x7 spatial priors).
- The paper variant (13.9M parameters, about 51 GMACs at 256x256 by ``torch.utils.flop_counter``,
  the fine pass included) has no published parameter or FLOP figure to compare with. SpatialDropout
  probability 0.5 and the 1.0 fine-loss weight are ours (the paper's values were not re-checked).
- The ``forward`` pass runs the whole cascade at the coarse heat-map maxima (the paper's inference);
  training re-runs the fine model at the training windows, and prediction at the decoded (and
  flip-averaged) coarse estimates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from models.base import HeatmapEstimator, Outputs, Protocol, joints_mse_loss
from models.codecs import blur_kernel_for_sigma, decode_heatmaps, flip_heatmaps_back
from models.registry import MPII_FLIP_PAIRS, MPII_JOINTS, register_method, register_variant
from pixelgrid import DEFAULT_CONVENTION

# Clamp of the spatial model's log-sum before exp (exp(30) ~ 1e13 is far above any heat-map value).
_LOG_CLAMP = 30.0
# SoftPlus(x) = 1 at x = log(e - 1).
_SOFTPLUS_INVERSE_OF_ONE = math.log(math.expm1(1.0))


def _conv(in_channels: int, out_channels: int, kernel: int, batch_norm: bool) -> list[nn.Module]:
    """``kernel x kernel`` convolution with "same" padding (+ BN) + ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return layers


class Tower(nn.Module):
    """One resolution bank: ``(B, 3, h, w)`` -> output ``(B, C4, h/4, w/4)`` and the pooled stage
    outputs ``[(B, C1, h/2, w/2), (B, C2, h/4, w/4)]`` that the fine model crops."""

    def __init__(self, channels: Sequence[int], kernels: Sequence[int], batch_norm: bool) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        k1, k2, k3, k4 = kernels
        self.stage1 = nn.Sequential(*_conv(3, c1, k1, batch_norm), nn.MaxPool2d(2))
        self.stage2 = nn.Sequential(*_conv(c1, c2, k2, batch_norm), nn.MaxPool2d(2))
        self.stage3 = nn.Sequential(*_conv(c2, c3, k3, batch_norm), *_conv(c3, c4, k4, batch_norm))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        first = self.stage1(image)
        second = self.stage2(first)
        return self.stage3(second), [first, second]


class SpatialModel(nn.Module):
    """NIPS'14 spatial model: heat-maps ``(B, K, h, w)`` -> heat-maps ``(B, K, h, w)``.

    ``out_a = exp(sum_v log(SoftPlus(w_a|v) * ReLU(e_v) + SoftPlus(b_v->a)))`` over all joints v; the
    K x K priors ``w_a|v`` are ``kernel x kernel`` convolutions (one grouped convolution, group = v).
    """

    def __init__(self, num_joints: int, kernel: int) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"spatial_kernel must be a positive odd number, got {kernel}")
        self.num_joints = num_joints
        # Identity at initialisation: the self prior w_a|a is a unit delta with a ~0 bias; every
        # other term is ~1 (a tiny prior plus a bias of SoftPlus(b) = 1), so out_a ~ ReLU(e_a).
        weight = torch.full((num_joints * num_joints, 1, kernel, kernel), -10.0)
        bias = torch.full((num_joints, num_joints), _SOFTPLUS_INVERSE_OF_ONE)
        eye = torch.arange(num_joints)
        weight[eye * num_joints + eye, 0, kernel // 2, kernel // 2] = _SOFTPLUS_INVERSE_OF_ONE
        bias[eye, eye] = -10.0
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)

    def forward(self, heatmaps: torch.Tensor) -> torch.Tensor:
        k = self.num_joints
        batch, _, height, width = heatmaps.shape
        # Output channel v * K + a holds the prior of joint a given joint v.
        terms = F.conv2d(F.relu(heatmaps), F.softplus(self.weight), padding=self.weight.shape[-1] // 2, groups=k)
        terms = terms.view(batch, k, k, height, width) + F.softplus(self.bias)[None, :, :, None, None]
        return torch.exp(torch.log(terms).sum(dim=1).clamp(max=_LOG_CLAMP))


class FineModel(nn.Module):
    """Crop-and-refine: shared features + coarse centres ``(B, K, 2)`` -> fine heat-maps ``(B, K, G, G)``.

    ``strides`` are those of the cropped feature maps in input px; the window is ``window`` input px
    square, sampled on a ``grid x grid`` lattice (cell centres at ``c - window/2 + (i + 0.5) window/grid``).
    """

    def __init__(self, in_channels: int, strides: Sequence[int], num_joints: int, window: float, grid: int,
                 channels: int, batch_norm: bool) -> None:
        super().__init__()
        self.strides = tuple(int(s) for s in strides)
        self.window = float(window)
        self.grid = int(grid)
        self.trunk = nn.Sequential(*_conv(in_channels, channels, 1, batch_norm),
                                   *_conv(channels, channels, 3, batch_norm),
                                   *_conv(channels, channels, 3, batch_norm))
        # One 1x1 filter per joint on the shared (Siamese) trunk.
        self.head_weight = nn.Parameter(torch.randn(num_joints, channels) * 0.01)
        self.head_bias = nn.Parameter(torch.zeros(num_joints))

    def boxes(self, centres: torch.Tensor) -> torch.Tensor:
        """``(B*K, 5)`` roi_align boxes (batch index, x1, y1, x2, y2) in edge-based px (pixel i spans [i, i+1])."""
        batch, joints, _ = centres.shape
        index = torch.arange(batch, device=centres.device, dtype=centres.dtype).repeat_interleave(joints)
        flat = centres.reshape(-1, 2) + 0.5
        half = self.window / 2
        return torch.cat([index[:, None], flat - half, flat + half], dim=1)

    def crop(self, features: Sequence[torch.Tensor], centres: torch.Tensor) -> torch.Tensor:
        """The crop module: every feature map sampled (bilinearly, at the cell centres) on the window
        lattice of every joint, concatenated: ``(B*K, sum C, G, G)``; differentiable in the features."""
        boxes = self.boxes(centres.detach().to(features[0].dtype))
        # One sample per cell: the lattice is at least as fine as every cropped map (cell <= stride).
        return torch.cat([roi_align(f, boxes, output_size=self.grid, spatial_scale=1.0 / s, sampling_ratio=1,
                                    aligned=True) for f, s in zip(features, self.strides, strict=True)], dim=1)

    def forward(self, features: Sequence[torch.Tensor], centres: torch.Tensor) -> torch.Tensor:
        batch, joints, _ = centres.shape
        trunk = self.trunk(self.crop(features, centres))
        trunk = trunk.view(batch, joints, -1, self.grid, self.grid)
        return torch.einsum("bkchw,kc->bkhw", trunk, self.head_weight) + self.head_bias[None, :, None, None]

    def to_crop(self, grid_xy: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """Fine-grid coordinates ``(B, K, 2)`` (clamped to the window) -> crop px ``(B, K, 2)``."""
        cell = self.window / self.grid
        return centres - self.window / 2 + (grid_xy.clamp(0, self.grid - 1) + 0.5) * cell

    def to_grid(self, points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """Crop px ``(B, K, 2)`` -> fine-grid coordinates ``(B, K, 2)`` of the windows at ``centres``."""
        cell = self.window / self.grid
        return (points - centres + self.window / 2) / cell - 0.5


class TompsonOutputs(list):
    """The stage heat-maps ``[coarse, spatial]`` (each ``(B, K, h, w)``) plus the cascade's extras:
    ``features`` (the cropped feature maps), ``centres`` ``(B, K, 2)`` crop px (coarse argmax) and
    ``fine`` ``(B, K, G, G)`` (the fine heat-maps at those centres)."""

    features: list[torch.Tensor]
    centres: torch.Tensor
    fine: torch.Tensor


class TompsonNet(nn.Module):
    """Coarse multi-resolution model (+ spatial model) + fine model: image ``(B, 3, H, W)`` -> ``TompsonOutputs``."""

    def __init__(self, num_joints: int, channels: Sequence[int], kernels: Sequence[int], head_channels: int,
                 dropout: float, spatial_kernel: int | None, window: float, fine_grid: int, fine_channels: int,
                 batch_norm: bool, fine_backprop: bool) -> None:
        super().__init__()
        self.full_bank = Tower(channels, kernels, batch_norm)
        self.half_bank = Tower(channels, kernels, batch_norm)
        self.head = nn.Sequential(
            nn.Dropout2d(dropout),
            nn.Conv2d(channels[3], head_channels, 1), nn.ReLU(inplace=True),
            nn.Conv2d(head_channels, head_channels, 1), nn.ReLU(inplace=True),
            nn.Conv2d(head_channels, num_joints, 1),
        )
        self.spatial = SpatialModel(num_joints, spatial_kernel) if spatial_kernel else None
        self.fine = FineModel(2 * (channels[0] + channels[1]), (2, 4, 4, 8), num_joints, window, fine_grid,
                              fine_channels, batch_norm)
        self.fine_backprop = fine_backprop

    def coarse(self, image: torch.Tensor) -> TompsonOutputs:
        """The coarse stages and the features the fine model crops (no fine pass)."""
        full, full_features = self.full_bank(image)
        half, half_features = self.half_bank(F.avg_pool2d(image, 2))
        merged = full + F.interpolate(half, size=full.shape[-2:], mode="nearest")
        heatmaps = self.head(merged)
        outputs = TompsonOutputs([heatmaps] if self.spatial is None else [heatmaps, self.spatial(heatmaps)])
        features = full_features + half_features
        outputs.features = features if self.fine_backprop else [f.detach() for f in features]
        return outputs

    def forward(self, image: torch.Tensor) -> TompsonOutputs:
        outputs = self.coarse(image)
        final = outputs[-1].detach()
        batch, joints, height, width = final.shape
        index = final.reshape(batch, joints, -1).argmax(dim=-1)
        grid = torch.stack([index % width, index // width], dim=-1).to(final.dtype)
        stride = image.shape[-1] / width
        outputs.centres = (grid + 0.5) * stride - 0.5
        outputs.fine = self.fine(outputs.features, outputs.centres)
        return outputs


def _cascade(outputs: Outputs) -> TompsonOutputs:
    """``outputs`` as the ``TompsonOutputs`` of ``TompsonNet`` (the base class types them as any method's)."""
    if not isinstance(outputs, TompsonOutputs):
        raise TypeError(f"Tompson needs the TompsonOutputs of its own forward pass, got {type(outputs).__name__}")
    return outputs


@register_method("tompson")
class Tompson(HeatmapEstimator):
    """Tompson et al. (CVPR'15) cascade. ``channels``/``kernels``: the four tower convolutions;
    ``head_channels``: the two 1x1 layers; ``dropout``: SpatialDropout probability; ``spatial_model``
    and ``spatial_kernel``: the NIPS'14 spatial model; ``window`` (input px), ``fine_grid``,
    ``fine_channels``, ``fine_sigma`` (grid px), ``fine_weight``: the fine model and its loss weight;
    ``fine_backprop``: let the fine loss train the shared features; ``batch_norm``: BN after convs."""

    net: TompsonNet

    output_stride = 4
    # The fine model crops windows on the aligned grid (mirrored centres at W - 1 - x).
    conventions = (DEFAULT_CONVENTION,)

    def __init__(
        self,
        *,
        channels: Sequence[int] = (128, 128, 128, 512),
        kernels: Sequence[int] = (5, 5, 5, 9),
        head_channels: int = 256,
        dropout: float = 0.5,
        spatial_model: bool = True,
        spatial_kernel: int = 63,
        window: float = 72.0,
        fine_grid: int = 36,
        fine_channels: int = 128,
        fine_sigma: float = 1.5,
        fine_weight: float = 1.0,
        fine_backprop: bool = True,
        batch_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("sigma", 1.5)
        super().__init__(**kwargs)
        if len(channels) != 4 or len(kernels) != 4 or min(channels) < 1 or any(k < 1 or k % 2 == 0 for k in kernels):
            raise ValueError(f"channels and kernels need 4 entries each (kernels odd), "
                             f"got {list(channels)}, {list(kernels)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if window <= 0 or fine_grid < 2 or fine_sigma <= 0 or fine_weight < 0:
            raise ValueError(f"window, fine_grid, fine_sigma must be positive and fine_weight >= 0, got "
                             f"{window}, {fine_grid}, {fine_sigma}, {fine_weight}")
        height, width = self.input_size
        if height % 8 or width % 8:
            raise ValueError(f"tompson input_size {[height, width]} must be divisible by 8 (half-resolution bank)")
        self.net = TompsonNet(self.num_joints, channels, kernels, head_channels, dropout,
                              spatial_kernel if spatial_model else None, window, fine_grid, fine_channels,
                              batch_norm, fine_backprop)
        self.fine_blur_kernel = blur_kernel_for_sigma(fine_sigma)

    def training_centres(self, coarse: torch.Tensor, keypoints: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Window centres ``(B, K, 2)`` for the fine loss: the coarse estimate where it lies within a
        quarter window of the ground truth (per axis), else the ground truth displaced by U(-w/4, w/4)."""
        quarter = self.net.fine.window / 4
        keypoints = keypoints.to(coarse.dtype)
        far = ((coarse - keypoints).abs() > quarter).any(dim=-1) & (visible > 0)
        displaced = keypoints + (torch.rand_like(keypoints) * 2 - 1) * quarter
        return torch.where(far.unsqueeze(-1), displaced, coarse)

    def fine_targets(self, keypoints: torch.Tensor, visible: torch.Tensor,
                     centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian fine targets ``(B, K, G, G)`` (sub-pixel, ``fine_sigma`` grid px) and weights ``(B, K)``
        (0 for unannotated joints and joints outside their window)."""
        fine = self.net.fine
        keypoints = torch.where((visible > 0).unsqueeze(-1), keypoints.to(centres.dtype), centres)
        mu = fine.to_grid(keypoints, centres)
        inside = ((mu >= -0.5) & (mu <= fine.grid - 0.5)).all(dim=-1)
        weights = ((visible > 0) & inside).to(centres.dtype)
        axis = torch.arange(fine.grid, device=centres.device, dtype=centres.dtype)
        sigma = self.hparams["fine_sigma"]
        gx = torch.exp(-((axis - mu[..., :1]) ** 2) / (2 * sigma**2))
        gy = torch.exp(-((axis - mu[..., 1:]) ** 2) / (2 * sigma**2))
        return gy.unsqueeze(-1) * gx.unsqueeze(-2), weights

    def compute_loss(self, outputs: Outputs, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Coarse (and spatial) MSE + ``fine_weight`` x fine MSE at the training windows."""
        outputs = _cascade(outputs)
        coarse_loss = super().compute_loss(list(outputs), batch)
        centres = self.training_centres(outputs.centres, batch["keypoints"], batch["visible"])
        targets, weights = self.fine_targets(batch["keypoints"], batch["visible"], centres)
        fine = self.net.fine(outputs.features, centres)
        return coarse_loss + self.hparams["fine_weight"] * joints_mse_loss(fine, targets, weights)

    def predict_stages(
        self, image: torch.Tensor, outputs: TompsonOutputs | None = None, protocol: Protocol | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Image ``(B, 3, H, W)`` -> coarse ``(B, K, 2)`` and fine ``(B, K, 2)`` crop px, scores ``(B, K)``
        under ``protocol`` (default: the configured decoder and flip test)."""
        protocol = protocol or self.primary_protocol
        outputs = self(image) if outputs is None else outputs
        decoder, flip = protocol
        return self._stages(outputs, self.net.coarse(image.flip(-1)) if flip else None, decoder)

    def _stages(self, outputs: TompsonOutputs, mirrored: TompsonOutputs | None,
                decoder: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The coarse estimate decodes the final coarse heat-maps (flip-averaged with ``mirrored``, the
        mirrored coarse pass, when given); the fine estimate decodes the fine heat-maps of windows centred
        there (flip-averaged too)."""
        heatmaps = outputs[-1]
        if mirrored is not None:
            heatmaps = 0.5 * (heatmaps + flip_heatmaps_back(mirrored[-1], self.flip_permutation,
                                                            shift=self.convention.flip_shift))
        coarse, scores = self.codec.decode(heatmaps.float(), method=decoder)
        # DARK's Taylor step can throw a flat (untrained) map's estimate far away; keep it in the crop.
        height, width = self.input_size
        coarse = torch.stack([coarse[..., 0].clamp(0, width - 1), coarse[..., 1].clamp(0, height - 1)], dim=-1)
        fine_model = self.net.fine
        fine_maps = fine_model(outputs.features, coarse)
        if mirrored is not None:
            perm = torch.as_tensor(self.flip_permutation, device=coarse.device)
            centres = coarse[:, perm].clone()
            centres[..., 0] = (self.input_size[1] - 1) - centres[..., 0]
            fine_maps = 0.5 * (fine_maps + fine_model(mirrored.features, centres)[:, perm].flip(-1))
        grid, _ = decode_heatmaps(fine_maps.float(), method=decoder, blur_kernel=self.fine_blur_kernel)
        return coarse, fine_model.to_crop(grid, coarse), scores

    def predict_protocols(
        self, image: torch.Tensor, outputs: Outputs | None = None, protocols: Sequence[Protocol] | None = None
    ) -> dict[Protocol, tuple[torch.Tensor, torch.Tensor]]:
        """The fine estimate under each protocol, from one plain and at most one mirrored coarse pass."""
        wanted = list(protocols or self.evaluation_protocols)
        plain = self(image) if outputs is None else _cascade(outputs)
        mirrored = self.net.coarse(image.flip(-1)) if any(flip for _, flip in wanted) else None
        predicted = {}
        for decoder, flip in wanted:
            _, fine, scores = self._stages(plain, mirrored if flip else None, decoder)
            predicted[(decoder, flip)] = (fine, scores)
        return predicted


_MPII: dict[str, Any] = {"num_joints": MPII_JOINTS, "flip_pairs": MPII_FLIP_PAIRS}
register_variant("tompson", "tompson", input_size=(256, 256), **_MPII)
register_variant("tompson-tiny", "tompson", input_size=(128, 128), tiny=True, channels=[8, 16, 16, 32],
                 kernels=[5, 5, 5, 7], head_channels=32, dropout=0.1, spatial_kernel=7, window=24.0, fine_grid=12,
                 fine_channels=16, batch_norm=True, **_MPII)
