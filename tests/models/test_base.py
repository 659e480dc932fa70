"""The shared LightningModule: loss, flip test, output mapping, optimisers, LR schedule, checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from models.base import (
    HeatmapEstimator,
    LRFactor,
    crop_to_image,
    flip_permutation,
    joints_mse_loss,
)
from models.codecs import flip_coordinates

FLIP_PAIRS = [[0, 2], [3, 4]]


class Oracle(HeatmapEstimator):
    """A perfect heatmap network for ``truth`` (B, K, 2): it renders the codec's targets of the keypoints,
    mirrored when the image is mirrored (detected by a marker pixel in the top-left corner)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.net = nn.Conv2d(3, 1, 1)  # unused; gives the optimiser tests a parameter
        self.truth = torch.zeros(0)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        mirrored = bool(image[0, 0, 0, 0] == 0)
        points = flip_coordinates(self.truth, self.input_size[1], self.flip_permutation) if mirrored else self.truth
        heatmaps, _ = self.codec.encode(points, torch.ones(points.shape[:2]))
        return heatmaps


def _oracle(**overrides) -> Oracle:
    kwargs = dict(num_joints=5, input_size=[128, 96], flip_pairs=FLIP_PAIRS, unbiased_encoding=True, decoder="dark")
    kwargs.update(overrides)
    return Oracle(**kwargs)


def _marked_image(batch: int) -> torch.Tensor:
    image = torch.zeros(batch, 3, 128, 96)
    image[:, 0, 0, 0] = 1.0
    return image


TRUTH = torch.tensor([[[32.3, 40.0], [60.0, 37.6], [41.1, 80.2], [37.8, 66.3], [52.0, 51.5]]])


def test_joints_mse_matches_the_hrnet_per_joint_loop() -> None:
    generator = torch.Generator().manual_seed(0)
    pred = torch.rand(3, 4, 5, 6, generator=generator)
    target = torch.rand(3, 4, 5, 6, generator=generator)
    weight = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    # HRNet lib/core/loss.py JointsMSELoss: per joint 0.5 * MSE(pred * w, gt * w), averaged over joints.
    reference = 0.0
    for joint in range(4):
        w = weight[:, joint, None]
        p = pred[:, joint].reshape(3, -1) * w
        g = target[:, joint].reshape(3, -1) * w
        reference += 0.5 * torch.mean((p - g) ** 2)
    reference /= 4
    torch.testing.assert_close(joints_mse_loss(pred, target, weight), reference, rtol=1e-6, atol=0)


def test_loss_uses_codec_targets_and_sums_stages() -> None:
    model = _oracle()
    batch = {"keypoints": TRUTH.clone(), "visible": torch.tensor([[1.0, 1.0, 0.0, 1.0, 1.0]])}
    targets, weights = model.codec.encode(batch["keypoints"], batch["visible"])
    assert float(model.compute_loss(targets, batch)) == 0.0
    # An unannotated joint's prediction is not penalised; an annotated one is.
    off = targets.clone()
    off[:, 2] += 1.0
    assert float(model.compute_loss(off, batch)) == 0.0
    off[:, 1] += 1.0
    expected = 0.5 * (1.0 / 5)  # one of five joints wrong by 1 everywhere
    assert math.isclose(float(model.compute_loss(off, batch)), expected, rel_tol=1e-6)
    assert math.isclose(float(model.compute_loss([off, targets, off], batch)), 2 * expected, rel_tol=1e-6)


def test_predict_without_flip_recovers_the_keypoints() -> None:
    model = _oracle(flip_test=False)
    model.truth = TRUTH
    keypoints, scores = model.predict_crop(_marked_image(1))
    torch.testing.assert_close(keypoints, TRUTH, atol=0.02, rtol=0)
    assert (scores > 0.9).all()


