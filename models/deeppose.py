"""DeepPose (Toshev and Szegedy, "DeepPose: Human Pose Estimation via Deep Neural Networks", CVPR'14).

Direct regression of the 2K joint coordinates, normalised to the person box, by an AlexNet-style
network, followed by a cascade of refinement stages that look at a crop around each joint's current
estimate and regress that joint's displacement.

Sources (the authors released no code):

- Paper Sec. 3 ("Pose vectors"): ``N(y; b) = (y - b_c) / b_size`` per axis; here the box of stage 1
  is the top-down crop (``models.codecs.RegressionCodec``).
- Paper Sec. 3.1: 220x220 input; ``C(55x55x96) - LRN - P - C(27x27x256) - LRN - P - C(13x13x384) -
  C(13x13x384) - C(13x13x256) - P - F(4096) - F(4096)``, filters 11x11 (stride 4), 5x5 and 3x3, ReLU
  after every layer, dropout 0.6 in the F layers, a linear output of 2K numbers; L2 loss summed over
  the joints (Eq. 4), averaged over the examples. The pooling and LRN settings are AlexNet's
  (Krizhevsky et al. 2012: 3x3 pooling with stride 2; LRN size 5, alpha 1e-4, beta 0.75, k 2).
  Conv1 has padding 4 so that 220 px give the paper's 55x55 (AlexNet's 224 with padding 2 does).
- Paper Sec. 3.2 (cascade): stage ``s >= 2`` crops the box ``b = (y_i^(s-1), sigma diam, sigma diam)``
  around each joint's previous estimate, resizes it to the network input, and regresses
  ``y_i^s = y_i^(s-1) + N^-1(psi_i(N(x; b); theta_s); b)``: the same architecture with new weights
  per stage, one network shared by all joints (joint ``i`` reads output ``i`` of the 2K outputs of
  its own crop). Training data of stage ``s``: the previous stage's estimates on the training set,
  augmented with simulated predictions, the ground truth displaced by a vector drawn from a 2-D
  Normal with the mean and variance of the previous stage's observed displacements. S = 3 stages.
- Paper Sec. 4: Adagrad, learning rate 5e-4 (as quoted by the asanakoy/deeppose_tf
  re-implementation's README, "as specified in the paper").
- Modernised variant: mmpose ``configs/body_2d_keypoint/topdown_regression/mpii/
  td-reg_res50_8xb64-210e_mpii-256x256.py``: ResNet-50 (torchvision ImageNet weights), global
  average pooling, ``RegressionHead`` (one linear layer to 2K), ``SmoothL1Loss`` with target weights,
  256x256, flip test with ``shift_coords`` (``x' = (W - 1) - x`` in pixels, as
  ``models.codecs.flip_coordinates``); 82.6 PCKh@0.5 on MPII val (mmpose ``resnet_mpii.md``).

Training schedule (one LightningModule trains every stage at once): each step runs stage 1 on the
image; for ``s = 2..S`` the input estimate of stage ``s`` is, per (sample, joint), the detached
estimate of stage ``s - 1`` or, with probability ``simulated_fraction``, the ground truth plus a
displacement drawn from ``N(mean_(s-1), cov_(s-1))``; stage ``s`` refines it on its crop, its loss
is the L2 error of the crop-normalised displacement, and its detached output feeds stage ``s + 1``.
``mean_(s-1)`` ``(K, 2)`` and ``cov_(s-1)`` ``(K, 2, 2)`` are buffers, running estimates of stage
``s - 1``'s error on the training batches (box-normalised, per joint; a cumulative average over the
first ``1 / stats_momentum`` batches, an exponential moving average after). The total loss is the
sum of the stage losses; because every stage input is detached, each stage's weights get the
gradient of their own loss only, exactly as if each stage were trained on its own data set.

Deviations from the paper:

- Stages are trained together rather than one after another (see above); the error statistics
  come from running estimates on training batches (of stage ``s - 1`` refining partly simulated
  inputs) instead of one pass over the whole training set with the finished stage ``s - 1``.
- Crop side: a fixed fraction ``crop_fraction`` of the person box per axis (the stage-1 input crop),
  not ``sigma diam(y)`` with ``diam`` the torso diameter of the current estimate (shoulder to the
  opposite hip). The top-down crop already normalises the person's scale, and a fixed crop keeps a
  wrong estimate from shrinking or blowing up the crop. With a non-square input the crop keeps the
  input's aspect ratio, so displacements are normalised per axis.
- Each stage refines with the crop alone (no flip augmentation of the crop); the crops are cut with
  ``torchvision.ops.roi_align`` (bilinear, zero outside the image) from the already-normalised
  input crop, not from the original image, so detail finer than the input crop is not recovered.
- Full covariance per joint (the paper says "mean and variance"); ``simulated_fraction`` (the share of
  simulated inputs) is not given in the paper.
- Adagrad is not among the shared optimisers (``models.base.OPTIMIZERS``); the method YAML uses Adam.
- Scores: regression has no confidence, so every joint scores 1.0.
- The paper says "about 40M parameters"; this network, written out from the layer list, has 58.4M per
  stage (the 6x6x256 -> 4096 layer alone is 37.7M), so no ``paper_params`` is claimed.
- ``deeppose-res50`` (modernised, mmpose's) is one stage; ``loss="smooth_l1"`` reproduces mmpose's
  loss (``F.smooth_l1_loss`` on weighted coordinates, mean over elements, beta 1).
- ``deeppose-tiny`` is ours: a narrow AlexNet (16-32-48-48-32 channels, 256-unit F layers, no
  dropout, batch normalisation after each convolution instead of LRN), 2 stages, 96x96 input, for
  tests and the demo.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from models.base import Outputs, PoseEstimator
from models.codecs import RegressionCodec, full_precision
from models.pretrained import create_timm_model, timm_num_features
from models.registry import MPII_FLIP_PAIRS, MPII_JOINTS, register_method, register_variant
from pixelgrid import CONVENTIONS, DEFAULT_CONVENTION

LOSSES: tuple[str, ...] = ("l2", "smooth_l1")
ALEXNET = "alexnet"


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class AlexNetRegressor(nn.Module):
    """DeepPose's AlexNet-style regressor: image ``(B, 3, H, W)`` -> ``(B, outputs)``.

    ``channels`` are the five convolutions' widths, ``hidden`` the two F layers' width.
    """

    def __init__(self, input_size: Sequence[int], outputs: int, channels: Sequence[int] = (96, 256, 384, 384, 256),
                 hidden: int = 4096, dropout: float = 0.6, lrn: bool = True, batch_norm: bool = False) -> None:
        super().__init__()
        if len(channels) != 5:
            raise ValueError(f"channels must list the 5 convolution widths, got {list(channels)}")
        c1, c2, c3, c4, c5 = (int(c) for c in channels)

        def norm() -> nn.Module:
            return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0) if lrn else nn.Identity()

        def conv(c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            return layers + [nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *conv(3, c1, 11, 4, 4), norm(), nn.MaxPool2d(3, 2),
            *conv(c1, c2, 5, 1, 2), norm(), nn.MaxPool2d(3, 2),
            *conv(c2, c3, 3, 1, 1), *conv(c3, c4, 3, 1, 1), *conv(c4, c5, 3, 1, 1), nn.MaxPool2d(3, 2),
        )
        self.feature_size = tuple(self.spatial_sizes(input_size)[-1])
        if min(self.feature_size) < 1:
            raise ValueError(f"input_size {list(input_size)} is too small for the AlexNet layout (needs >= 67 px)")
        self.regressor = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c5 * self.feature_size[0] * self.feature_size[1], hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, outputs),
        )

    @staticmethod
    def spatial_sizes(input_size: Sequence[int]) -> list[tuple[int, int]]:
        """(H, W) after conv1, pool1, pool2 and pool5 for an input of ``input_size`` (H, W)."""
        sizes = []
        h, w = (int(v) for v in input_size)
        for kernel, stride, padding in ((11, 4, 4), (3, 2, 0), (3, 2, 0), (3, 2, 0)):
            h, w = _conv_out(h, kernel, stride, padding), _conv_out(w, kernel, stride, padding)
            sizes.append((h, w))
        return sizes

    @property
    def output(self) -> nn.Linear:
        """The final linear layer (2K outputs)."""
        layer = self.regressor[-1]
        assert isinstance(layer, nn.Linear), "the regressor ends in its output layer"
        return layer

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.regressor(self.features(image))


class TimmRegressor(nn.Module):
    """A timm backbone with global average pooling and one linear layer: ``(B, 3, H, W)`` -> ``(B, outputs)``."""

    def __init__(self, backbone: str, outputs: int, pretrained: bool, backbone_args: Mapping[str, Any]) -> None:
        super().__init__()
        self.backbone = create_timm_model(backbone, pretrained=pretrained, owner=f"deeppose ({backbone})",
                                          num_classes=0, global_pool="avg", **dict(backbone_args))
        self.head = nn.Linear(timm_num_features(self.backbone), outputs)

    @property
    def output(self) -> nn.Linear:
        """The final linear layer (2K outputs)."""
        return self.head

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(image))


def joint_boxes(centres: torch.Tensor, size: Sequence[float]) -> torch.Tensor:
    """``roi_align`` boxes ``(B * K, 5)`` of crops of ``size`` (w, h) px centred on ``centres`` ``(B, K, 2)`` crop px.

    Rows are ``[batch index, x1, y1, x2, y2]`` in roi_align's ``aligned=True`` frame, where pixel ``i``
    spans ``[i, i + 1]``: the project's pixel centres sit at integers, hence the +0.5.
    """
    batch, joints = centres.shape[:2]
    half = centres.new_tensor([size[0] / 2.0, size[1] / 2.0])
    index = torch.arange(batch, device=centres.device, dtype=centres.dtype).repeat_interleave(joints)
    flat = centres.reshape(-1, 2) + 0.5
    return torch.cat([index[:, None], flat - half, flat + half], dim=1)


class DeepPoseCascade(nn.Module):
    """Stage 1 on the whole crop and ``stages - 1`` refiners on per-joint crops.

    Estimates are box-normalised ``(B, K, 2)`` (``RegressionCodec``); a refinement crop is
    ``crop_fraction`` of the input crop per axis, resized to ``input_size`` (H, W).
    """

    def __init__(self, regressors: Sequence[AlexNetRegressor | TimmRegressor], num_joints: int,
                 input_size: Sequence[int], crop_fraction: float, convention: str = DEFAULT_CONVENTION) -> None:
        super().__init__()
        self.stages = nn.ModuleList(regressors)
        for refiner in regressors[1:]:
            # Small output weights: a refiner starts out predicting "no displacement", so a new stage
            # starts no worse than its input; non-zero so that gradients reach the layers below.
            nn.init.normal_(refiner.output.weight, std=1e-3)
            nn.init.zeros_(refiner.output.bias)
        self.num_joints = int(num_joints)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.crop_fraction = float(crop_fraction)
        self.codec = RegressionCodec(self.input_size, convention)

    def initial(self, image: torch.Tensor) -> torch.Tensor:
        """Stage 1: image ``(B, 3, H, W)`` -> box-normalised estimates ``(B, K, 2)``."""
        return self.stages[0](image).view(-1, self.num_joints, 2)

    def crops(self, image: torch.Tensor, estimates: torch.Tensor) -> torch.Tensor:
        """Per-joint crops ``(B * K, 3, H, W)`` around box-normalised ``estimates`` ``(B, K, 2)``."""
        height, width = self.input_size
        size = (self.crop_fraction * width, self.crop_fraction * height)
        boxes = joint_boxes(self.codec.decode(estimates).to(image.dtype), size)
        return roi_align(image, boxes, output_size=self.input_size, spatial_scale=1.0, sampling_ratio=-1,
                         aligned=True)

    def refine(self, image: torch.Tensor, estimates: torch.Tensor, stage: int) -> torch.Tensor:
        """Stage ``stage`` (1-based index >= 1 into ``stages``): displacements ``(B, K, 2)`` in crop units.

        Joint ``i`` reads outputs ``i`` of the network applied to its own crop.
        """
        batch = estimates.shape[0]
        outputs = self.stages[stage](self.crops(image, estimates)).view(batch, self.num_joints, self.num_joints, 2)
        return torch.diagonal(outputs, dim1=1, dim2=2).transpose(1, 2)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Image ``(B, 3, H, W)`` -> the estimate after every stage, box-normalised ``[(B, K, 2)] * S``."""
        estimates = [self.initial(image)]
        for stage in range(1, len(self.stages)):
            previous = estimates[-1]
            estimates.append(previous + self.crop_fraction * self.refine(image, previous, stage))
        return estimates


