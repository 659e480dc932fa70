"""Iterative Error Feedback (Carreira, Agrawal, Fragkiadaki and Malik, "Human Pose Estimation with
Iterative Error Feedback", CVPR'16; arXiv 1507.06550).

A network sees the crop together with K Gaussian maps rendered at the current pose estimate and
predicts a bounded correction of every joint; T corrections applied in turn, starting from the
mean pose, give the prediction. Trained with Fixed Path Consolidation (FPC).

Sources (paper sections of arXiv 1507.06550 v3; official code pulkitag/ief, Caffe):

- Paper Sec. 2 (Iterative Error Feedback): ``x_t = I (+) g(y_t)``, ``eps_t = f(x_t)``,
  ``y_{t+1} = y_t + eps_t``; ``g`` renders each keypoint as a 2D Gaussian on its own channel,
  concatenated with the image; ``f`` is a GoogLeNet whose first convolution takes the extra
  channels (randomly initialised there, ImageNet weights elsewhere).
- Paper Sec. 3 (Learning): bounded target correction ``e(y, y_t) = min(L, |u|) u / |u|`` with
  ``u = y - y_t`` per joint, ``L = 20`` pixels; squared-Euclidean loss ``h`` summed over steps; T = 4
  steps; Algorithm 1 (Fixed Path Consolidation): step 1 starts every example at ``y_0``; round t adds
  the examples ``(x_t, e(y, y_t))`` to the training set, trains on all examples gathered so far for
  N epochs, and the next round's estimates ``y_{t+1}`` are the model's own corrections of ``y_t``,
  fixed while that round trains.
- Official code ``src/test_demo.py`` ``PoseIEF.predict``: 224x224 input (central crop of a 256 crop),
  the seed pose ``metaPose['seedPose']`` (training statistics), 4 steps, the network output
  ``cls3_fc`` holds the K x-corrections then the K y-corrections in units of the maximum step
  (``currPose += mxStepNorm * dx``). ``src/layers/python_ief.py`` ``GaussRenderLayer``: each map is
  ``100 exp(-0.001 d^2) - 50`` (its defaults), i.e. a Gaussian of sigma ``sqrt(1 / 0.002) = 22.4`` px
  at 224 spanning [-50, 50] on mean-subtracted 0-255 images, no gradient to the estimate.
- Published MPII PCKh@0.5: 81.3 on the test set (paper, Table "MPII"; per part 95.7 / 91.7 / 81.7 /
  72.4 / 82.8 / 73.2 / 66.4); 81.8 on the validation set with the released (longer trained) models
  (project page home.isr.uc.pt/~joaoluis/ief/).

Checked against stored copies: the official code facts above and the project page's 81.8; the
81.3 test row matches a benchmark listing's MPII shoulder figure (91.7). The paper's own text was not
retrievable here, so its Sec. 2-3 facts (L = 20, T = 4, Algorithm 1, ``y_0`` = median) are as the
paper is cited for them, unverified against its text.

Deviations (all of them):

- Crops come from the ground-truth centre and scale like every PoseBench method; the paper gets
  the scale from a separate scale-selection network and a torso point, and its demo adds a 17th
  rendered channel for that point (constant at the crop centre here, so it is dropped).
- Backbone: torchvision's GoogLeNet (batch normalisation after every convolution, dropout 0.2)
  instead of the BVLC Caffe GoogLeNet (LRN, no BN, dropout 0.4); the auxiliary classifiers are not
  used; ``pretrained`` copies torchvision's ImageNet weights (trained on [-1, 1] inputs: its
  ``transform_input`` scale is folded into the RGB filters, its constant offset dropped).
- Rendered maps are ``2 exp(-d^2 / (2 sigma^2)) - 1`` in [-1, 1] (the official [-50, 50] rescaled to
  ImageNet-normalised images), at the exact (sub-pixel) estimate instead of the rounded pixel.
- Corrections: the network predicts the correction in units of L (as the official output) and
  each joint's prediction is projected onto the disc of radius L, as a last layer of ``f``, so no
  step ever moves a joint more than L (the paper bounds only the targets). The loss is the squared
  Euclidean distance between that bounded correction and ``e(y, y_t)`` (both in units of L),
  averaged over annotated joints (unannotated joints are ignored) and over the steps trained.
- L and the rendering sigma are given at the paper's 224-pixel scale and scaled by ``W / 224``.
- ``y_0`` is the MEAN (the paper: median) of the training crops' annotated keypoints, estimated
  while the first epoch trains (a running mean, frozen afterwards and saved as a buffer);
  before any training it is the crop centre.
- FPC rounds are counted in epochs: round ``r = min(epoch // epochs_per_round, T - 1)`` trains on
  steps ``0..r`` of every sample (all steps of a sample in one batch). The fixed path ``y_{r+1}`` of
  a sample is the model's corrected estimate recorded when the sample is visited in the last epoch
  of round r (rather than in a separate pass after the round). It is stored in image pixels with
  the original joint order, so it maps into any later augmented (rotated, scaled, flipped) crop;
  it is saved in checkpoints. A path entry that was never recorded (e.g. written on another DDP
  rank, or a checkpoint from another data set) is computed from the previous one by the current
  model. After the last round training continues on all T steps of the fixed path.
- Scores are a constant 1 (IEF predicts no confidence). Flip test: the loop also runs on the
  mirrored crop (from the same mean pose) and the two final estimates are averaged
  (``models.codecs.flip_coordinates``).
- ``ief-tiny`` is ours (tests and the demo): at 64x64, a narrow 4-layer convolutional net whose K
  stride-4 score maps are turned into a location by soft-argmax (integral regression), the
  correction being that location minus the current estimate; the IEF loop, input, bounds
  (L = 20 * 64 / 224 px) and FPC training are the paper's. (A flattened global regressor of that
  size only memorised the few hundred SynthPose training images.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torchvision
from torch import nn

from models.base import Outputs, PoseEstimator, crop_to_image
from models.pretrained import check_torchvision_weights
from models.registry import MPII_FLIP_PAIRS, MPII_JOINTS, register_method, register_variant

# The paper's input width: L and the rendering sigma are given at this scale.
PAPER_INPUT = 224
BACKBONES: tuple[str, ...] = ("googlenet", "tiny")
# torchvision's ImageNet GoogLeNet was trained on x * 0.5 + 0.5 -> (x - 0.5) / 0.5 per channel, i.e. on
# ImageNet-normalised inputs times std / 0.5 (``transform_input``); its RGB filters are scaled by that.
_IMAGENET_STD = (0.229, 0.224, 0.225)


def render_gaussians(pose: torch.Tensor, size_hw: tuple[int, int], sigma: float) -> torch.Tensor:
    """Pose ``(B, K, 2)`` crop px -> maps ``(B, K, H, W)``: ``2 exp(-d^2 / (2 sigma^2)) - 1`` in [-1, 1].

    Pixel centres at integers; separable (an outer product of a row and a column Gaussian).
    """
    height, width = size_hw
    xs = torch.arange(width, device=pose.device, dtype=pose.dtype)
    ys = torch.arange(height, device=pose.device, dtype=pose.dtype)
    gx = torch.exp(-(xs - pose[..., :1]) ** 2 / (2.0 * sigma**2))
    gy = torch.exp(-(ys - pose[..., 1:]) ** 2 / (2.0 * sigma**2))
    return 2.0 * gy.unsqueeze(-1) * gx.unsqueeze(-2) - 1.0


def bounded_target(keypoints: torch.Tensor, estimate: torch.Tensor, bound: float) -> torch.Tensor:
    """Paper Sec. 3: ``e(y, y_t) = min(L, |u|) u / |u|`` with ``u = y - y_t``; all ``(B, K, 2)``, 0 where u = 0."""
    u = keypoints - estimate
    norm = u.norm(dim=-1, keepdim=True)
    return u * (norm.clamp(max=bound) / norm.clamp(min=1e-12))


def project_to_disc(correction: torch.Tensor, radius: float = 1.0) -> torch.Tensor:
    """Each joint's 2-vector of ``(B, K, 2)`` scaled into the disc of ``radius`` (unchanged inside it)."""
    norm = correction.norm(dim=-1, keepdim=True)
    return correction * (radius / norm.clamp(min=radius))