@pytest.mark.parametrize(("convention", "expected_dx"), [("aligned", 0.0), ("msra", 0.5), ("udp", 0.0)])
def test_flip_test_averages_the_mirrored_pass(convention: str, expected_dx: float) -> None:
    # A perfect network's mirrored heatmaps, flipped back, coincide with the crop's under the aligned
    # grid (hm = (x + 0.5) / s - 0.5) and UDP's (hm = x (w - 1) / (W - 1)): no bias. Under msra (hm = x / s)
    # the crop mirror x -> W - 1 - x lands at hm = (x - 3) / 4 once flipped back; HRNet's one-pixel shift
    # moves it to (x + 1) / 4, and the average of the two equal Gaussians peaks at (x + 0.5) / 4: +0.5 crop px.
    model = _oracle(flip_test=True, convention=convention)
    model.truth = TRUTH
    keypoints, _ = model.predict_crop(_marked_image(1))
    torch.testing.assert_close(keypoints[..., 0], TRUTH[..., 0] + expected_dx, atol=0.05, rtol=0)
    torch.testing.assert_close(keypoints[..., 1], TRUTH[..., 1], atol=0.02, rtol=0)


def test_crop_to_image_applies_each_samples_matrix() -> None:
    points = torch.tensor([[[1.0, 2.0], [3.0, -1.0]], [[0.0, 0.0], [10.0, 5.0]]])
    matrices = torch.tensor([[[2.0, 0.0, 1.0], [0.0, 2.0, -3.0]], [[0.0, -1.0, 4.0], [1.0, 0.0, 0.5]]])
    expected = torch.tensor([[[3.0, 1.0], [7.0, -5.0]], [[4.0, 0.5], [-1.0, 10.5]]])
    torch.testing.assert_close(crop_to_image(points, matrices), expected)


def test_flip_permutation_swaps_pairs_and_rejects_bad_pairs() -> None:
    assert flip_permutation([[0, 2], [3, 4]], 5) == [2, 1, 0, 4, 3]
    assert flip_permutation([], 3) == [0, 1, 2]
    for bad in ([[0, 5]], [[1, 1]], [[0, 1], [1, 2]], [[0, 1, 2]]):
        with pytest.raises(ValueError, match="flip pair"):
            flip_permutation(bad, 5)


def test_invalid_choices_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'; valid: adam, rmsprop, sgd"):
        _oracle(optimizer="adamw")
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        _oracle(schedule="step")
    with pytest.raises(ValueError, match="unknown decoder 'soft'"):
        _oracle(decoder="soft")
    with pytest.raises(ValueError, match="divisible by the output stride 4"):
        _oracle(input_size=[126, 96])


def test_optimizers_get_their_settings() -> None:
    adam = _oracle(optimizer="adam", lr=0.01, weight_decay=0.1).build_optimizer()
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["lr"] == 0.01 and adam.defaults["weight_decay"] == 0.1
    rms = _oracle(optimizer="rmsprop", lr=2.5e-4, alpha=0.9, eps=1e-6).build_optimizer()
    assert isinstance(rms, torch.optim.RMSprop)
    rms_settings = (rms.defaults["lr"], rms.defaults["alpha"], rms.defaults["eps"], rms.defaults["momentum"])
    assert rms_settings == (2.5e-4, 0.9, 1e-6, 0)
    sgd = _oracle(optimizer="sgd", lr=0.1, momentum=0.8).build_optimizer()
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.8


def test_lr_factor_multistep_cosine_and_warmup() -> None:
    multistep = LRFactor(steps_per_epoch=10, schedule="multistep", milestones=[2, 4], gamma=0.1)
    assert [multistep(s) for s in (0, 19, 20, 39, 40, 100)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01], rel=1e-12)
    cosine = LRFactor(steps_per_epoch=10, schedule="cosine", total_epochs=4)
    assert [cosine(s) for s in (0, 20, 40, 50)] == pytest.approx([1.0, 0.5, 0.0, 0.0], abs=1e-12)
    assert cosine(10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)), rel=1e-12)
    warm = LRFactor(steps_per_epoch=4, schedule="multistep", milestones=[1], gamma=0.5, warmup_epochs=1.5)
    assert [warm(s) for s in range(8)] == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 0.5 * 5 / 6, 0.5, 0.5, 0.5])


