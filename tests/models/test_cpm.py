"""Convolutional Pose Machines: the genProto.py architecture and size, the centre map, the belief-map
targets and loss of the CPM data layer, the flip test without the background map, the prototxt's LR
multipliers, the recipe's arithmetic, and learning on SynthPose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn

import models
from benchmark.config import load_config
from benchmark.metrics import mpii_pckh
from datamodules.datamodule import PoseDataModule
from datamodules.skeletons import MPII
from datamodules.transforms import Augmentation
from models.codecs import flip_heatmaps_back
from models.cpm import (
    ConvolutionalPoseMachine,
    CPMNet,
    belief_targets,
    centre_map,
    pool_centre_map,
)


def _conv_params(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


def _genproto_params(maps: int, stages: int = 6) -> int:
    """Parameters of genProto.py's net (CH 128, nCP 3), written out layer by layer; ``maps`` = K + 1."""
    image_branch = _conv_params(3, 128, 9) + 2 * _conv_params(128, 128, 9)
    stage1 = image_branch + _conv_params(128, 32, 5) + _conv_params(32, 512, 9) + _conv_params(512, 512, 1) \
        + _conv_params(512, maps, 1)
    later = _conv_params(128, 32, 5) + _conv_params(32 + maps + 1, 128, 11) + 2 * _conv_params(128, 128, 11) \
        + _conv_params(128, 128, 1) + _conv_params(128, maps, 1)
    return stage1 + image_branch + (stages - 1) * later


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_released_model_size_and_the_mpii_variant() -> None:
    # The released MPII models have 14 joints + background: 31,219,866 parameters, the "31.2M".
    assert _genproto_params(15) == 31_219_866
    with torch.device("meta"):
        released = CPMNet(num_joints=14)
        model = models.build("cpm")
    assert _count(released) == 31_219_866
    # MPII's 16 joints add 2 maps to every stage's last layer and to stages >= 2's input: +0.5%.
    assert _count(model) == _genproto_params(17) == 31_377_062
    assert abs(_count(model) / 31.2e6 - 1) < 0.02
    assert models.VARIANTS["cpm"].paper_params == 31.2 and models.VARIANTS["cpm"].paper_gflops is None


def test_stage_one_is_the_genproto_layer_sequence() -> None:
    with torch.device("meta"):
        net = CPMNet(num_joints=16)
    convs = [(m.in_channels, m.out_channels, m.kernel_size[0], m.padding[0])
             for m in net.stage1 if isinstance(m, nn.Conv2d)]
    assert convs == [(3, 128, 9, 4), (128, 128, 9, 4), (128, 128, 9, 4), (128, 32, 5, 2), (32, 512, 9, 4),
                     (512, 512, 1, 0), (512, 17, 1, 0)]
    kinds = [type(m).__name__ for m in net.stage1]
    assert kinds == ["Conv2d", "ReLU", "MaxPool2d"] * 3 + ["Conv2d", "ReLU", "Conv2d", "ReLU", "Dropout", "Conv2d",
                                                            "ReLU", "Dropout", "Conv2d"]
    pools = [m for m in net.stage1 if isinstance(m, nn.MaxPool2d)]
    assert all((p.kernel_size, p.stride, p.padding, p.ceil_mode) == (3, 2, 0, True) for p in pools)
    assert [m.p for m in net.stage1 if isinstance(m, nn.Dropout)] == [0.5, 0.5]


def test_later_stages_share_one_image_branch_and_have_large_kernels() -> None:
    with torch.device("meta"):
        net = CPMNet(num_joints=16)
    assert len(net.features) == len(net.refine) == 5
    shared = [(m.in_channels, m.out_channels, m.kernel_size[0]) for m in net.shared if isinstance(m, nn.Conv2d)]
    assert shared == [(3, 128, 9), (128, 128, 9), (128, 128, 9)]
    for features, refine in zip(net.features, net.refine, strict=True):
        assert [(m.in_channels, m.out_channels, m.kernel_size[0]) for m in features if isinstance(m, nn.Conv2d)] \
            == [(128, 32, 5)]
        convs = [(m.in_channels, m.out_channels, m.kernel_size[0]) for m in refine if isinstance(m, nn.Conv2d)]
        # 32 image features + 17 beliefs + 1 centre map in.
        assert convs == [(50, 128, 11), (128, 128, 11), (128, 128, 11), (128, 128, 1), (128, 17, 1)]
        assert not isinstance(refine[-1], nn.ReLU)