def _pair(values: tuple[int, ...]) -> tuple[int, int]:
    """A Conv2d's (h, w) attribute as its constructor takes it (torch types it for convolutions of any dimension)."""
    height, width = values
    return height, width


def _widened_first_conv(conv: nn.Conv2d, extra: int, rgb_scale: Sequence[float] | None) -> nn.Conv2d:
    """``conv`` with ``extra`` more input channels: ImageNet RGB filters kept (times ``rgb_scale``) when
    given, every other weight ~ truncated N(0, 0.01) (torchvision's GoogLeNet initialisation)."""
    padding = conv.padding if isinstance(conv.padding, str) else _pair(conv.padding)
    wide = nn.Conv2d(conv.in_channels + extra, conv.out_channels, _pair(conv.kernel_size), stride=_pair(conv.stride),
                     padding=padding, bias=conv.bias is not None)
    nn.init.trunc_normal_(wide.weight, mean=0.0, std=0.01, a=-2, b=2)
    if rgb_scale is not None:
        with torch.no_grad():
            scale = torch.tensor(rgb_scale, dtype=conv.weight.dtype)[None, :, None, None]
            wide.weight[:, : conv.in_channels] = conv.weight * scale
    if wide.bias is not None:
        nn.init.zeros_(wide.bias)
    return wide


