"""Tompson et al. (models/tompson.py): architecture facts, the spatial model, the crop module, the
fine model's bounded refinement and joint training, and learning on SynthPose."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import models
from benchmark.metrics import mpii_pckh
from datamodules.datamodule import PoseDataModule
from models.base import crop_to_image
from models.tompson import FineModel, SpatialModel, Tompson

SOFTPLUS_MINUS_10 = math.log1p(math.exp(-10.0))

# Learning test: Adam at this rate for this many epochs over the 400 SynthPose training crops.
LEARNING_RATE = 3e-3
EPOCHS = 4
PCKH_THRESHOLD = 15.0


def _conv_params(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def test_paper_variant_layers_and_parameter_count() -> None:
    with torch.device("meta"):
        model = models.build("tompson")
        outputs = model.net.coarse(torch.empty(2, 3, 256, 256))
    convs = [(m.in_channels, m.out_channels, m.kernel_size[0]) for m in model.net.full_bank.modules()
             if isinstance(m, nn.Conv2d)]
    # Sec. 3: 5x5 conv 128, 5x5 conv 128, 5x5 conv 128, 9x9 conv 512 (pooling after the first two).
    assert convs == [(3, 128, 5), (128, 128, 5), (128, 128, 5), (128, 512, 9)]
    head = list(model.net.head)
    assert isinstance(head[0], nn.Dropout2d)  # SpatialDropout before the 1x1 convolutions
    assert [(m.in_channels, m.out_channels, m.kernel_size[0]) for m in head if isinstance(m, nn.Conv2d)] == [
        (512, 256, 1), (256, 256, 1), (256, 16, 1)]
    assert [tuple(o.shape) for o in outputs] == [(2, 16, 64, 64)] * 2
    # Cropped maps: strides 2 and 4 of the full bank, 4 and 8 of the half bank.
    assert [tuple(f.shape[-3:]) for f in outputs.features] == [(128, 128, 128), (128, 64, 64), (128, 64, 64),
                                                                (128, 32, 32)]
    tower = (_conv_params(3, 128, 5) + 2 * _conv_params(128, 128, 5) + _conv_params(128, 512, 9))
    head_params = _conv_params(512, 256, 1) + _conv_params(256, 256, 1) + _conv_params(256, 16, 1)
    spatial = 16 * 16 * 63 * 63 + 16 * 16
    fine = _conv_params(512, 128, 1) + 2 * _conv_params(128, 128, 3) + 16 * 128 + 16
    assert sum(p.numel() for p in model.parameters()) == 2 * tower + head_params + spatial + fine
    assert model.hparams.sigma == 1.5 and model.codec.sigma == 1.5
    assert (model.net.fine.window, model.net.fine.grid) == (72.0, 36)


def test_spatial_model_switch() -> None:
    with_spatial = models.build("tompson-tiny")
    without = models.build("tompson-tiny", spatial_model=False)
    assert without.net.spatial is None and isinstance(with_spatial.net.spatial, SpatialModel)
    image = torch.randn(2, 3, 128, 128)
    assert len(with_spatial(image)) == 2 and len(without(image)) == 1
    assert (sum(p.numel() for p in with_spatial.parameters()) - sum(p.numel() for p in without.parameters())
            == 16 * 16 * 7 * 7 + 16 * 16)


def test_spatial_model_values_by_hand() -> None:
    # Joint 0 has a single unit peak at (y, x) = (5, 4); joint 1 is empty. At initialisation the self
    # prior is a unit delta (SoftPlus(w) = 1 at the centre, s = SoftPlus(-10) elsewhere), self bias s,
    # cross priors s everywhere with bias SoftPlus(b) = 1.
    spatial = SpatialModel(num_joints=2, kernel=3)
    heatmaps = torch.zeros(1, 2, 9, 9)
    heatmaps[0, 0, 5, 4] = 1.0
    heatmaps[0, 1] = -1.0  # ReLU'd away
    out = spatial(heatmaps)[0].detach().double()
    s = SOFTPLUS_MINUS_10
    # out_0 = (w_0|0 * e_0 + s) * (w_0|1 * 0 + 1)
    assert out[0, 5, 4].item() == pytest.approx(1.0 + s, rel=1e-6)
    assert out[0, 5, 5].item() == pytest.approx(2 * s, rel=1e-5)  # a neighbour: off-centre prior s, + bias s
    assert out[0, 0, 0].item() == pytest.approx(s, rel=1e-5)
    # out_1 = (w_1|0 * e_0 + 1) * (w_1|1 * 0 + s)
    assert out[1, 6, 3].item() == pytest.approx((s + 1.0) * s, rel=1e-5)
    assert out[1, 0, 0].item() == pytest.approx(s, rel=1e-5)


def test_crop_module_samples_the_window_lattice() -> None:
    # Feature maps whose value is the x (channel 0) and y (channel 1) input px of each cell centre:
    # bilinear sampling of a linear function is exact, so the crop returns the lattice coordinates.
    fine = FineModel(in_channels=4, strides=(2, 4), num_joints=2, window=24.0, grid=12, channels=4, batch_norm=False)
    features = []
    for stride in (2, 4):
        cells = (torch.arange(128 // stride, dtype=torch.float32) + 0.5) * stride - 0.5
        features.append(torch.stack([cells.expand(128 // stride, -1), cells[:, None].expand(-1, 128 // stride)])
                        .expand(1, 2, -1, -1).contiguous())
    centres = torch.tensor([[[40.0, 70.0], [63.5, 50.25]]])
    crops = fine.crop(features, centres).view(1, 2, 4, 12, 12)
    lattice = (torch.arange(12, dtype=torch.float32) + 0.5) * 2.0 - 12.0
    for joint in range(2):
        cx, cy = centres[0, joint]
        for channel in (0, 2):
            torch.testing.assert_close(crops[0, joint, channel], (cx + lattice).expand(12, 12))
            torch.testing.assert_close(crops[0, joint, channel + 1], (cy + lattice)[:, None].expand(12, 12))
    # And the decode maps the lattice back: cell (i, j) -> its centre in crop px.
    grid = torch.tensor([[[0.0, 11.0], [5.5, 2.0]]])
    torch.testing.assert_close(fine.to_crop(grid, centres), centres - 12.0 + (grid + 0.5) * 2.0)
    torch.testing.assert_close(fine.to_grid(fine.to_crop(grid, centres), centres), grid)


def test_fine_targets_peak_at_the_ground_truth() -> None:
    model = models.build("tompson-tiny")
    centres = torch.tensor([[[60.0, 60.0], [60.0, 60.0], [60.0, 60.0]]])
    keypoints = torch.tensor([[[63.5, 55.5], [90.0, 60.0], [61.0, 61.0]]])
    visible = torch.tensor([[1.0, 1.0, 0.0]])
    targets, weights = model.fine_targets(keypoints, visible, centres)
    assert targets.shape == (1, 3, 12, 12)
    # Window 24 px on 12 cells of 2 px from 48: 63.5 px is cell (63.5 - 48) / 2 - 0.5 = 7.25 -> peak at 7.
    peak = targets[0, 0].flatten().argmax().item()
    assert (peak % 12, peak // 12) == (7, 3)  # y: (55.5 - 48) / 2 - 0.5 = 3.25
    expected = math.exp(-(0.25**2 + 0.25**2) / (2 * 1.5**2))
    assert targets[0, 0, 3, 7].item() == pytest.approx(expected, rel=1e-6)
    assert weights.tolist() == [[1.0, 0.0, 0.0]]  # outside the window; unannotated


@pytest.mark.parametrize("flip_test", [True, False])
def test_fine_estimate_stays_within_half_the_window(flip_test: bool) -> None:
    torch.manual_seed(0)
    model = models.build("tompson-tiny", flip_test=flip_test, decoder="dark").eval()
    # Random input; random weights scaled up so the fine maps are peaky and not centred.
    with torch.no_grad():
        for p in model.net.fine.parameters():
            p.mul_(20.0)
        coarse, fine, scores = model.predict_stages(torch.randn(4, 3, 128, 128))
    half = model.net.fine.window / 2
    assert ((fine - coarse).abs() <= half).all()
    assert (fine - coarse).abs().amax() > 2.0  # the refinement does move the estimates
    assert scores.shape == (4, 16)


@pytest.mark.parametrize("fine_backprop", [True, False])
def test_fine_loss_reaches_the_shared_features(fine_backprop: bool) -> None:
    torch.manual_seed(0)
    model = models.build("tompson-tiny", fine_backprop=fine_backprop)
    image = torch.randn(2, 3, 128, 128)
    outputs = model.net.coarse(image)
    fine = model.net.fine(outputs.features, torch.full((2, 16, 2), 64.0))
    fine.square().sum().backward()
    tower_grad = model.net.full_bank.stage1[0].weight.grad
    assert (tower_grad is not None and bool(tower_grad.abs().sum() > 0)) is fine_backprop
    assert model.net.head[1].weight.grad is None  # the fine model uses the towers, not the heat-map head
    assert model.net.fine.head_weight.grad.abs().sum() > 0


def test_training_centres_use_coarse_estimates_near_the_truth() -> None:
    model = models.build("tompson-tiny")  # window 24: a quarter window is 6 px
    coarse = torch.tensor([[[50.0, 50.0], [10.0, 10.0], [10.0, 10.0]]])
    truth = torch.tensor([[[53.0, 47.0], [80.0, 12.0], [80.0, 12.0]]])
    centres = model.training_centres(coarse, truth, torch.tensor([[1.0, 1.0, 0.0]]))
    assert centres[0, 0].tolist() == [50.0, 50.0]
    assert ((centres[0, 1] - truth[0, 1]).abs() <= 6.0).all()  # displaced ground truth
    assert centres[0, 2].tolist() == [10.0, 10.0]  # unannotated: the coarse estimate


def _predict(model: Tompson, batches: list[dict]) -> tuple[torch.Tensor, ...]:
    """Coarse and fine crop px ``(N, K, 2)``, fine image px ``(N, K, 2)``, crop px ground truth, visibility."""
    coarse, fine, image_px = [], [], []
    with torch.no_grad():
        for batch in batches:
            c, f, _ = model.predict_stages(batch["image"])
            coarse.append(c)
            fine.append(f)
            image_px.append(crop_to_image(f, batch["inverse_matrix"]))
    truth = torch.cat([b["keypoints"] for b in batches])
    visible = torch.cat([b["visible"] for b in batches]) > 0
    return torch.cat(coarse), torch.cat(fine), torch.cat(image_px), truth, visible


@pytest.mark.slow
def test_tiny_learns_on_synthpose_and_the_fine_model_refines(synthpose_root: Path) -> None:
    start = time.process_time()
    # One thread: these small convolutions gain little from two, and spinning threads cost CPU time.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _learn(synthpose_root, start)
    finally:
        torch.set_num_threads(threads)


def _learn(synthpose_root: Path, start: float) -> None:
    torch.manual_seed(0)
    model = models.build("tompson-tiny", flip_test=False, decoder="argmax")
    data = PoseDataModule(name="synthpose", root=synthpose_root, format="mpii", input_size=model.input_size,
                          batch_size=16, seed=0, shuffle=False)
    data.setup("fit")
    # Unaugmented crops, decoded once and kept in memory: every epoch then costs only the network.
    train = [data.pose_batch(batch) for batch in data.train_dataloader()]
    val = [data.pose_batch(batch) for batch in data.val_dataloader()]
    ground_truth = data.val_dataset.mpii_ground_truth

    def pckh(predictions: torch.Tensor) -> float:
        visible = ~ground_truth.missing
        return mpii_pckh(predictions.numpy(), ground_truth.joints, visible, ground_truth.headboxes)["Mean"]

    model.eval()
    untrained = pckh(_predict(model, val)[2])
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    order = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(EPOCHS):
        for index in torch.randperm(len(train), generator=order).tolist():
            optimizer.zero_grad()
            model.compute_loss(model(train[index]["image"]), train[index]).backward()
            optimizer.step()
    model.eval()
    coarse, fine, image_px, truth, visible = _predict(model, val)
    # The fine model can only correct estimates its window reaches: score the refinement on the val joints
    # whose coarse estimate lies within a quarter window of the truth (the training windows' reach).
    reach = visible & ((coarse - truth).abs() <= model.net.fine.window / 4).all(dim=-1)
    coarse_error = (coarse - truth).norm(dim=-1)[reach]
    fine_error = (fine - truth).norm(dim=-1)[reach]
    trained = pckh(image_px)
    print(f"PCKh@0.5 untrained {untrained:.1f}, trained {trained:.1f}; {int(reach.sum())} of {int(visible.sum())} "
          f"val joints in reach, mean error (crop px) coarse {coarse_error.mean():.2f}, fine {fine_error.mean():.2f};"
          f" all joints coarse {(coarse - truth).norm(dim=-1)[visible].mean():.2f}, fine "
          f"{(fine - truth).norm(dim=-1)[visible].mean():.2f}; CPU {time.process_time() - start:.1f} s")
    # An untrained network scores about 1 PCKh@0.5 here; this training reaches about 24.
    assert trained >= PCKH_THRESHOLD
    # The fine model refines: a lower pixel error than the coarse estimate where its window reaches ...
    assert reach.sum() >= 100 and fine_error.mean() < coarse_error.mean()
    # ... and never moves an estimate by more than half its window per axis.
    assert ((fine - coarse).abs() <= model.net.fine.window / 2).all()
