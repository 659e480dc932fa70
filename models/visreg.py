"""Multi-task regressors with a joint-visibility head (``visreg``): K presence probabilities and K (x, y).

One convolutional backbone and a first fully connected layer shared by two branches: a classification head
that says, per joint, whether it is present (annotated visible) in the image, and a regression head that
gives its coordinates. Training runs in two phases: the classification head alone for
``classification_epochs`` epochs, then the regression head is appended and both losses train together.

The study (LSP-extended, 10,000 images whose joints carry a visibility flag; an invisible joint has
``omega = -1`` in its notation, ``visible == 0`` here) compares four backbones: ``baseline1`` (2 convolution +
pooling blocks, 3 fully connected layers), ``baseline2`` (3 such blocks, 3 fully connected layers),
a non-separated AlexNet (one tower instead of Krizhevsky et al.'s two) with an extra max pooling after conv4,
and VGG-19. It scores the coordinates with PCK at a fraction (1/12) of the image height and the presence
with the classification accuracy: 82.53 (baseline1), 83.21 (baseline2), 88.82 (AlexNet), 84.44 (VGG-19) on
LSP-extended (``benchmark/configs/recipe/visreg_*_lspet.yaml``).

What could not be checked against the study's text (it was not reachable from here): the order of those
four numbers (taken as listed above), its PCK@1/12 values, its split of LSP-extended, the widths and
kernels of the two baselines, the input size, the loss weights, the optimiser and the length of each phase.
They are PoseBench choices, listed under "Deviations".

Losses: the classification head gives two logits per joint (absent, present) trained with the cross-entropy
against ``visible`` (mean over the B x K joints); the regression head gives box-normalised coordinates
(``models.codecs.RegressionCodec``, DeepPose's ``N(y; b)``) trained with DeepPose's L2 (sum over joints, mean
over the batch; Toshev & Szegedy CVPR'14 Eq. 4) where invisible joints have weight 0, so they add nothing.

Outputs: ``[presence logits (B, K, 2), coordinates (B, K, 2)]``; ``presence_probability`` is the softmax's
"present" column. The predict output's per-joint ``scores`` ARE these presence probabilities (flip-averaged
with the mirrored pass under the flip test, like the coordinates), so the evaluation scores the presence
with them (``benchmark.metrics.visibility_accuracy``: present = score > 0.5).

Deviations (PoseBench choices where the study gives nothing here):

- ``baseline1``: 5x5 convolutions of stride 2 with 32 and 64 channels, each followed by ReLU and a 2x2 max
  pooling; ``baseline2`` adds a third block of 128 channels; both with 1024-unit fully connected layers.
- AlexNet: Krizhevsky et al.'s single-tower layer sizes (96-256-384-384-256, LRN after conv1 and conv2,
  3x3 pooling with stride 2) with the extra pooling after conv4, 4096-unit fully connected layers, dropout 0.5.
- VGG-19: timm's ``vgg19.tv_in1k`` convolutions (torchvision's ImageNet weights with ``pretrained``),
  4096-unit fully connected layers, dropout 0.5.
- Every variant takes 224x224 crops of the person box (the top-down pipeline) rather than whole images.
- Second phase: both losses, weight 1 each; the classification loss stays.
- ``visreg-tiny`` is ours: four 3x3 stride-2 convolutions (16-32-64-64 channels) with batch normalisation,
  256-unit fully connected layers, no dropout, 64x64 input, for tests and the demo.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.base import Outputs, PoseEstimator, Protocol
from models.codecs import RegressionCodec, flip_coordinates
from models.pretrained import create_timm_model
from models.registry import MPII_FLIP_PAIRS, MPII_JOINTS, register_method, register_variant

BACKBONES: tuple[str, ...] = ("baseline1", "baseline2", "alexnet", "vgg19", "tiny")
VGG19 = "vgg19.tv_in1k"


def _conv(c_in: int, c_out: int, kernel: int, stride: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    return layers + [nn.ReLU(inplace=True)]


def _lrn() -> nn.Module:
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)


def build_backbone(name: str, pretrained: bool = False) -> nn.Sequential:
    """The convolutional part of backbone ``name`` (``BACKBONES``): image ``(B, 3, H, W)`` -> ``(B, C, h, w)``."""
    if name == "baseline1":
        return nn.Sequential(*_conv(3, 32, 5, 2, False), nn.MaxPool2d(2), *_conv(32, 64, 5, 2, False), nn.MaxPool2d(2))
    if name == "baseline2":
        return nn.Sequential(*_conv(3, 32, 5, 2, False), nn.MaxPool2d(2), *_conv(32, 64, 5, 2, False), nn.MaxPool2d(2),
                             *_conv(64, 128, 5, 2, False), nn.MaxPool2d(2))
    if name == "alexnet":
        return nn.Sequential(
            nn.Conv2d(3, 96, 11, stride=4, padding=2), nn.ReLU(inplace=True), _lrn(), nn.MaxPool2d(3, 2),
            *_conv(96, 256, 5, 1, False), _lrn(), nn.MaxPool2d(3, 2),
            *_conv(256, 384, 3, 1, False), *_conv(384, 384, 3, 1, False), nn.MaxPool2d(3, 2),  # the extra pooling
            *_conv(384, 256, 3, 1, False), nn.MaxPool2d(3, 2),
        )
    if name == "vgg19":
        features = create_timm_model(VGG19, pretrained=pretrained, owner="visreg-vgg19").features
        assert isinstance(features, nn.Sequential), type(features)
        return features
    if name == "tiny":
        return nn.Sequential(*_conv(3, 16, 3, 2, True), *_conv(16, 32, 3, 2, True), *_conv(32, 64, 3, 2, True),
                             *_conv(64, 64, 3, 2, True))
    raise ValueError(f"unknown visreg backbone {name!r}; valid: {', '.join(BACKBONES)}")


def _feature_size(backbone: nn.Module, input_size: Sequence[int]) -> int:
    """Flattened feature length of ``backbone`` for an ``(H, W)`` input, from a pass of a meta-device copy
    (shapes only: no memory, no compute)."""
    meta = torch.empty(1, 3, int(input_size[0]), int(input_size[1]), device="meta")
    shape = copy.deepcopy(backbone).to("meta")(meta).shape
    if min(shape[2:]) < 1:
        raise ValueError(f"input_size {list(input_size)} is too small for this backbone")
    return int(shape[1] * shape[2] * shape[3])


def _branch(hidden: int, outputs: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                         nn.Linear(hidden, outputs))


class VisRegNet(nn.Module):
    """Backbone, shared first FC layer, then a classification and a regression branch (two FC layers each).

    Image ``(B, 3, H, W)`` -> ``[presence logits (B, K, 2), normalised coordinates (B, K, 2)]``.
    """

    def __init__(self, backbone: nn.Module, feature_size: int, num_joints: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.num_joints = num_joints
        self.backbone = backbone
        self.shared = nn.Sequential(nn.Flatten(), nn.Linear(feature_size, hidden), nn.ReLU(inplace=True),
                                    nn.Dropout(dropout))
        self.classifier = _branch(hidden, 2 * num_joints, dropout)
        self.regressor = _branch(hidden, 2 * num_joints, dropout)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        shared = self.shared(self.backbone(image))
        k = self.num_joints
        return [self.classifier(shared).view(-1, k, 2), self.regressor(shared).view(-1, k, 2)]


def presence_probability(outputs: Outputs) -> torch.Tensor:
    """``(B, K)`` probability that each joint is present: the softmax of the presence logits, "present" column."""
    return torch.softmax(outputs[0].float(), dim=-1)[..., 1]


@register_method("visreg")
class VisReg(PoseEstimator):
    """Multi-task regressor: ``backbone`` (``BACKBONES``), ``hidden`` units per FC layer, ``dropout``.

    ``classification_epochs``: epochs of the first phase (classification loss only); afterwards both losses.
    ``pretrained`` loads ImageNet weights (VGG-19 only).
    """

    predicts_visibility = True
    """The scores of the predict output are presence probabilities (the evaluation reports their accuracy)."""

    def __init__(self, *, backbone: str = "alexnet", hidden: int = 4096, dropout: float = 0.5,
                 classification_epochs: int = 0, pretrained: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if classification_epochs < 0:
            raise ValueError(f"classification_epochs must be >= 0, got {classification_epochs}")
        features = build_backbone(backbone, pretrained=pretrained)
        self.net = VisRegNet(features, _feature_size(features, self.input_size), self.num_joints, hidden, dropout)
        self.codec = RegressionCodec(self.input_size, self.convention)

    @property
    def classification_phase(self) -> bool:
        """Whether training is still in the first phase (the regression head not yet appended)."""
        return self.current_epoch < self.hparams["classification_epochs"]

    def compute_loss(self, outputs: Outputs, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the presence logits against ``visible``, plus (second phase) the L2 of the
        visible joints' normalised coordinates."""
        logits, coordinates = outputs[0], outputs[1]
        present = (torch.as_tensor(batch["visible"]) > 0).long().to(logits.device)
        loss = F.cross_entropy(logits.reshape(-1, 2).float(), present.reshape(-1))
        if self.classification_phase:
            return loss
        targets, weights = self.codec.encode(batch["keypoints"], batch["visible"])
        squared = ((coordinates.float() - targets) * weights[..., None]).pow(2)
        return loss + squared.sum() / coordinates.shape[0]

    def crop_coordinates(self, outputs: Outputs) -> torch.Tensor:
        """The regression head's estimate ``(B, K, 2)`` in crop px."""
        return self.codec.decode(outputs[-1].float())

    def predict_protocols(
        self, image: torch.Tensor, outputs: Outputs | None = None, protocols: Sequence[Protocol] | None = None
    ) -> dict[Protocol, tuple[torch.Tensor, torch.Tensor]]:
        """As the base's, but the scores are the presence probabilities; the flip test averages them with the
        mirrored pass's, joints swapped back (as the coordinates)."""
        wanted = list(protocols or self.evaluation_protocols)
        plain = self(image) if outputs is None else outputs
        coords = {False: self.crop_coordinates(plain).float()}
        scores = {False: presence_probability(plain)}
        if any(flip for _, flip in wanted):
            mirrored = self(image.flip(-1))
            coords[True] = 0.5 * (coords[False] + flip_coordinates(self.crop_coordinates(mirrored).float(),
                                                                   image.shape[-1], self.flip_permutation))
            scores[True] = 0.5 * (scores[False] + presence_probability(mirrored)[:, self.flip_permutation])
        return {(decoder, flip): (coords[flip], scores[flip]) for decoder, flip in wanted}


_MPII: dict[str, Any] = {"num_joints": MPII_JOINTS, "flip_pairs": MPII_FLIP_PAIRS}
register_variant("visreg-baseline1", "visreg", input_size=(224, 224), backbone="baseline1", hidden=1024, **_MPII)
register_variant("visreg-baseline2", "visreg", input_size=(224, 224), backbone="baseline2", hidden=1024, **_MPII)
register_variant("visreg-alexnet", "visreg", input_size=(224, 224), backbone="alexnet", hidden=4096, **_MPII)
register_variant("visreg-vgg19", "visreg", input_size=(224, 224), backbone="vgg19", hidden=4096, **_MPII)
register_variant("visreg-tiny", "visreg", input_size=(64, 64), tiny=True, backbone="tiny", hidden=256, dropout=0.0,
                 **_MPII)