def googlenet_regressor(in_channels: int, outputs: int, pretrained: bool) -> nn.Module:
    """torchvision GoogLeNet (Inception v1, no auxiliary heads): ``(B, in_channels, H, W)`` -> ``(B, outputs)``."""
    if pretrained:
        weights = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1
        check_torchvision_weights(weights, owner="ief (googlenet)")
        # No aux_logits argument: with weights torchvision builds the auxiliary heads to load the checkpoint
        # and drops them after (an explicit aux_logits=False is refused).
        net = torchvision.models.googlenet(weights=weights, transform_input=False)
        rgb_scale: list[float] | None = [s / 0.5 for s in _IMAGENET_STD]
    else:
        net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True, transform_input=False)
        rgb_scale = None
    net.conv1.conv = _widened_first_conv(net.conv1.conv, in_channels - 3, rgb_scale)
    net.fc = nn.Linear(net.fc.in_features, outputs)
    nn.init.normal_(net.fc.weight, std=0.01)
    nn.init.zeros_(net.fc.bias)
    return net


class GoogLeNetRegressor(nn.Module):
    """The paper's ``f``: GoogLeNet on image and maps ``(B, 3 + K, H, W)`` -> ``(B, 2K)`` (the pose is not used)."""

    def __init__(self, num_joints: int, pretrained: bool) -> None:
        super().__init__()
        self.net = googlenet_regressor(3 + num_joints, 2 * num_joints, pretrained)

    def forward(self, inputs: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)


