"""G-RMI (Papandreou et al., "Towards Accurate Multi-person Pose Estimation in the Wild", CVPR'17): heatmap and
offset fields from an atrous ResNet, fused by Hough voting.

The pose stage of the paper's top-down system (Sec. 3.2): each person box is extended to a fixed aspect ratio
without distortion, enlarged, cropped and resized to 353x257 (H x W); a fully convolutional ResNet-101 predicts K
disk heatmaps and 2K offsets, fused into K activation maps (models/offset_codec.py).

Sources (the paper; there is no official code):

- Sec. 3.2, box and crop: the box is extended to the crop's aspect ratio, then enlarged by a rescaling factor of
  1.25 at evaluation and a random factor in [1.0, 1.5] during training; the crop is 353x257.
- Sec. 3.2, network: ResNet-101 pre-trained on ImageNet, atrous convolution for an output stride of 8, a 1x1
  convolution with 3K outputs (K heatmaps, 2K offsets), the outputs bilinearly upsampled to the crop size.
- Sec. 3.2, targets and loss: ``h_k`` is 1 within a disk of radius R = 25 px of keypoint k; the heatmap loss is
  the per-pixel logistic loss, the offset loss the Huber loss of ``||F_k(x_i) - (l_k - x_i)||`` over the pixels
  inside the disk only; the total loss is ``lambda_h L_h + lambda_o L_o`` with lambda_h = 4, lambda_o = 1.
- Sec. 3.2, fusion by Hough voting with the bilinear kernel (models/offset_codec.py) and the pose score of eq. 7,
  the mean over keypoints of the maximal fused activation, which ranks the persons for COCO AP and OKS-NMS in place
  of the box score (benchmark/configs/method/grmi.yaml ``model.instance_score: keypoint``; docs/protocols.md).
- Abstract (arXiv:1701.01779): AP 0.649 on COCO test-dev trained on COCO only (0.685 with extra in-house data),
  and "keypoint-based confidence score estimation, instead of box-level scoring"; the facts here checked against
  a quotation of the paper.

What could not be verified: the paper's text could not be consulted when this file was written, so the facts
above are PoseBench's reading of it, corroborated only where a third-party re-implementation agrees
(hackiey/keypoints: ``config`` 353x257 and RADIUS 25; ``train.py`` ``4 * loss_h + loss_o`` with the Huber loss of
the offset distance inside the disk). The equation numbers and the training schedule (solver, LR, steps, batch)
are unverified; benchmark/configs/recipe/grmi_coco.yaml marks each such setting.

Deviations:

- Offsets are regressed in units of R (targets in the unit disk) with a Huber threshold of 1 (= R px); the
  heatmap loss is the mean over the pixels of the annotated keypoints' maps, the offset loss the mean over their
  disk pixels (the paper's normalisation of offsets and of the two sums is not known).
- The backbone is timm's ``resnet101.tv_in1k`` (torchvision ImageNet weights) with timm's ``output_stride=8``
  (torchvision's ``replace_stride_with_dilation=[False, True, True]``), not the paper's TF-slim checkpoint.
- Upsampling uses ``align_corners=True``: with 8k + 1 crop sizes (353 = 8 x 44 + 1, 257 = 8 x 32 + 1) feature
  ``i`` sits exactly on crop pixel ``8 i``.
- The flip test (not part of the paper's test procedure as read here) averages the fused maps of the crop and
  of the mirrored crop.
- ``grmi-tiny`` is ours: a quarter-width ResNet-18 at 97x73 (8k + 1 again) with R = 7 px (25 x 97 / 353), for
  tests and the demo.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.base import Outputs, PoseEstimator, Protocol
from models.codecs import flip_heatmaps_back
from models.offset_codec import OffsetCodec, OffsetTargets, fused_maxima, hough_vote
from models.pretrained import create_timm_model, timm_num_features
from models.registry import COCO_FLIP_PAIRS, COCO_JOINTS, register_method, register_variant

HOUGH = "hough"
"""The decoder name of G-RMI's outputs: Hough voting of heatmaps and offsets, then the argmax."""
OUTPUT_STRIDE = 8