def test_caffe_fillers() -> None:
    torch.manual_seed(0)
    net = CPMNet(num_joints=16, stages=2)
    weights = torch.cat([m.weight.detach().flatten() for m in net.modules() if isinstance(m, nn.Conv2d)])
    assert abs(float(weights.std()) - 0.01) < 2e-4
    assert all(bool((m.bias == 0).all()) for m in net.modules() if isinstance(m, nn.Conv2d))


def test_belief_maps_at_stride_eight_from_every_stage() -> None:
    with torch.device("meta"):
        model = models.build("cpm")
        outputs = model(torch.empty(2, 3, 368, 368))
    assert model.output_stride == 8 and model.codec.heatmap_size == (46, 46)
    assert [tuple(o.shape) for o in outputs] == [(2, 17, 46, 46)] * 6
    tiny = models.build("cpm-tiny").eval()
    with torch.no_grad():
        outputs = tiny(torch.randn(1, 3, 128, 128))
    assert [tuple(o.shape) for o in outputs] == [(1, 17, 16, 16)] * 3


def test_centre_map_is_the_sigma_21_gaussian_at_the_crop_centre() -> None:
    maps = centre_map(368, 368, 21.0, dtype=torch.float64)[0, 0]
    assert maps.shape == (368, 368)
    # Crop centre (183.5, 183.5): the four middle pixels are 0.5 px off in x and y.
    assert float(maps[183, 183]) == pytest.approx(np.exp(-0.5 / (2 * 21.0**2)), abs=1e-12)
    assert float(maps[183, 183 + 21]) == pytest.approx(np.exp(-(0.25 + 20.5**2) / (2 * 21.0**2)), abs=1e-12)
    # Below 1% the data layer writes nothing: exp(-d^2 / 2 sigma^2) < 0.01 beyond d = 21 sqrt(2 ln 100) = 63.7;
    # pixel 247 is 63.5 px right of the centre (d = 63.50), pixel 248 64.5 px (d = 64.50).
    assert float(maps[183, 183 + 64]) > 0.01 and float(maps[183, 183 + 65]) == 0.0
    torch.testing.assert_close(maps, maps.flip(-1))
    torch.testing.assert_close(maps, maps.T)


def test_centre_map_pooling_is_caffe_ave_9_stride_8_with_ceil() -> None:
    values = torch.arange(24.0 * 24.0, dtype=torch.float64).reshape(1, 1, 24, 24)
    pooled = pool_centre_map(values)[0, 0]
    assert pooled.shape == (3, 3)
    # Caffe: windows [8 i, min(8 i + 9, 24)), the clipped last window averages its in-image part.
    grid = values[0, 0].numpy()
    expected = np.array([[grid[8 * i:min(8 * i + 9, 24), 8 * j:min(8 * j + 9, 24)].mean() for j in range(3)]
                         for i in range(3)])
    np.testing.assert_allclose(pooled.numpy(), expected, rtol=0, atol=1e-12)
    assert pool_centre_map(centre_map(368, 368, 21.0)).shape == (1, 1, 46, 46)


def test_every_later_stage_sees_features_previous_beliefs_and_centre_map() -> None:
    torch.manual_seed(0)
    net = CPMNet(num_joints=3, stages=3, width=8, head_width=8, branch_width=4, image_kernel=3, stage_kernel=3).eval()
    image = torch.randn(2, 3, 64, 48)
    seen: list[torch.Tensor] = []
    for refine in net.refine:
        refine.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        beliefs = net(image)
        shared = net.shared(image)
        centre = pool_centre_map(centre_map(64, 48, 21.0))
    assert len(beliefs) == 3 and len(seen) == 2
    for t, stage_input in enumerate(seen):
        assert stage_input.shape == (2, 4 + 4 + 1, 8, 6)
        torch.testing.assert_close(stage_input[:, :4], net.features[t](shared))
        torch.testing.assert_close(stage_input[:, 4:8], beliefs[t])
        torch.testing.assert_close(stage_input[:, 8:], centre.expand(2, -1, -1, -1))


