"""The shared LightningModule of every method: optimiser, LR schedule, steps, flip test, output contract.

A method subclasses ``PoseEstimator`` (or ``HeatmapEstimator`` for the heatmap family), builds
its network as the plain ``nn.Module`` attribute ``self.net`` and supplies ``compute_loss`` and
``predict_crop``; the base does the rest (the Lightning style: the network is a plain module, the
LightningModule holds the method). Constructors take typed keyword arguments only and never
seed; hyper-parameters are saved as plain containers so checkpoints load with
``torch.load(weights_only=True)``.

Step outputs (validation, test and predict; the evaluation callback's input):
``{"index": (B,) int64, "keypoints": (B, K, 2) float32 IMAGE px, "scores": (B, K) float32}``,
keypoints mapped from crop pixels with the batch's ``inverse_matrix`` ``(B, 2, 3)``, under the
configured protocol (``decoder``, ``flip_test``). With ``all_protocols`` the test step adds
``"protocol_keypoints": (B, P, K, 2)`` and ``"protocol_scores": (B, P, K)``: the same forward
passes (one plain, one mirrored) decoded under every ``(decoder, flip test)`` pair of
``evaluation_protocols`` (P of them), so a decoding / flip-test ablation costs no extra
training and only one extra forward pass.

Sources:

- Loss: HRNet official code (leoxiaobin/deep-high-resolution-net.pytorch) ``lib/core/loss.py``
  ``JointsMSELoss`` with ``use_target_weight``: ``0.5 * MSE(pred * w, gt * w)`` averaged over joints,
  the MSE a mean over batch and heatmap pixels. Intermediate supervision: the same loss summed
  over the stage outputs, as the Stacked Hourglass code does (Newell et al. ECCV'16 Sec. 3.4;
  bearpaw/pytorch-pose ``example/main.py`` ``train``: ``loss += criterion(o, target, target_weight)``).
- Flip test: HRNet ``lib/core/function.py`` ``validate``: the mirrored crop's heatmaps are flipped
  back with the joints swapped (optionally shifted one pixel, ``TEST.SHIFT_HEATMAP``) and averaged
  with the heatmaps of the crop (``models.codecs.flip_heatmaps_back``).
- Optimisers: Adam (SimpleBaseline/HRNet, ``lib/core/optimizer`` in ``train.py``), RMSprop with
  alpha 0.99 and eps 1e-8 (Torch7 ``optim.rmsprop`` defaults used by umich-vl/pose-hg-train; no
  momentum), SGD with momentum (CPM). Multi-step decay per epoch (HRNet ``MultiStepLR``), cosine
  annealing and linear warm-up (mmpose recipes) are applied per optimiser step here, so warm-up
  can last a fraction of an epoch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.types import OptimizerLRSchedulerConfig
from torch import nn

from models.codecs import DECODE_METHODS, HeatmapCodec, flip_coordinates, flip_heatmaps_back, full_precision
from pixelgrid import CONVENTIONS, DEFAULT_CONVENTION, get_convention

OPTIMIZERS: tuple[str, ...] = ("adam", "rmsprop", "sgd")
SCHEDULES: tuple[str, ...] = ("multistep", "cosine", "none")

Outputs = torch.Tensor | list[torch.Tensor]
Protocol = tuple[str, bool]
"""An evaluation protocol of the model's outputs: ``(decoder, flip_test)``."""
REGRESSION = "regression"
"""The decoder name of methods that output coordinates (nothing to decode)."""


def _plain(value: Any) -> Any:
    """``value`` as built-in containers and scalars (checkpoints must load with ``weights_only=True``)."""
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, Sequence):
        return [_plain(item) for item in value]
    raise TypeError(f"hyper-parameter value {value!r} of type {type(value).__name__} is not a plain container")


def flip_permutation(flip_pairs: Sequence[Sequence[int]], num_joints: int) -> list[int]:
    """``(K,)`` joint permutation of a mirrored image: ``perm[a] = b`` and ``perm[b] = a`` for every pair."""
    perm = list(range(num_joints))
    seen: set[int] = set()
    for pair in flip_pairs:
        if len(pair) != 2:
            raise ValueError(f"flip pair {list(pair)} must hold exactly two joint indices")
        a, b = int(pair[0]), int(pair[1])
        if not (0 <= a < num_joints and 0 <= b < num_joints) or a == b or a in seen or b in seen:
            raise ValueError(f"flip pair {[a, b]} is invalid for {num_joints} joints (out of range or repeated)")
        seen.update((a, b))
        perm[a], perm[b] = b, a
    return perm