def _stage_loss(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, kind: str) -> torch.Tensor:
    """``l2``: sum over joints of the weighted squared error, mean over the batch (paper Eq. 4);
    ``smooth_l1``: mmpose ``SmoothL1Loss(use_target_weight=True)``."""
    weight = weights[..., None].to(prediction.dtype)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(prediction * weight, target * weight)
    return ((prediction - target) * weight).pow(2).sum() / prediction.shape[0]


def covariance_factor(cov: torch.Tensor) -> torch.Tensor:
    """``L`` with ``L Lᵀ = cov`` for each ``(..., 2, 2)`` covariance: its Cholesky factor (after a 1e-8 jitter), or,
    where that fails (a singular covariance rounded slightly indefinite, e.g. from a joint annotated twice in a
    batch), the square root of its positive semi-definite part (eigenvalues clipped at 0). Computed in fp32."""
    cov = cov.float()
    jitter = 1e-8 * torch.eye(2, device=cov.device, dtype=cov.dtype)
    chol, info = torch.linalg.cholesky_ex(cov + jitter)
    failed = info != 0
    if not bool(failed.any()):
        return chol
    values, vectors = torch.linalg.eigh(0.5 * (cov + cov.transpose(-1, -2)))
    root = vectors * values.clamp(min=0).sqrt().unsqueeze(-2)
    return torch.where(failed[..., None, None], root, chol)