class _Tiny(HeatmapEstimator):
    """One 4x4 stride-4 convolution: the smallest real heatmap network."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.net = nn.Conv2d(3, self.num_joints, 4, stride=4)


def _batches(count: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [{
        "image": torch.randn(2, 3, 16, 16, generator=generator),
        "keypoints": torch.rand(2, 5, 2, generator=generator) * 15,
        "visible": torch.ones(2, 5),
        "index": torch.tensor([2 * i, 2 * i + 1]),
        "inverse_matrix": torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(2, 2, 3),
    } for i in range(count)]


def _collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return items[0]


def _trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, **kwargs)


class _LRRecorder(pl.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_schedule_steps_per_optimizer_step_in_a_trainer(tmp_path: Path) -> None:
    model = _Tiny(num_joints=5, input_size=[16, 16], flip_pairs=FLIP_PAIRS, lr=0.1, optimizer="sgd",
                  schedule="multistep", milestones=[1], gamma=0.1, warmup_epochs=0.5)
    recorder = _LRRecorder()
    loader = torch.utils.data.DataLoader(_batches(4), batch_size=1, collate_fn=_collate)
    _trainer(tmp_path, max_epochs=2, callbacks=[recorder], enable_checkpointing=False).fit(model, loader)
    # 4 steps per epoch, warm-up over 2 steps, x0.1 from epoch 1.
    assert recorder.lrs == pytest.approx([0.05, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01], rel=1e-9)


def test_checkpoint_round_trips_with_weights_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _Tiny(num_joints=5, input_size=(16, 16), flip_pairs=((0, 2), (3, 4)), milestones=(3,),
                  schedule="multistep", decoder="argmax")
    loader = torch.utils.data.DataLoader(_batches(3), batch_size=1, collate_fn=_collate)
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(model, loader)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)

    checkpoint = torch.load(path, weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    assert hparams["input_size"] == [16, 16] and hparams["flip_pairs"] == [[0, 2], [3, 4]]
    assert hparams["milestones"] == [3] and hparams["decoder"] == "argmax"
    restored = _Tiny.load_from_checkpoint(path)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(restored.state_dict()[key], value, rtol=0, atol=0)
    batch = _batches(1)[0]
    model.eval()
    restored.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored.predict_step(batch, 0)["keypoints"],
                                   model.predict_step(batch, 0)["keypoints"])

    outputs = _trainer(tmp_path).validate(restored, loader, verbose=False)
    assert set(outputs[0]) == {"val/loss"} and math.isfinite(outputs[0]["val/loss"])


class _Pretrained(_Tiny):
    """``_Tiny`` with a ``pretrained`` flag, as the ImageNet-initialised methods have (no download here)."""

    def __init__(self, pretrained: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)


def test_checkpoints_save_pretrained_off_so_loading_never_downloads(tmp_path: Path) -> None:
    model = _Pretrained(pretrained=True, num_joints=5, input_size=(16, 16), flip_pairs=((0, 2), (3, 4)))
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(model, torch.utils.data.DataLoader(_batches(1), batch_size=1, collate_fn=_collate))
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    assert torch.load(tmp_path / "model.ckpt", weights_only=True)["hyper_parameters"]["pretrained"] is False
    assert model.hparams["pretrained"] is True  # the live model still says how it started
    restored = _Pretrained.load_from_checkpoint(tmp_path / "model.ckpt")
    assert restored.hparams["pretrained"] is False
    for key, value in model.state_dict().items():
        torch.testing.assert_close(restored.state_dict()[key], value, rtol=0, atol=0)


def test_hyperparameters_include_subclass_arguments() -> None:
    model = _Tiny(num_joints=5, input_size=[16, 16], flip_pairs=FLIP_PAIRS, sigma=1.5)
    assert model.hparams["sigma"] == 1.5 and model.hparams["num_joints"] == 5
    assert model.codec.sigma == 1.5 and model.codec.heatmap_size == (4, 4)
