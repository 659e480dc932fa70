"""DeepPose: the AlexNet layout of the paper, the cascade's crops and simulated inputs, the step contract, learning."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import models
import models.deeppose as deeppose
from models.base import crop_to_image
from models.codecs import flip_coordinates
from models.deeppose import AlexNetRegressor, joint_boxes


def _alexnet_params(channels: list[int], hidden: int, pooled: int, outputs: int) -> int:
    """Weights + biases of conv 11x11 / 5x5 / 3x3 x3, F(hidden) x2 and the 2K output, written out."""
    c1, c2, c3, c4, c5 = channels
    convs = (3 * 121 * c1 + c1) + (c1 * 25 * c2 + c2) + (c2 * 9 * c3 + c3) + (c3 * 9 * c4 + c4) + (c4 * 9 * c5 + c5)
    return convs + (c5 * pooled * pooled * hidden + hidden) + (hidden * hidden + hidden) + (hidden * outputs + outputs)


def test_paper_layer_sizes_at_220() -> None:
    # Sec. 3.1: C(55x55x96) - P - C(27x27x256) - P - C(13x13x384) x2 - C(13x13x256) - P.
    assert AlexNetRegressor.spatial_sizes((220, 220)) == [(55, 55), (27, 27), (13, 13), (6, 6)]
    with torch.device("meta"):
        model = models.build("deeppose")
        feats = model.net.stages[0].features(torch.empty(1, 3, 220, 220))
    assert tuple(feats.shape) == (1, 256, 6, 6)
    convs = [m for m in model.net.stages[0].features if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (96, (11, 11), (4, 4)), (256, (5, 5), (1, 1)), (384, (3, 3), (1, 1)), (384, (3, 3), (1, 1)),
        (256, (3, 3), (1, 1))]
    assert sum(isinstance(m, torch.nn.LocalResponseNorm) for m in model.net.stages[0].features) == 2
    drops = [m.p for m in model.net.stages[0].regressor if isinstance(m, torch.nn.Dropout)]
    assert drops == [0.6, 0.6]
    per_stage = _alexnet_params([96, 256, 384, 384, 256], 4096, 6, 32)
    assert per_stage == 58_412_448  # 3,747,200 conv + 37,752,832 + 16,781,312 + 131,104 F
    assert len(model.net.stages) == 3
    assert sum(p.numel() for p in model.parameters()) == 3 * per_stage


def test_variants() -> None:
    assert models.VARIANTS["deeppose"].input_size == (220, 220) and not models.VARIANTS["deeppose"].modernized
    res50 = models.VARIANTS["deeppose-res50"]
    assert res50.modernized and res50.input_size == (256, 256) and res50.kwargs["stages"] == 1
    with torch.device("meta"):
        model = models.build("deeppose-res50", pretrained=False)
        out = model(torch.empty(2, 3, 256, 256))
    assert [tuple(o.shape) for o in out] == [(2, 16, 2)]
    assert model.net.stages[0].head.in_features == 2048
    tiny = models.VARIANTS["deeppose-tiny"]
    assert tiny.tiny and tiny.kwargs["stages"] == 2 and tiny.input_size == (96, 96)


def test_joint_boxes_follow_the_pixel_centre_convention() -> None:
    centres = torch.tensor([[[10.0, 20.0], [3.0, 4.0]]])
    boxes = joint_boxes(centres, (8.0, 6.0))
    # roi_align(aligned=True) puts pixel i at [i, i + 1]: centre 10 -> 10.5.
    expected = torch.tensor([[0.0, 6.5, 17.5, 14.5, 23.5], [0.0, -0.5, 1.5, 7.5, 7.5]])
    torch.testing.assert_close(boxes, expected)


def test_crop_samples_the_image_at_the_expected_points() -> None:
    # Channels 0/1 hold each pixel's x/y: bilinear sampling of a linear ramp is exact, so every crop
    # pixel reads its own source coordinate, x1 + (j + 0.5) * w / W in the project's convention.
    torch.manual_seed(0)
    model = models.build("deeppose-tiny").eval()
    height, width = model.input_size
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    image = torch.stack([xs, ys, torch.zeros_like(xs)])[None]
    estimate = torch.full((1, model.num_joints, 2), 0.0)
    estimate[0, 0] = torch.tensor([-0.1, 0.05])
    crops = model.net.crops(image, estimate)
    assert crops.shape == (model.num_joints, 3, height, width)
    centre = model.codec.decode(estimate)[0, 0]
    side = model.net.crop_fraction * width
    grid = centre[0] - side / 2 + (torch.arange(width) + 0.5) * side / width
    torch.testing.assert_close(crops[0, 0, height // 2], grid)
    grid_y = centre[1] - side / 2 + (torch.arange(height) + 0.5) * side / height
    torch.testing.assert_close(crops[0, 1, :, width // 2], grid_y)


def test_stage_two_crops_are_centred_on_stage_one_estimates(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = models.build("deeppose-tiny").eval()
    seen: list[torch.Tensor] = []
    original = deeppose.roi_align

    def spy(image: torch.Tensor, boxes: torch.Tensor, **kwargs: object) -> torch.Tensor:
        seen.append(boxes.clone())
        return original(image, boxes, **kwargs)

    monkeypatch.setattr(deeppose, "roi_align", spy)
    image = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        stage_one, stage_two = model(image)
    assert len(seen) == 1 and seen[0].shape == (3 * model.num_joints, 5)
    boxes = seen[0]
    assert boxes[:, 0].tolist() == [float(b) for b in range(3) for _ in range(model.num_joints)]
    centres = 0.5 * (boxes[:, 1:3] + boxes[:, 3:5]) - 0.5
    expected = model.codec.decode(stage_one).reshape(-1, 2)
    torch.testing.assert_close(centres, expected, rtol=0, atol=1e-5)
    sizes = boxes[:, 3:5] - boxes[:, 1:3]
    torch.testing.assert_close(sizes, torch.full_like(sizes, model.net.crop_fraction * 96))
    # Stage 2 adds its displacement, scaled from crop units to box units.
    with torch.no_grad():
        displacement = model.net.refine(image, stage_one, 1)
    torch.testing.assert_close(stage_two, stage_one + model.net.crop_fraction * displacement)


def test_refiner_reads_output_i_of_joint_i_crop() -> None:
    torch.manual_seed(0)
    model = models.build("deeppose-tiny").eval()
    image = torch.randn(2, 3, 96, 96)
    estimate = torch.rand(2, model.num_joints, 2) - 0.5
    with torch.no_grad():
        out = model.net.refine(image, estimate, 1)
        full = model.net.stages[1](model.net.crops(image, estimate)).view(2, model.num_joints, model.num_joints, 2)
    for b, k in [(0, 0), (0, 5), (1, 15)]:
        torch.testing.assert_close(out[b, k], full[b, k, k])


def test_error_statistics_and_simulated_inputs() -> None:
    torch.manual_seed(0)
    model = models.build("deeppose-tiny", stats_momentum=0.5)
    k = model.num_joints
    errors = torch.randn(64, k, 2) * torch.tensor([0.05, 0.1]) + torch.tensor([0.02, -0.03])
    weights = torch.ones(64, k)
    weights[:, 3] = 0  # an unannotated joint keeps its prior
    model.update_error_statistics(0, errors, weights)
    torch.testing.assert_close(model.error_mean[0, 0], errors[:, 0].mean(0))
    torch.testing.assert_close(model.error_cov[0, 0], torch.cov(errors[:, 0].T, correction=0))
    torch.testing.assert_close(model.error_cov[0, 3], torch.eye(2) * 0.1 ** 2)
    # Second batch: the cumulative average (factor 1/2 here, = stats_momentum as well).
    model.update_error_statistics(0, errors + 1.0, weights)
    torch.testing.assert_close(model.error_mean[0, 0], errors[:, 0].mean(0) + 0.5)

    model.error_mean[0] = torch.tensor([0.1, -0.2])
    model.error_cov[0] = torch.tensor([[0.04, 0.01], [0.01, 0.09]])
    targets = torch.zeros(20000, k, 2)
    draws = model.simulate(0, targets)[:, 0]
    torch.testing.assert_close(draws.mean(0), torch.tensor([0.1, -0.2]), atol=6e-3, rtol=0)
    torch.testing.assert_close(torch.cov(draws.T), torch.tensor([[0.04, 0.01], [0.01, 0.09]]), atol=4e-3, rtol=0)

    previous = torch.full((4000, k, 2), 7.0)
    mixed = model.stage_inputs(0, previous, torch.zeros(4000, k, 2))
    share = (mixed[..., 0] != 7.0).float().mean()
    assert abs(float(share) - model.hparams.simulated_fraction) < 0.02


def test_error_statistics_under_bf16_autocast_are_the_fp32_statistics() -> None:
    """A bf16-mixed run computes the statistics inside autocast, where einsum would round to bf16 and could leave a
    covariance that is not positive semi-definite: they are accumulated in fp32 whatever the autocast."""
    torch.manual_seed(1)
    exact, mixed = models.build("deeppose-tiny"), models.build("deeppose-tiny")
    errors = torch.randn(4, exact.num_joints, 2) * 0.1
    weights = torch.ones(4, exact.num_joints)
    exact.update_error_statistics(0, errors, weights)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed.update_error_statistics(0, errors, weights)
    assert mixed.error_cov.dtype == torch.float32
    torch.testing.assert_close(mixed.error_cov, exact.error_cov)
    torch.testing.assert_close(mixed.error_mean, exact.error_mean)


def test_simulation_survives_a_singular_or_slightly_indefinite_covariance() -> None:
    """Two annotated samples of a joint give a rank-1 covariance, and rounding can push its zero eigenvalue below
    zero, where Cholesky fails: such a joint draws from its covariance's positive semi-definite part instead."""
    torch.manual_seed(0)
    model = models.build("deeppose-tiny")
    k = model.num_joints
    model.error_mean[0] = 0.0
    rank_one = torch.tensor([[0.04, 0.02], [0.02, 0.01]])  # (0.2, 0.1)(0.2, 0.1)^T: singular
    model.error_cov[0] = torch.eye(2) * 0.01
    model.error_cov[0, 1] = rank_one
    model.error_cov[0, 2] = rank_one + torch.tensor([[0.0, 1e-5], [1e-5, 0.0]])  # eigenvalue -8e-6: indefinite
    with pytest.raises(torch.linalg.LinAlgError):
        torch.linalg.cholesky(model.error_cov[0] + 1e-8 * torch.eye(2))
    draws = model.simulate(0, torch.zeros(20000, k, 2))
    assert torch.isfinite(draws).all()
    for joint in (1, 2):  # every draw lies on the line through (0.2, 0.1): x = 2 y
        torch.testing.assert_close(draws[:, joint, 0], 2 * draws[:, joint, 1], atol=2e-3, rtol=0)
        torch.testing.assert_close(torch.cov(draws[:, joint].T), rank_one, atol=2e-3, rtol=0)
    torch.testing.assert_close(torch.cov(draws[:, 0].T), torch.eye(2) * 0.01, atol=1e-3, rtol=0)