@register_method("deeppose")
class DeepPose(PoseEstimator):
    """DeepPose: ``stages`` regressors (``backbone`` ``"alexnet"`` or a timm model name).

    ``convention`` ``msra`` / ``udp`` normalises coordinates as mmpose's ``RegressionLabel`` (x / W).

    AlexNet: ``channels`` (5 conv widths), ``hidden`` (F-layer width), ``dropout``, ``lrn``.
    timm: ``pretrained`` loads ImageNet weights (downloads), ``backbone_args`` extra constructor args.
    Cascade: ``crop_fraction`` (crop side / person-box side), ``simulated_fraction`` (share of
    stage inputs drawn around the ground truth), ``stats_momentum`` (EMA factor of the error
    statistics), ``initial_error_std`` (box units; the simulated error before any statistics).
    ``loss``: ``"l2"`` (paper) or ``"smooth_l1"`` (mmpose).
    """

    net: DeepPoseCascade

    conventions = CONVENTIONS
    # Buffers (register_buffer in __init__), per refiner and joint: the error statistics.
    error_mean: torch.Tensor
    error_cov: torch.Tensor
    error_batches: torch.Tensor

    def __init__(
        self,
        *,
        backbone: str = ALEXNET,
        pretrained: bool = False,
        backbone_args: Mapping[str, Any] | None = None,
        stages: int = 3,
        channels: Sequence[int] = (96, 256, 384, 384, 256),
        hidden: int = 4096,
        dropout: float = 0.6,
        lrn: bool = True,
        batch_norm: bool = False,
        crop_fraction: float = 0.5,
        simulated_fraction: float = 0.5,
        stats_momentum: float = 0.05,
        initial_error_std: float = 0.1,
        loss: str = "l2",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if stages < 1:
            raise ValueError(f"stages must be >= 1, got {stages}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
        if crop_fraction <= 0 or not 0 <= simulated_fraction <= 1 or not 0 < stats_momentum <= 1:
            raise ValueError(f"need crop_fraction > 0, 0 <= simulated_fraction <= 1, 0 < stats_momentum <= 1; got "
                             f"{crop_fraction}, {simulated_fraction}, {stats_momentum}")
        outputs = 2 * self.num_joints

        def regressor() -> AlexNetRegressor | TimmRegressor:
            if backbone == ALEXNET:
                return AlexNetRegressor(self.input_size, outputs, channels, hidden, dropout, lrn, batch_norm)
            return TimmRegressor(backbone, outputs, pretrained, backbone_args or {})

        self.net = DeepPoseCascade([regressor() for _ in range(stages)], self.num_joints, self.input_size,
                                   crop_fraction, self.convention.name)
        self.codec = self.net.codec
        refiners = stages - 1
        self.register_buffer("error_mean", torch.zeros(refiners, self.num_joints, 2))
        self.register_buffer("error_cov", torch.eye(2).repeat(refiners, self.num_joints, 1, 1) * initial_error_std ** 2)
        self.register_buffer("error_batches", torch.zeros(refiners, self.num_joints))

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # Stages >= 2 are run inside compute_loss on their (partly simulated) training inputs; the
        # inference cascade would only be thrown away.
        loss = self.compute_loss([self.net.initial(batch["image"])], batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def compute_loss(self, outputs: Outputs, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Sum of the stage losses. Training: stages >= 2 refine simulated/detached inputs (module
        docstring); evaluation: each stage's loss on the cascade's own estimates ``outputs``."""
        estimates = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        targets, weights = self.codec.encode(batch["keypoints"], batch["visible"])
        kind = self.hparams["loss"]
        loss = _stage_loss(estimates[0], targets, weights, kind)
        sigma = self.net.crop_fraction
        if not self.training:
            for previous, current in itertools.pairwise(estimates):
                loss = loss + _stage_loss((current - previous) / sigma, (targets - previous) / sigma, weights, kind)
            return loss
        previous = estimates[0].detach()
        for stage in range(1, len(self.net.stages)):
            self.update_error_statistics(stage - 1, previous - targets, weights)
            inputs = self.stage_inputs(stage - 1, previous, targets)
            displacement = self.net.refine(batch["image"], inputs, stage)
            loss = loss + _stage_loss(displacement, (targets - inputs) / sigma, weights, kind)
            previous = (inputs + sigma * displacement).detach()
        return loss

    @torch.no_grad()
    @full_precision
    def update_error_statistics(self, index: int, errors: torch.Tensor, weights: torch.Tensor) -> None:
        """Fold the batch's per-joint error mean and covariance (``errors`` ``(B, K, 2)`` box units,
        ``weights`` ``(B, K)``) into buffer ``index``; joints annotated fewer than twice are skipped. Computed in
        fp32 outside any autocast: bf16 rounding could leave a covariance that is not positive semi-definite."""
        errors = errors.float()
        w = (weights > 0).to(errors.dtype)
        count = w.sum(0)
        mean = (w[..., None] * errors).sum(0) / count.clamp(min=1)[:, None]
        centred = (errors - mean) * w[..., None]
        cov = torch.einsum("bki,bkj->kij", centred, centred) / count.clamp(min=1)[:, None, None]
        seen = self.error_batches[index]
        factor = torch.clamp(1.0 / (seen + 1.0), min=self.hparams["stats_momentum"])
        factor = torch.where(count >= 2, factor, torch.zeros_like(factor))
        self.error_mean[index] += factor[:, None] * (mean - self.error_mean[index])
        self.error_cov[index] += factor[:, None, None] * (cov - self.error_cov[index])
        self.error_batches[index] += (count >= 2).to(seen.dtype)

    def simulate(self, index: int, targets: torch.Tensor) -> torch.Tensor:
        """Ground truth ``(B, K, 2)`` displaced by draws from ``N(error_mean[index], error_cov[index])``."""
        factor = covariance_factor(self.error_cov[index])
        noise = torch.randn_like(targets, dtype=factor.dtype)
        return targets + self.error_mean[index] + torch.einsum("kij,bkj->bki", factor, noise).to(targets.dtype)

    def stage_inputs(self, index: int, previous: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per (sample, joint): ``previous`` ``(B, K, 2)``, or a simulated estimate with probability
        ``simulated_fraction``."""
        simulated = torch.rand(previous.shape[:2], device=previous.device) < self.hparams["simulated_fraction"]
        return torch.where(simulated[..., None], self.simulate(index, targets), previous)

    # ---------------------------------------------------------------- prediction
    def crop_coordinates(self, outputs: Outputs) -> torch.Tensor:
        """The last stage's estimate ``(B, K, 2)`` crop px (the base's ``predict_protocols`` flip-tests it)."""
        return self.codec.decode(outputs[-1].float())


_MPII: dict[str, Any] = {"num_joints": MPII_JOINTS, "flip_pairs": MPII_FLIP_PAIRS}
register_variant("deeppose", "deeppose", input_size=(220, 220), stages=3, **_MPII)
register_variant("deeppose-res50", "deeppose", input_size=(256, 256), modernized=True, backbone="resnet50.tv_in1k",
                 pretrained=True, stages=1, loss="smooth_l1", **_MPII)
register_variant("deeppose-tiny", "deeppose", input_size=(96, 96), tiny=True, stages=2, channels=[16, 32, 48, 48, 32],
                 hidden=256, dropout=0.0, lrn=False, batch_norm=True, **_MPII)