@full_precision
def crop_to_image(points: torch.Tensor, inverse_matrix: torch.Tensor) -> torch.Tensor:
    """Crop-pixel points ``(B, K, 2)`` -> image pixels ``(B, K, 2)`` with ``inverse_matrix`` ``(B, 2, 3)``, in fp32
    (or float64) whatever the autocast."""
    points = points if points.dtype == torch.float64 else points.float()
    matrix = inverse_matrix.to(points.dtype)
    return torch.einsum("bij,bkj->bki", matrix[:, :, :2], points) + matrix[:, None, :, 2]


@dataclasses.dataclass
class LRFactor:
    """LR multiplier at optimiser step ``step``: warm-up x decay (``torch.optim.lr_scheduler.LambdaLR``).

    Multi-step: ``gamma ** (number of milestones <= current epoch)``; cosine: ``0.5 (1 + cos(pi t / T))``
    with ``t`` the fractional epoch and ``T = total_epochs``; linear warm-up over the first
    ``warmup_epochs``: ``(step + 1) / warm-up steps``. Plain fields, so the scheduler's state dict
    (which stores a callable object's ``__dict__``) stays loadable with ``weights_only=True``.
    """

    steps_per_epoch: int
    schedule: str = "none"
    milestones: list[int] = dataclasses.field(default_factory=list)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    total_epochs: int | None = None

    def __call__(self, step: int) -> float:
        if self.schedule == "multistep":
            epoch = step // self.steps_per_epoch
            factor = self.gamma ** sum(epoch >= milestone for milestone in self.milestones)
        elif self.schedule == "cosine":
            assert self.total_epochs, "the cosine schedule needs total_epochs (checked by lr_factor)"
            progress = min(step / (self.steps_per_epoch * self.total_epochs), 1.0)
            factor = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            factor = 1.0
        warmup_steps = self.warmup_epochs * self.steps_per_epoch
        if step < warmup_steps:
            factor *= (step + 1) / warmup_steps
        return factor