def test_background_target_is_one_minus_the_joint_maximum_clipped_at_zero() -> None:
    joints = torch.tensor([[[[1.0, 0.2], [0.0, 0.0]], [[0.5, 0.7], [0.0, 1.3]]]])
    targets = belief_targets(joints)
    assert targets.shape == (1, 3, 2, 2)
    torch.testing.assert_close(targets[:, :2], joints)
    torch.testing.assert_close(targets[0, 2], torch.tensor([[0.0, 0.3], [1.0, 0.0]]))


def _tiny(**overrides) -> ConvolutionalPoseMachine:
    return models.build("cpm-tiny", **overrides)


def test_loss_is_caffe_euclidean_over_all_maps_summed_over_stages() -> None:
    torch.manual_seed(0)
    model = _tiny()
    keypoints = torch.tensor([[[20.0, 30.0]] * 16, [[100.0, 60.0]] * 16])
    visible = torch.ones(2, 16)
    visible[1, 3] = 0.0
    batch = {"keypoints": keypoints, "visible": visible}
    outputs = [torch.randn(2, 17, 16, 16) for _ in range(3)]
    # Unrounded Gaussian of sigma 7 crop px at heatmap px (x + 0.5) / 8 - 0.5; nothing for joint 3 of sample 1.
    grid = torch.arange(16.0)
    centre = (keypoints + 0.5) / 8 - 0.5
    gauss = torch.exp(-((grid - centre[..., 0:1]) ** 2)[..., None, :] / (2 * 0.875**2)
                      - ((grid - centre[..., 1:2]) ** 2)[..., :, None] / (2 * 0.875**2))
    gauss = gauss * visible[..., None, None]
    targets = torch.cat([gauss, (1 - gauss.amax(1, keepdim=True)).clamp_min(0)], dim=1)
    expected = sum(((o - targets) ** 2).sum() / (2 * 2) for o in outputs)
    torch.testing.assert_close(model.compute_loss(outputs, batch), expected, rtol=1e-5, atol=1e-3)
    # The unlabelled map is still supervised (towards zero), unlike JointsMSE's zero weight.
    bumped = [o.clone() for o in outputs]
    bumped[0][1, 3] += 1.0
    assert float(model.compute_loss(bumped, batch)) > float(model.compute_loss(outputs, batch)) + 1.0


class _FixedMaps(nn.Module):
    """A perfectly mirror-equivariant stand-in: ``maps`` for ``image``, their mirror for the flipped image."""

    def __init__(self, image: torch.Tensor, maps: torch.Tensor, mirrored: torch.Tensor) -> None:
        super().__init__()
        self.image, self.maps, self.mirrored = image, maps, mirrored

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return [self.maps if torch.equal(image, self.image) else self.mirrored]


def test_flip_test_swaps_joints_and_never_decodes_the_background() -> None:
    model = _tiny(decoder="argmax")
    image = torch.randn(1, 3, 128, 128)
    maps = torch.zeros(1, 17, 16, 16)
    peaks = [(j % 16, (3 * j) % 16) for j in range(16)]
    for j, (x, y) in enumerate(peaks):
        maps[0, j, y, x] = 0.5
    maps[0, 16] = 2.0  # the background dominates every joint map everywhere
    perm = model.flip_permutation
    mirrored = torch.cat([maps[:, :16].flip(-1)[:, perm], maps[:, 16:].flip(-1)], dim=1)
    model.net = _FixedMaps(image, maps, mirrored)
    keypoints, scores = model.predict_crop(image)
    assert keypoints.shape == (1, 16, 2) and scores.shape == (1, 16)
    expected = torch.tensor([[x * 8 + 3.5, y * 8 + 3.5] for x, y in peaks])
    torch.testing.assert_close(keypoints[0], expected)
    torch.testing.assert_close(scores[0], torch.full((16,), 0.5))
    heatmaps = model.predict_heatmaps(image)
    torch.testing.assert_close(heatmaps, 0.5 * (maps[:, :16] + flip_heatmaps_back(mirrored[:, :16], perm)))