def test_each_stage_gets_only_its_own_loss_gradient() -> None:
    torch.manual_seed(0)
    model = models.build("deeppose-tiny").train()
    batch = {"image": torch.randn(2, 3, 96, 96), "keypoints": torch.rand(2, 16, 2) * 95,
             "visible": torch.ones(2, 16)}
    stage_one = model.net.initial(batch["image"])
    targets, weights = model.codec.encode(batch["keypoints"], batch["visible"])
    own = deeppose._stage_loss(stage_one, targets, weights, "l2")
    own.backward()
    expected = [p.grad.clone() for p in model.net.stages[0].parameters()]
    model.zero_grad()
    torch.manual_seed(1)
    model.compute_loss([model.net.initial(batch["image"])], batch).backward()
    for grad, param in zip(expected, model.net.stages[0].parameters(), strict=True):
        torch.testing.assert_close(param.grad, grad)


def test_evaluation_loss_and_flip_test() -> None:
    torch.manual_seed(0)
    model = models.build("deeppose-tiny").eval()
    image = torch.randn(2, 3, 96, 96)
    batch = {"image": image, "keypoints": torch.rand(2, 16, 2) * 95, "visible": torch.ones(2, 16)}
    with torch.no_grad():
        outputs = model(image)
        targets, weights = model.codec.encode(batch["keypoints"], batch["visible"])
        loss = model.compute_loss(outputs, batch)
        sigma = model.net.crop_fraction
        expected = ((outputs[0] - targets) ** 2).sum() / 2 + ((outputs[1] - targets) ** 2).sum() / 2 / sigma ** 2
        torch.testing.assert_close(loss, expected)
        keypoints, scores = model.predict_crop(image)
        plain = model.codec.decode(outputs[-1])
        mirrored = flip_coordinates(model.codec.decode(model(image.flip(-1))[-1]), 96, model.flip_permutation)
    torch.testing.assert_close(keypoints, 0.5 * (plain + mirrored))
    assert torch.equal(scores, torch.ones(2, 16))