class PoseEstimator(pl.LightningModule):
    """Base of every method: optimiser and schedule, training/evaluation steps, the output contract.

    Subclasses set ``self.net`` (a plain ``nn.Module``) and implement ``compute_loss`` and
    ``predict_crop``. ``input_size`` is (H, W); ``flip_pairs`` are the dataset's left/right joint
    pairs; ``momentum`` is SGD's, ``alpha``/``eps`` are RMSprop's; ``milestones`` and
    ``warmup_epochs`` are in epochs; ``max_epochs`` (default: the Trainer's) is the cosine period.
    ``convention`` (``pixelgrid``) is the pixel grid the model's targets, flip test and decoding use
    (and the data module's crops must use): ``aligned`` (PoseBench's own; a mirrored pass flipped
    back coincides, no shift), or ``msra`` / ``udp`` to train or score like the published
    checkpoints (``msra`` shifts the flipped-back heatmaps one pixel, HRNet's SHIFT_HEATMAP).
    ``conventions`` lists those a method supports.
    ``all_protocols`` makes the test step score every ``(decoder, flip test)`` pair as well.

    Coordinate regressors implement ``crop_coordinates``; heatmap methods use ``HeatmapEstimator``.
    ``decoders`` lists the decoders a method's output can go through.
    """

    decoders: tuple[str, ...] = (REGRESSION,)
    predicts_visibility: bool = False
    """True where the per-joint ``scores`` of the predictions are joint-presence probabilities."""
    conventions: tuple[str, ...] = (DEFAULT_CONVENTION,)
    net: nn.Module
    """The plain network a subclass sets in its constructor."""

    def __init__(
        self,
        *,
        num_joints: int,
        input_size: Sequence[int],
        flip_pairs: Sequence[Sequence[int]],
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        alpha: float = 0.99,
        eps: float = 1e-8,
        schedule: str = "multistep",
        milestones: Sequence[int] = (),
        gamma: float = 0.1,
        warmup_epochs: float = 0.0,
        max_epochs: int | None = None,
        flip_test: bool = True,
        convention: str = DEFAULT_CONVENTION,
        decoder: str = "dark",
        all_protocols: bool = True,
    ) -> None:
        super().__init__()
        # Records the arguments of this constructor and of every subclass constructor.
        self.save_hyperparameters()
        for key, value in list(self.hparams.items()):
            self.hparams[key] = _plain(value)
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
        if decoder not in DECODE_METHODS and decoder not in self.decoders:
            valid = dict.fromkeys((*DECODE_METHODS, *self.decoders))
            raise ValueError(f"unknown decoder {decoder!r}; valid: {', '.join(valid)}")
        if convention not in CONVENTIONS:
            raise ValueError(f"unknown convention {convention!r}; valid: {', '.join(CONVENTIONS)}")
        if convention not in self.conventions:
            raise ValueError(f"{type(self).__name__} supports the pixel-grid convention(s) "
                             f"{', '.join(self.conventions)}, not {convention!r}")
        if num_joints < 1:
            raise ValueError(f"num_joints must be >= 1, got {num_joints}")
        if len(input_size) != 2 or min(input_size) <= 0:
            raise ValueError(f"input_size must be a positive (H, W), got {list(input_size)}")
        if lr <= 0 or warmup_epochs < 0:
            raise ValueError(f"lr must be > 0 and warmup_epochs >= 0, got lr={lr}, warmup_epochs={warmup_epochs}")
        self.num_joints = int(num_joints)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.flip_permutation = flip_permutation(flip_pairs, self.num_joints)
        self.convention = get_convention(convention)

    def forward(self, image: torch.Tensor) -> Outputs:
        """Image ``(B, 3, H, W)`` -> the network's output (a list = stage outputs, the last is final)."""
        return self.net(image)

    def compute_loss(self, outputs: Outputs, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Scalar training loss of ``outputs`` against targets built from ``batch`` (keypoints, visible)."""
        raise NotImplementedError

    @property
    def primary_protocol(self) -> Protocol:
        """The configured ``(decoder, flip_test)``; coordinate regressors have the one decoder ``regression``."""
        decoder = self.hparams["decoder"] if self.hparams["decoder"] in self.decoders else self.decoders[0]
        return decoder, bool(self.hparams["flip_test"])

    @property
    def evaluation_protocols(self) -> list[Protocol]:
        """Every ``(decoder, flip_test)`` pair ``predict_protocols`` scores, flip off before on."""
        return [(decoder, flip) for decoder in self.decoders for flip in (False, True)]

    def crop_coordinates(self, outputs: Outputs) -> torch.Tensor:
        """A coordinate regressor's final estimate ``(B, K, 2)`` crop px from ``self(image)``."""
        raise NotImplementedError

    def predict_protocols(
        self, image: torch.Tensor, outputs: Outputs | None = None, protocols: Sequence[Protocol] | None = None
    ) -> dict[Protocol, tuple[torch.Tensor, torch.Tensor]]:
        """Keypoints ``(B, K, 2)`` crop px and scores ``(B, K)`` of ``image`` under each of ``protocols``
        (default ``evaluation_protocols``), from one plain and, when a protocol flips, one mirrored pass.

        ``outputs``, when given, are ``self(image)`` already computed (saves one forward pass). This
        default serves coordinate regressors: the flip test averages the coordinates of the crop
        with the mirrored crop's, mirrored back with the joints swapped; scores are 1.
        """
        wanted = list(protocols or self.evaluation_protocols)
        keypoints = self.crop_coordinates(self(image) if outputs is None else outputs).float()
        coords = {False: keypoints}
        if any(flip for _, flip in wanted):
            mirrored = self.crop_coordinates(self(image.flip(-1))).float()
            coords[True] = 0.5 * (keypoints + flip_coordinates(mirrored, image.shape[-1], self.flip_permutation))
        scores = torch.ones(keypoints.shape[:2], dtype=keypoints.dtype, device=keypoints.device)
        return {(decoder, flip): (coords[flip], scores) for decoder, flip in wanted}

    def predict_crop(self, image: torch.Tensor, outputs: Outputs | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Image ``(B, 3, H, W)`` -> keypoints ``(B, K, 2)`` crop px and scores ``(B, K)`` under the
        configured protocol (``primary_protocol``, flip test included)."""
        primary = self.primary_protocol
        return self.predict_protocols(image, outputs, [primary])[primary]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The saved weights replace any ImageNet initialisation, so rebuilding the model from the
        checkpoint (``load_from_checkpoint``) must not download it again: ``pretrained`` is saved
        off. The run's config and record keep what the training started from."""
        hparams = checkpoint.get("hyper_parameters")
        if isinstance(hparams, dict) and "pretrained" in hparams:
            hparams["pretrained"] = False

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.compute_loss(self(batch["image"]), batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def _evaluation_step(self, batch: Mapping[str, torch.Tensor], stage: str) -> dict[str, torch.Tensor]:
        outputs = self(batch["image"])
        loss = self.compute_loss(outputs, batch)
        self.log(f"{stage}/loss", loss, batch_size=batch["image"].shape[0], sync_dist=True)
        if stage != "test" or not self.hparams["all_protocols"]:
            return self._step_output(batch, *self.predict_crop(batch["image"], outputs))
        protocols = self.evaluation_protocols
        predicted = self.predict_protocols(batch["image"], outputs, protocols)
        step = self._step_output(batch, *predicted[self.primary_protocol])
        every = [self._step_output(batch, *predicted[protocol]) for protocol in protocols]
        step["protocol_keypoints"] = torch.stack([out["keypoints"] for out in every], dim=1)
        step["protocol_scores"] = torch.stack([out["scores"] for out in every], dim=1)
        return step

    def _step_output(self, batch: Mapping[str, torch.Tensor], keypoints: torch.Tensor,
                     scores: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "index": batch["index"].long(),
            "keypoints": crop_to_image(keypoints.float(), batch["inverse_matrix"].float()),
            "scores": scores.float(),
        }

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluation_step(batch, "val")

    def test_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluation_step(batch, "test")

    def predict_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._step_output(batch, *self.predict_crop(batch["image"]))

    def build_optimizer(self) -> torch.optim.Optimizer:
        """The optimiser named by ``optimizer`` over all parameters."""
        hp = self.hparams
        if hp["optimizer"] == "adam":
            return torch.optim.Adam(self.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
        if hp["optimizer"] == "rmsprop":
            return torch.optim.RMSprop(self.parameters(), lr=hp["lr"], alpha=hp["alpha"], eps=hp["eps"],
                                       weight_decay=hp["weight_decay"])
        return torch.optim.SGD(self.parameters(), lr=hp["lr"], momentum=hp["momentum"],
                               weight_decay=hp["weight_decay"])

    def lr_factor(self, steps_per_epoch: int, total_epochs: int | None) -> LRFactor:
        """The schedule as a function of the optimiser step, for ``steps_per_epoch`` steps per epoch."""
        hp = self.hparams
        epochs = hp["max_epochs"] if hp["max_epochs"] is not None else total_epochs
        if hp["schedule"] == "cosine" and (epochs is None or epochs <= 0):
            raise ValueError("schedule 'cosine' needs max_epochs (the model's or the Trainer's)")
        return LRFactor(steps_per_epoch=max(1, int(steps_per_epoch)), schedule=hp["schedule"],
                        milestones=[int(m) for m in hp["milestones"]], gamma=float(hp["gamma"]),
                        warmup_epochs=float(hp["warmup_epochs"]), total_epochs=epochs)

    def _training_batches(self) -> int | float:
        """Training batches per epoch (after ``limit_train_batches``), for sizing the LR schedule.

        Lightning sets optimisers up before it loads the training data and, on a resume, before it
        restores the loops. With a data module the loader's length is taken from a loader built
        for the purpose, so Lightning's own training loader is still created after the restore,
        at the restored epoch (datamodules/datamodule.py); without one, Lightning's data setup is
        run early (the loaders passed to ``fit`` have no epoch-dependent order to get wrong).
        """
        trainer = self.trainer
        datamodule = trainer.datamodule  # type: ignore[attr-defined]  # set by Lightning's data connector, undeclared
        if trainer.train_dataloader is None and datamodule is not None:
            length = len(datamodule.train_dataloader())
            limit = trainer.limit_train_batches
            return min(length, limit) if isinstance(limit, int) else int(length * limit)
        if trainer.train_dataloader is None:
            trainer.fit_loop.setup_data()
        return trainer.num_training_batches

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        optimizer = self.build_optimizer()
        trainer = self.trainer
        batches = self._training_batches()
        if math.isinf(batches):
            if self.hparams["schedule"] != "none" or self.hparams["warmup_epochs"] > 0:
                schedule = self.hparams["schedule"]
                raise ValueError(f"schedule {schedule!r} and warm-up need a training dataloader with a length")
            batches = 1
        steps_per_epoch = math.ceil(batches / trainer.accumulate_grad_batches)
        max_epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else None
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_factor(steps_per_epoch, max_epochs))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def init_heatmap_weights(network: nn.Module) -> None:
    """The HRNet/SimpleBaseline initialisation: (transposed) convolutions ~ N(0, 0.001) with zero bias,
    BatchNorm weight 1 and bias 0, so the initial heatmaps are near zero (``init_weights`` in
    ``pose_resnet.py`` and ``pose_hrnet.py``)."""
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, std=0.001)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def joints_mse_loss(heatmaps: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """HRNet ``JointsMSELoss``: ``0.5 * mean((w * (pred - gt))^2)`` over ``(B, K, h, w)``; weights ``(B, K)``."""
    weight = weights[:, :, None, None].to(heatmaps.dtype)
    return 0.5 * ((heatmaps - targets) * weight).pow(2).mean()


def _final(outputs: Outputs) -> torch.Tensor:
    return outputs[-1] if isinstance(outputs, (list, tuple)) else outputs


class HeatmapEstimator(PoseEstimator):
    """The heatmap family once: ``HeatmapCodec`` targets on the device, JointsMSE with intermediate
    supervision, decoding with ``decoder`` and the heatmap flip test.

    The network outputs heatmaps ``(B, K, H / s, W / s)`` (``s = output_stride``, a class attribute),
    or a list of them (one per stage). ``sigma`` is the target Gaussian's in heatmap pixels;
    ``unbiased_encoding`` selects DARK's sub-pixel targets.
    """

    output_stride: int = 4
    decoders = DECODE_METHODS
    conventions = CONVENTIONS

    def __init__(self, *, sigma: float = 2.0, unbiased_encoding: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        height, width = self.input_size
        if height % self.output_stride or width % self.output_stride:
            raise ValueError(f"input_size {[height, width]} must be divisible by the output stride "
                             f"{self.output_stride}")
        self.heatmap_size = (height // self.output_stride, width // self.output_stride)
        self.codec = HeatmapCodec(self.input_size, self.heatmap_size, sigma, unbiased=unbiased_encoding,
                                  convention=self.convention)

    def compute_loss(self, outputs: Outputs, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        stages = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        targets, weights = self.codec.encode(batch["keypoints"], batch["visible"])
        return sum((joints_mse_loss(stage, targets, weights) for stage in stages[1:]),
                   joints_mse_loss(stages[0], targets, weights))

    def final_heatmaps(self, outputs: Outputs) -> torch.Tensor:
        """The ``(B, K, h, w)`` heatmaps predictions decode from ``self(image)``: the last stage's."""
        return _final(outputs)

    def flip_average(self, heatmaps: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``heatmaps`` ``(B, K, h, w)`` of ``image`` averaged with the mirrored pass, flipped back."""
        mirrored = self.final_heatmaps(self(image.flip(-1)))
        return 0.5 * (heatmaps + flip_heatmaps_back(mirrored, self.flip_permutation,
                                                        shift=self.convention.flip_shift))

    def predict_heatmaps(self, image: torch.Tensor, outputs: Outputs | None = None) -> torch.Tensor:
        """Final heatmaps ``(B, K, h, w)`` of ``image``, averaged with the flipped pass when ``flip_test``."""
        heatmaps = self.final_heatmaps(self(image) if outputs is None else outputs)
        return self.flip_average(heatmaps, image) if self.hparams["flip_test"] else heatmaps

    def predict_protocols(
        self, image: torch.Tensor, outputs: Outputs | None = None, protocols: Sequence[Protocol] | None = None
    ) -> dict[Protocol, tuple[torch.Tensor, torch.Tensor]]:
        """Each protocol decodes the final heatmaps, or their average with the mirrored pass (computed once)."""
        wanted = list(protocols or self.evaluation_protocols)
        heatmaps = {False: self.final_heatmaps(self(image) if outputs is None else outputs)}
        if any(flip for _, flip in wanted):
            heatmaps[True] = self.flip_average(heatmaps[False], image)
        return {(decoder, flip): self.codec.decode(heatmaps[flip].float(), method=decoder) for decoder, flip in wanted}