def test_optimizer_uses_the_prototxt_lr_and_decay_multipliers() -> None:
    model = _tiny(optimizer="sgd", lr=8e-5, weight_decay=5e-4)
    optimizer = model.build_optimizer()
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
    stage1 = {id(p) for p in model.net.stage1.parameters()}
    seen = []
    for group in optimizer.param_groups:
        for param in group["params"]:
            seen.append(id(param))
            is_bias = param.ndim == 1
            lr = 8e-5 * (5.0 if id(param) in stage1 else 1.0) * (2.0 if is_bias else 1.0)
            assert group["lr"] == pytest.approx(lr, rel=1e-12)
            assert group["weight_decay"] == (0.0 if is_bias else 5e-4)
    assert sorted(seen) == sorted(id(p) for p in model.parameters())


def test_recipe_scales_the_official_schedule_to_epochs() -> None:
    cfg = load_config(["recipe=cpm_mpii_368"])
    assert cfg.model.variant == "cpm" and cfg.model.input_size == [368, 368]
    assert (cfg.optim.optimizer, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == ("sgd", 8e-5, 0.9, 5e-4)
    # 136,106 and 600,000 iterations of batch 16 over MPII's 22,246 training people.
    step = 136_106 * 16 / 22_246
    assert cfg.optim.milestones == [round(step * i) for i in range(1, 5)] and cfg.optim.gamma == 0.333
    assert cfg.trainer.max_epochs == round(600_000 * 16 / 22_246) and cfg.data.batch_size == 16
    assert cfg.augmentation.rotation_max == 40.0 and cfg.augmentation.rotation_prob == 1.0
    assert cfg.augmentation.scale_mode == "linear" and cfg.augmentation.scale_max == pytest.approx(0.3)
    # The paper's number for this (Caffe) recipe is an MPII test-server one: not comparable, no verdict.
    assert (cfg.reference.value, cfg.reference.split) == (88.5, "test")


def _pckh(model: pl.LightningModule, datamodule: PoseDataModule, tmp_path: Path) -> float:
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    outputs = trainer.predict(model, datamodule=datamodule)
    index = torch.cat([o["index"] for o in outputs]).numpy()
    pred = np.empty((len(index), 16, 2), dtype=np.float32)
    pred[index] = torch.cat([o["keypoints"] for o in outputs]).numpy()
    truth = datamodule.val_dataset.mpii_ground_truth
    return mpii_pckh(pred, truth.joints, ~truth.missing, truth.headboxes)["Mean"]


@pytest.mark.slow
def test_cpm_tiny_learns_on_synthpose(synthpose_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    datamodule = PoseDataModule(name="synthpose", root=synthpose_root, format="mpii", input_size=(128, 128),
                                batch_size=16, val_batch_size=60, seed=0, augmentation=Augmentation(flip=True))
    datamodule.setup("fit")
    # Settings that make the plain (BatchNorm-free) tiny net learn within the CPU budget: PyTorch's
    # initialisation, no dropout, a wider target Gaussian (16 crop px) and Adam.
    model = models.build("cpm-tiny", num_joints=MPII.num_joints, flip_pairs=[list(p) for p in MPII.flip_pairs],
                         caffe_init=False, dropout=0.0, sigma=2.0, optimizer="adam", lr=2e-3, schedule="none")
    untrained = _pckh(model, datamodule, tmp_path)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, use_distributed_sampler=False,
                         default_root_dir=tmp_path, max_steps=250, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(model, datamodule=datamodule)
    trained = _pckh(model, datamodule, tmp_path)
    # An untrained network scores about 1.6% here; these settings reached about 12% after 250 steps when
    # calibrated (about the image-blind mean pose of tests/models/test_learning.py, ~13%). The threshold
    # only proves that training moves the predictions onto the joints, not that CPM-tiny beats the mean pose.
    assert untrained < 4.0
    assert trained >= 6.0, f"PCKh@0.5 {trained:.1f} after training (untrained {untrained:.1f})"