class TinySoftArgmaxRegressor(nn.Module):
    """``ief-tiny``'s ``f`` (ours): a narrow conv net on image and maps ``(B, 3 + K, H, W)`` to K stride-4
    score maps, whose soft-argmax (expected location, Sun et al.'s integral regression) minus the
    current estimate ``(B, K, 2)``, in units of ``step_px``, is the correction -> ``(B, 2K)`` (K x- then
    K y-corrections). A flattened global regressor of this size only memorises a few hundred
    training images; the soft-argmax keeps its output tied to image positions."""

    def __init__(self, num_joints: int, width: int, step_px: float) -> None:
        super().__init__()
        channels = [3 + num_joints, width, 2 * width, 2 * width, 4 * width]
        strides = [2, 2, 1, 1]
        layers: list[nn.Module] = []
        for c_in, c_out, stride in zip(channels[:-1], channels[1:], strides, strict=True):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers, nn.Conv2d(channels[-1], num_joints, 1))
        self.stride = 4
        self.step_px = step_px

    def forward(self, inputs: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        logits = self.features(inputs)
        _, _, h, w = logits.shape
        prob = logits.flatten(2).softmax(-1).unflatten(2, (h, w))
        # Score-map pixel j covers crop pixels [j s - 0.5, (j + 1) s - 0.5]: its centre is (j + 0.5) s - 0.5.
        xs = (torch.arange(w, device=logits.device, dtype=logits.dtype) + 0.5) * self.stride - 0.5
        ys = (torch.arange(h, device=logits.device, dtype=logits.dtype) + 0.5) * self.stride - 0.5
        expected = torch.stack([(prob.sum(-2) * xs).sum(-1), (prob.sum(-1) * ys).sum(-1)], dim=-1)
        out = (expected - pose.detach()) / self.step_px
        return out.transpose(1, 2).flatten(1)


class IEFNetwork(nn.Module):
    """``f``: image ``(B, 3, H, W)`` and pose ``(B, K, 2)`` crop px -> correction ``(B, K, 2)`` in units of L.

    The pose is rendered (``render_gaussians``, no gradient to it, as the official render layer) and
    concatenated with the image; the regressor's 2K outputs are the K x- then the K y-corrections.
    """

    def __init__(self, num_joints: int, size_hw: tuple[int, int], sigma: float, step_px: float, backbone: str,
                 pretrained: bool, tiny_width: int) -> None:
        super().__init__()
        self.size_hw = size_hw
        self.sigma = sigma
        if backbone == "googlenet":
            self.regressor: nn.Module = GoogLeNetRegressor(num_joints, pretrained)
        else:
            self.regressor = TinySoftArgmaxRegressor(num_joints, tiny_width, step_px)

    def forward(self, image: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        pose = pose.detach().to(image.dtype)
        maps = render_gaussians(pose, self.size_hw, self.sigma)
        out = self.regressor(torch.cat([image, maps], dim=1), pose)
        return out.unflatten(1, (2, -1)).transpose(1, 2)


def _corrections(outputs: Outputs) -> list[torch.Tensor]:
    """``forward``'s raw corrections ``[(B, K, 2)] * T`` as a list (a lone tensor is a single step)."""
    return [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)


@register_method("ief")
class IterativeErrorFeedback(PoseEstimator):
    """IEF: ``num_steps`` (T) bounded corrections from the mean pose, trained with Fixed Path Consolidation.

    ``step_bound`` is L and ``render_sigma`` the rendered Gaussians' sigma, both in pixels of a
    224-pixel-wide input (scaled by ``W / 224``); ``epochs_per_round`` is FPC's N; ``backbone`` is
    ``googlenet`` (the paper) or ``tiny``; ``tiny_width`` the tiny net's first width; ``pretrained``
    loads torchvision's ImageNet GoogLeNet (downloads).
    """

    # Buffers (register_buffer in __init__): y_0, whether it is final, its running sums, the flip permutation.
    mean_pose: torch.Tensor
    mean_pose_frozen: torch.Tensor
    _pose_sum: torch.Tensor
    _pose_count: torch.Tensor
    _flip_index: torch.Tensor

    def __init__(
        self,
        *,
        num_steps: int = 4,
        step_bound: float = 20.0,
        render_sigma: float = 22.36,
        epochs_per_round: int = 1,
        backbone: str = "googlenet",
        pretrained: bool = False,
        tiny_width: int = 16,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; valid: {', '.join(BACKBONES)}")
        if num_steps < 1 or epochs_per_round < 1:
            raise ValueError(f"num_steps and epochs_per_round must be >= 1, got {num_steps}, {epochs_per_round}")
        if step_bound <= 0 or render_sigma <= 0:
            raise ValueError(f"step_bound and render_sigma must be > 0, got {step_bound}, {render_sigma}")
        height, width = self.input_size
        scale = width / PAPER_INPUT
        self.num_steps = int(num_steps)
        self.step_bound_px = float(step_bound) * scale
        self.net = IEFNetwork(self.num_joints, self.input_size, float(render_sigma) * scale, self.step_bound_px,
                              backbone, pretrained, int(tiny_width))
        # y_0: the crop centre until the first training epoch has estimated the mean pose.
        centre = torch.tensor([(width - 1) / 2.0, (height - 1) / 2.0])
        self.register_buffer("mean_pose", centre.expand(self.num_joints, 2).clone())
        self.register_buffer("mean_pose_frozen", torch.tensor(False))
        self.register_buffer("_pose_sum", torch.zeros(self.num_joints, 2), persistent=True)
        self.register_buffer("_pose_count", torch.zeros(self.num_joints), persistent=True)
        self.register_buffer("_flip_index", torch.tensor(self.flip_permutation), persistent=False)
        # FPC path: (N, T - 1, K, 2) image px of y_1..y_{T-1} per training sample, NaN = not recorded.
        self.fpc_path = torch.full((0, max(self.num_steps - 1, 0), self.num_joints, 2), float("nan"))

    # ------------------------------------------------------------------ the IEF loop
    def correct(self, image: torch.Tensor, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step from ``pose`` ``(B, K, 2)``: (raw correction in units of L, next pose, moved <= L) ``(B, K, 2)``."""
        raw = self.net(image, pose)
        return raw, pose + self.step_bound_px * project_to_disc(raw)

    def initial_pose(self, batch_size: int) -> torch.Tensor:
        """``y_0``: the mean pose ``(B, K, 2)`` in crop px."""
        return self.mean_pose.expand(batch_size, -1, -1)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Image ``(B, 3, H, W)`` -> the T raw corrections ``(B, K, 2)`` (units of L) along the model's own path."""
        pose = self.initial_pose(image.shape[0])
        raws = []
        for _ in range(self.num_steps):
            raw, pose = self.correct(image, pose)
            raws.append(raw)
        return raws

    def path_from(self, raws: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Estimates ``y_0 .. y_T`` ``(B, K, 2)`` crop px from the raw corrections of ``forward``."""
        poses = [self.initial_pose(raws[0].shape[0])]
        for raw in raws:
            poses.append(poses[-1] + self.step_bound_px * project_to_disc(raw))
        return poses

    def predict_steps(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Estimates ``y_0 .. y_T`` ``(B, K, 2)`` crop px of ``image`` (no flip test)."""
        return self.path_from(self(image))

    def crop_coordinates(self, outputs: Outputs) -> torch.Tensor:
        """The final estimate ``y_T`` ``(B, K, 2)`` crop px (the base's ``predict_protocols`` flip-tests it)."""
        return self.path_from(_corrections(outputs))[-1]

    # ------------------------------------------------------------------ loss
    def correction_loss(self, raws: Sequence[torch.Tensor], poses: Sequence[torch.Tensor],
                        batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Squared distance of each raw correction to ``e(y, y_t) / L`` at its pose, mean over annotated
        joints and steps; ``raws`` and ``poses`` are matching lists of ``(B, K, 2)``. In fp32 (a bf16-mixed run's
        bf16 corrections are widened; the keypoints are never rounded to bf16)."""
        raws = [raw.float() for raw in raws]
        keypoints = batch["keypoints"].float()
        weight = (batch["visible"] > 0).float()
        losses = []
        for raw, pose in zip(raws, poses, strict=True):
            target = bounded_target(keypoints, pose.detach(), self.step_bound_px) / self.step_bound_px
            losses.append(((project_to_disc(raw) - target) ** 2).sum(-1) * weight)
        return torch.stack(losses).sum() / (weight.sum().clamp(min=1.0) * len(losses))

    def compute_loss(self, outputs: Outputs, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The loss along the model's own path (``outputs`` from ``forward``); FPC training uses ``training_step``."""
        raws = _corrections(outputs)
        return self.correction_loss(raws, self.path_from(raws)[:-1], batch)

    # ------------------------------------------------------------------ Fixed Path Consolidation
    def fpc_round(self, epoch: int) -> int:
        """FPC round (0-based; round r trains steps 0..r) of training epoch ``epoch``."""
        return min(epoch // self.hparams["epochs_per_round"], self.num_steps - 1)

    def _update_mean_pose(self, batch: Mapping[str, torch.Tensor]) -> None:
        visible = (batch["visible"] > 0).to(self._pose_sum.dtype)
        self._pose_sum += (batch["keypoints"].to(self._pose_sum.dtype) * visible[..., None]).sum(0)
        self._pose_count += visible.sum(0)
        seen = self._pose_count > 0
        mean = self._pose_sum / self._pose_count.clamp(min=1.0)[:, None]
        self.mean_pose.copy_(torch.where(seen[:, None], mean, self.mean_pose))

    def _flipped(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``(B,)`` bool: the crop is mirrored (the affine part has a negative determinant)."""
        m = batch["matrix"]
        return (m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]) < 0

    def _to_original_joints(self, pose: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
        """Swap left/right joints of mirrored samples (an involution: also maps back)."""
        return torch.where(flipped[:, None, None], pose[:, self._flip_index], pose)

    def _read_path(self, batch: Mapping[str, torch.Tensor], step: int) -> torch.Tensor:
        """Stored ``y_step`` of the batch's samples in this batch's crop px ``(B, K, 2)``; NaN where unrecorded."""
        index = batch["index"].long()
        out = torch.full((index.numel(), self.num_joints, 2), float("nan"), device=index.device)
        known = index < self.fpc_path.shape[0]
        if bool(known.any()):
            stored = self.fpc_path[index[known].cpu(), step - 1].to(out.device)
            out[known] = stored
        crop = crop_to_image(out, batch["matrix"].float())
        return self._to_original_joints(crop, self._flipped(batch))

    def _write_path(self, batch: Mapping[str, torch.Tensor], step: int, pose: torch.Tensor) -> None:
        index = batch["index"].long().cpu()
        needed = int(index.max()) + 1
        if needed > self.fpc_path.shape[0]:
            grown = torch.full((needed, *self.fpc_path.shape[1:]), float("nan"))
            grown[: self.fpc_path.shape[0]] = self.fpc_path
            self.fpc_path = grown
        image_px = crop_to_image(self._to_original_joints(pose.detach().float(), self._flipped(batch)),
                                 batch["inverse_matrix"].float())
        self.fpc_path[index, step - 1] = image_px.cpu()

    def fpc_poses(self, batch: Mapping[str, torch.Tensor], fpc_round: int) -> list[torch.Tensor]:
        """``y_0 .. y_round`` ``(B, K, 2)`` crop px of the batch on the fixed path (unrecorded steps computed
        from the previous one by the current model, without gradients)."""
        image = batch["image"]
        poses = [self.initial_pose(image.shape[0])]
        for step in range(1, fpc_round + 1):
            stored = self._read_path(batch, step).to(image.dtype)
            missing = torch.isnan(stored).flatten(1).any(1)
            if bool(missing.any()):
                with torch.no_grad():
                    _, fresh = self.correct(image[missing], poses[-1][missing])
                stored[missing] = fresh
            poses.append(stored)
        return poses

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if not bool(self.mean_pose_frozen):
            self._update_mean_pose(batch)
        epoch = self.current_epoch
        fpc_round = self.fpc_round(epoch)
        poses = self.fpc_poses(batch, fpc_round)
        steps = len(poses)
        image = batch["image"]
        # All steps of the round in one pass: the image repeated once per step, with that step's pose.
        raw = self.net(image.repeat(steps, 1, 1, 1), torch.cat(poses))
        raws = list(raw.chunk(steps))
        loss = self.correction_loss(raws, poses, batch)
        last_epoch_of_round = (epoch + 1) % self.hparams["epochs_per_round"] == 0
        if last_epoch_of_round and fpc_round + 1 < self.num_steps:
            self._write_path(batch, fpc_round + 1, poses[-1] + self.step_bound_px * project_to_disc(raws[-1]))
        self.log("train/loss", loss, prog_bar=True, batch_size=image.shape[0])
        self.log("train/fpc_round", float(fpc_round), batch_size=image.shape[0])
        return loss

    def on_train_epoch_end(self) -> None:
        self.mean_pose_frozen.fill_(True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ief_fpc_path"] = self.fpc_path.clone()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "ief_fpc_path" in checkpoint:
            self.fpc_path = checkpoint["ief_fpc_path"].float().cpu()


_MPII: dict[str, Any] = {"num_joints": MPII_JOINTS, "flip_pairs": MPII_FLIP_PAIRS}
register_variant("ief", "ief", input_size=(224, 224), backbone="googlenet", num_steps=4, step_bound=20.0, **_MPII)
register_variant("ief-tiny", "ief", input_size=(64, 64), tiny=True, backbone="tiny", pretrained=False,
                 tiny_width=16, num_steps=4, step_bound=20.0, **_MPII)