class GRMINet(nn.Module):
    """Atrous timm ResNet (output stride 8) + a 1x1 convolution, bilinearly upsampled to the crop: image
    ``(B, 3, H, W)`` -> ``(B, 3K, H, W)``: K heatmap logits, then K (dx, dy) offset pairs in units of R."""

    def __init__(self, backbone: str, num_joints: int, pretrained: bool, backbone_args: Mapping[str, Any]) -> None:
        super().__init__()
        # zero_init_last=False keeps torchvision's initialisation (timm zeroes each block's last BN).
        self.backbone = create_timm_model(backbone, pretrained=pretrained, owner=f"grmi ({backbone})", num_classes=0,
                                          global_pool="", output_stride=OUTPUT_STRIDE,
                                          **{"zero_init_last": False, **backbone_args})
        self.head = nn.Conv2d(timm_num_features(self.backbone), 3 * num_joints, kernel_size=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        fields = self.head(self.backbone(image))
        return F.interpolate(fields, size=image.shape[-2:], mode="bilinear", align_corners=True)


def huber(squared_norm: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Huber loss of a norm given its square: ``u^2 / 2`` up to ``delta``, ``delta (u - delta / 2)`` beyond
    (taking the square keeps the gradient finite at a zero residual)."""
    norm = squared_norm.clamp_min(delta**2).sqrt()
    return torch.where(squared_norm <= delta**2, 0.5 * squared_norm, delta * (norm - 0.5 * delta))


def offset_field_loss(logits: torch.Tensor, offsets: torch.Tensor, targets: OffsetTargets, heatmap_weight: float,
                      offset_weight: float) -> torch.Tensor:
    """``lambda_h`` x the logistic loss of the heatmap logits ``(B, K, H, W)`` over the annotated keypoints' maps +
    ``lambda_o`` x the Huber loss of the offset error ``(B, K, 2, H, W)`` (units of R) inside their disks."""
    weights = targets.weights[..., None, None].to(logits.dtype)
    logistic = F.binary_cross_entropy_with_logits(logits, targets.heatmaps, reduction="none")
    heatmap_loss = (logistic * weights).sum() / (weights.sum() * logits.shape[-2] * logits.shape[-1]).clamp_min(1.0)
    inside = targets.heatmaps
    error = huber((offsets - targets.offsets).square().sum(dim=2))
    offset_loss = (error * inside).sum() / inside.sum().clamp_min(1.0)
    return heatmap_weight * heatmap_loss + offset_weight * offset_loss


@register_method("grmi")
class GRMI(PoseEstimator):
    """G-RMI: ``backbone`` a timm ResNet name run at output stride 8; ``pretrained`` loads its ImageNet weights
    (downloads); ``radius`` the disk radius R in crop px; ``heatmap_loss_weight`` and ``offset_loss_weight``
    lambda_h and lambda_o; ``backbone_args`` extra timm constructor arguments (e.g. ``channels``)."""

    decoders = (HOUGH,)

    def __init__(
        self,
        *,
        backbone: str = "resnet101.tv_in1k",
        pretrained: bool = True,
        radius: float = 25.0,
        heatmap_loss_weight: float = 4.0,
        offset_loss_weight: float = 1.0,
        backbone_args: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.codec = OffsetCodec(self.input_size, radius)
        self.net = GRMINet(backbone, self.num_joints, pretrained, dict(backbone_args or {}))

    def split_fields(self, outputs: Outputs) -> tuple[torch.Tensor, torch.Tensor]:
        """The network output ``(B, 3K, H, W)`` as heatmap logits ``(B, K, H, W)`` and offsets
        ``(B, K, 2, H, W)`` in units of R."""
        fields = outputs[-1] if isinstance(outputs, (list, tuple)) else outputs
        batch, _, height, width = fields.shape
        joints = self.num_joints
        return fields[:, :joints], fields[:, joints:].reshape(batch, joints, 2, height, width)

    def compute_loss(self, outputs: Outputs, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        logits, offsets = self.split_fields(outputs)
        targets = self.codec.encode(batch["keypoints"], batch["visible"])
        return offset_field_loss(logits, offsets, targets, self.hparams["heatmap_loss_weight"],
                                 self.hparams["offset_loss_weight"])

    def fused_maps(self, outputs: Outputs) -> torch.Tensor:
        """The Hough-voted activation maps ``(B, K, H, W)`` of ``self(image)``."""
        logits, offsets = self.split_fields(outputs)
        return hough_vote(logits.float().sigmoid(), offsets.float() * self.codec.radius, self.codec.radius)

    def predict_protocols(
        self, image: torch.Tensor, outputs: Outputs | None = None, protocols: Sequence[Protocol] | None = None
    ) -> dict[Protocol, tuple[torch.Tensor, torch.Tensor]]:
        """Keypoints ``(B, K, 2)`` crop px and scores ``(B, K)`` (the maxima of the fused maps); the flip test
        averages the fused maps with the mirrored crop's, mirrored back with the joints swapped."""
        wanted = list(protocols or self.evaluation_protocols)
        fused = {False: self.fused_maps(self(image) if outputs is None else outputs)}
        if any(flip for _, flip in wanted):
            mirrored = flip_heatmaps_back(self.fused_maps(self(image.flip(-1))), self.flip_permutation,
                                          shift=self.convention.flip_shift)
            fused[True] = 0.5 * (fused[False] + mirrored)
        return {(decoder, flip): fused_maxima(fused[flip]) for decoder, flip in wanted}


_COCO: dict[str, Any] = {"num_joints": COCO_JOINTS, "flip_pairs": COCO_FLIP_PAIRS}
register_variant("grmi-r101", "grmi", input_size=(353, 257), backbone="resnet101.tv_in1k", radius=25.0, **_COCO)
register_variant("grmi-tiny", "grmi", input_size=(97, 73), tiny=True, backbone="resnet18", pretrained=False,
                 radius=7.0, backbone_args={"channels": [16, 32, 64, 128], "stem_width": 16}, **_COCO)