def test_tiny_outputs_one_estimate_per_stage() -> None:
    # Gradients, overfitting and the step contract: the registry-wide tests (tests/models/test_methods.py).
    model = models.build("deeppose-tiny")
    outputs = model(torch.randn(2, 3, 96, 96))
    assert [tuple(o.shape) for o in outputs] == [(2, 16, 2)] * 2


# ----------------------------------------------------------------------------- learning on SynthPose

STEPS = 150
BATCH = 16


def _tensors(data, loader: torch.utils.data.DataLoader) -> dict[str, torch.Tensor]:
    batches = [data.pose_batch(batch) for batch in loader]
    return {key: torch.cat([b[key] for b in batches]) for key in ("image", "keypoints", "visible", "inverse_matrix")}


@pytest.mark.slow
def test_tiny_learns_and_the_second_stage_lowers_the_error(synthpose_root: Path) -> None:
    from benchmark.metrics import mean_pixel_error, mpii_pckh
    from datamodules.datamodule import PoseDataModule

    data = PoseDataModule(name="synthpose", root=synthpose_root, format="mpii", input_size=(96, 96),
                          batch_size=100, seed=0, shuffle=False)
    data.setup("fit")
    train, val = _tensors(data, data.train_dataloader()), _tensors(data, data.val_dataloader())
    gt = data.val_dataset.mpii_ground_truth
    flip_pairs = [list(pair) for pair in data.val_dataset.skeleton.flip_pairs]

    torch.manual_seed(0)
    model = models.build("deeppose-tiny", flip_pairs=flip_pairs)

    def scores() -> list[tuple[float, float]]:
        model.eval()
        with torch.no_grad():
            stages = model(val["image"])
        out = []
        for estimate in stages:
            pred = crop_to_image(model.codec.decode(estimate), val["inverse_matrix"]).numpy()
            out.append((mpii_pckh(pred, gt.joints, ~gt.missing, gt.headboxes)["Mean"],
                        mean_pixel_error(pred, gt.joints, ~gt.missing)))
        return out

    untrained = scores()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    perm = model.flip_permutation
    model.train()
    for step in range(STEPS):
        pick = torch.randint(0, train["image"].shape[0], (BATCH,), generator=generator)
        flip = (torch.rand(BATCH, generator=generator) < 0.5)
        image = torch.where(flip[:, None, None, None], train["image"][pick].flip(-1), train["image"][pick])
        keypoints = torch.where(flip[:, None, None], flip_coordinates(train["keypoints"][pick], 96, perm),
                                train["keypoints"][pick])
        visible = torch.where(flip[:, None], train["visible"][pick][:, perm], train["visible"][pick])
        loss = model.training_step({"image": image, "keypoints": keypoints, "visible": visible}, step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    trained = scores()
    # Untrained: about 2% PCKh@0.5 (every joint near the box centre); the tiny regressor reaches about
    # 10-12% in this budget (DeepPose-style regression from scratch learns slowly).
    assert untrained[-1][0] < 4.0
    assert trained[-1][0] > 2.5 * max(untrained[-1][0], 2.0), (untrained, trained)
    assert trained[-1][1] < 0.7 * untrained[-1][1]
    # The refinement stage lowers the mean pixel error of stage 1 on the validation set.
    assert trained[1][1] < trained[0][1], trained
    assert math.isfinite(trained[1][1])
