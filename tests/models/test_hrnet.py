"""HRNet: the structure of leoxiaobin/deep-high-resolution-net.pytorch pose_hrnet.py, its size, the
ImageNet weight mapping from timm, and learning on SynthPose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import timm
import torch
from torch import nn

import models
from benchmark.metrics import mpii_pckh
from datamodules.datamodule import PoseDataModule
from datamodules.skeletons import MPII
from datamodules.transforms import Augmentation
from models import pretrained
from models.hrnet import (
    HighResolutionModule,
    HRNet,
    PoseHighResolutionNet,
    copy_timm_weights,
)

# ----------------------------------------------------------------------------- size


def _basic(c: int) -> int:
    """BasicBlock(c): two 3x3 convolutions without bias, two BNs."""
    return 2 * (9 * c * c + 2 * c)


def _fuse(widths: list[int], outputs: int) -> int:
    """Exchange unit: j > i 1x1 conv + BN; j < i (i - j - 1) 3x3 convs keeping w_j, then one 3x3 to w_i, each + BN."""
    count = 0
    for i in range(outputs):
        for j, w in enumerate(widths):
            if j > i:
                count += w * widths[i] + 2 * widths[i]
            elif j < i:
                count += (i - j - 1) * (9 * w * w + 2 * w) + 9 * w * widths[i] + 2 * widths[i]
    return count


def _pose_hrnet_params(c: int, joints: int) -> int:
    """Parameter count of pose_hrnet.py (w32_256x192_adam_lr1e-3.yaml layout), written out layer by layer."""
    stem = 3 * 64 * 9 + 2 * 64 + 64 * 64 * 9 + 2 * 64
    first = 64 * 64 + 128 + 9 * 64 * 64 + 128 + 64 * 256 + 512 + (64 * 256 + 512)  # with the 1x1 projection
    layer1 = first + 3 * (256 * 64 + 128 + 9 * 64 * 64 + 128 + 64 * 256 + 512)
    w = [c, 2 * c, 4 * c, 8 * c]
    transitions = (9 * 256 * w[0] + 2 * w[0]) + (9 * 256 * w[1] + 2 * w[1]) \
        + (9 * w[1] * w[2] + 2 * w[2]) + (9 * w[2] * w[3] + 2 * w[3])
    stage2 = 4 * sum(_basic(x) for x in w[:2]) + _fuse(w[:2], 2)
    stage3 = 4 * (4 * sum(_basic(x) for x in w[:3]) + _fuse(w[:3], 3))
    stage4 = 3 * 4 * sum(_basic(x) for x in w) + 2 * _fuse(w, 4) + _fuse(w, 1)
    return stem + layer1 + transitions + stage2 + stage3 + stage4 + c * joints + joints


@pytest.mark.parametrize(("name", "width", "paper"), [("hrnet-w32", 32, 28.5), ("hrnet-w48", 48, 63.6)])
def test_parameter_count_is_pose_hrnet_and_within_two_percent_of_the_paper(name: str, width: int, paper: float) -> None:
    with torch.device("meta"):
        model = models.build(name, pretrained=False)
    count = sum(p.numel() for p in model.parameters())
    assert count == _pose_hrnet_params(width, 17)
    assert abs(count / (paper * 1e6) - 1) < 0.02
    assert models.VARIANTS[name].paper_params == paper


def test_paper_variants() -> None:
    expected = {"hrnet-w32": (32, 7.1), "hrnet-w48": (48, 14.6)}
    for name, (width, gflops) in expected.items():
        variant = models.VARIANTS[name]
        assert variant.input_size == (256, 192) and variant.paper_gflops == gflops and not variant.modernized
        assert variant.kwargs["width"] == width and variant.kwargs["num_joints"] == 17
        assert variant.kwargs.get("pretrained", "imagenet") == "imagenet"
    assert models.VARIANTS["hrnet-tiny"].tiny and models.VARIANTS["hrnet-tiny"].input_size == (128, 96)


# ----------------------------------------------------------------------------- structure


def test_w32_structure_follows_pose_hrnet() -> None:
    with torch.device("meta"):
        net = models.build("hrnet-w32", pretrained=False).net
    assert (net.conv1.stride, net.conv2.stride) == ((2, 2), (2, 2))
    assert (net.conv1.out_channels, net.conv2.out_channels) == (64, 64)
    assert len(net.layer1) == 4 and net.layer1[0].conv3.out_channels == 256
    stages = [net.stage2, net.stage3, net.stage4]
    assert [len(stage) for stage in stages] == [1, 4, 3]
    for branches, stage in zip((2, 3, 4), stages, strict=True):
        for module in stage:
            assert [len(branch) for branch in module.branches] == [4] * branches
            assert [branch[0].conv1.in_channels for branch in module.branches] == [32 * 2 ** b for b in range(branches)]
    # Every module fuses into all branches except the last, which feeds only the high-resolution output.
    assert [len(module.fuse_layers) for module in stages[2]] == [4, 4, 1]
    assert all(len(module.fuse_layers) == len(module.branches) for stage in stages[:2] for module in stage)
    final = net.final_layer
    assert (final.in_channels, final.out_channels, final.kernel_size) == (32, 17, (1, 1)) and final.bias is not None
    # New branches come from the lowest-resolution one by a stride-2 3x3 conv; existing ones pass through.
    assert isinstance(net.transition2[0], nn.Identity) and isinstance(net.transition2[1], nn.Identity)
    assert net.transition2[2][0][0].stride == (2, 2) and net.transition2[2][0][0].in_channels == 64
    assert net.transition1[0][0].stride == (1, 1) and net.transition1[0][0].in_channels == 256


def test_exchange_unit_sums_resampled_branches() -> None:
    torch.manual_seed(0)
    widths = [4, 8, 16]
    module = HighResolutionModule(widths, num_blocks=1).eval()
    for parameter in module.parameters():
        nn.init.normal_(parameter, std=0.3)
    x = [torch.randn(2, w, 16 // 2 ** b, 12 // 2 ** b) for b, w in enumerate(widths)]
    with torch.no_grad():
        out = module([t.clone() for t in x])
        y = [branch(t) for branch, t in zip(module.branches, x, strict=True)]
        # Branch 1 -> 0: 1x1 conv, BN, nearest x2; branch 0 -> 2: two stride-2 3x3 convs, ReLU between them only.
        up = module.fuse_layers[0][1]
        assert isinstance(up[2], nn.Upsample) and up[2].scale_factor == 2 and up[0].kernel_size == (1, 1)
        down = module.fuse_layers[2][0]
        assert [len(step) for step in down] == [3, 2] and isinstance(down[0][2], nn.ReLU)
        assert [step[0].out_channels for step in down] == [4, 16] and all(step[0].stride == (2, 2) for step in down)
        upsampled = up[1](up[0](y[1])).repeat_interleave(2, 2).repeat_interleave(2, 3)
        expected0 = y[0] + upsampled + module.fuse_layers[0][2](y[2])
        expected2 = down(y[0]) + module.fuse_layers[2][1](y[1]) + y[2]
    assert [tuple(t.shape) for t in out] == [tuple(t.shape) for t in x]
    torch.testing.assert_close(out[0], torch.relu(expected0))
    torch.testing.assert_close(out[2], torch.relu(expected2))
    single = HighResolutionModule(widths, num_blocks=1, multi_scale_output=False).eval()
    with torch.no_grad():
        assert [tuple(t.shape) for t in single([t.clone() for t in x])] == [tuple(x[0].shape)]


def test_every_parameter_of_w32_gets_a_gradient() -> None:
    # Plain DDP needs it: timm's hrnet_w32 feature extractor leaves 0.77M parameters unused.
    # On the meta device autograd still records the graph (a parameter outside it keeps grad None) at no cost.
    with torch.device("meta"):
        model = models.build("hrnet-w32", pretrained=False)
        heatmaps = model(torch.empty(2, 3, 256, 192))
        heatmaps.sum().backward()
    assert heatmaps.shape == (2, 17, 64, 48)
    assert [name for name, p in model.named_parameters() if p.grad is None] == []
    assert sum(p.numel() for p in model.parameters()) == _pose_hrnet_params(32, 17)


def test_initialisation_is_the_official_small_normal() -> None:
    torch.manual_seed(0)
    net = models.build("hrnet-tiny").net
    weights = torch.cat([m.weight.detach().flatten() for m in net.modules() if isinstance(m, nn.Conv2d)])
    assert abs(float(weights.std()) - 0.001) < 0.00005
    assert float(net.final_layer.bias.detach().abs().max()) == 0.0
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(bool((m.weight == 1).all()) and bool((m.bias == 0).all()) for m in norms)


def test_input_must_be_divisible_by_32() -> None:
    with pytest.raises(ValueError, match="divisible by 32"):
        HRNet(num_joints=17, input_size=[64, 48], flip_pairs=[], width=8, pretrained="none")


def test_bad_pretrained_values_fail() -> None:
    with pytest.raises(ValueError, match="unknown pretrained 'coco'"):
        models.build("hrnet-tiny", pretrained="coco")
    with pytest.raises(ValueError, match="paper layout"):
        models.build("hrnet-tiny", pretrained="imagenet")


# ----------------------------------------------------------------------------- ImageNet weights

# timm's classification head, and the fuse paths into branches 1-3 of the classifier's last module
# (the pose network fuses only into branch 0 there): the only timm tensors without a counterpart.
_NOT_MAPPED = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.",
               "stage4.2.fuse_layers.1.", "stage4.2.fuse_layers.2.", "stage4.2.fuse_layers.3.")


def test_imagenet_weights_are_mapped_onto_every_backbone_tensor(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    calls = []
    create = timm.create_model

    def random_timm(name: str, **kwargs):
        calls.append((name, kwargs))
        torch.manual_seed(1)
        calls.append(create(name, **{**kwargs, "pretrained": False}))
        return calls[-1]

    monkeypatch.setattr(timm, "create_model", random_timm)
    # An empty cache and a network that answers: the weights are asked of timm (stubbed, so nothing is fetched).
    monkeypatch.setattr(pretrained.hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(pretrained, "network_problem", lambda url: None)
    torch.manual_seed(0)
    model = models.build("hrnet-w32", pretrained="imagenet")
    (name, kwargs), source = calls
    assert name == "hrnet_w32" and kwargs == {"pretrained": True}

    theirs = source.state_dict()
    ours = model.net.state_dict()
    mapped = [key for key in theirs if not key.startswith(_NOT_MAPPED)]
    # pose_hrnet.py's module names are the classification checkpoint's: the official strict=False load by name.
    assert sorted(mapped) == sorted(key for key in ours if not key.startswith("final_layer."))
    assert len(mapped) == 1752
    different = [key for key in mapped if not torch.equal(ours[key], theirs[key])]
    assert not different
    assert float(model.net.final_layer.weight.detach().std()) < 0.002  # the head keeps the official initialisation


def test_copy_reports_its_count_and_refuses_another_structure() -> None:
    torch.manual_seed(0)
    net = PoseHighResolutionNet(num_joints=17)
    before = {key: value.clone() for key, value in net.state_dict().items()}
    with pytest.raises(ValueError, match="ImageNet weights"):
        copy_timm_weights(net, timm.create_model("hrnet_w18_small", pretrained=False))
    assert all(torch.equal(before[key], value) for key, value in net.state_dict().items())
    source = timm.create_model("hrnet_w32", pretrained=False)
    assert copy_timm_weights(net, source) == len(net.state_dict()) - 2


# ----------------------------------------------------------------------------- learning

INPUT_SIZE = (128, 96)
STEPS = 500
# hrnet-tiny trained STEPS steps (20 epochs of the 400 SynthPose training images, Adam 2e-3) reaches about 30
# PCKh@0.5 "Mean"; an untrained network scores about 1 (its near-zero heatmaps put every joint at one arbitrary
# argmax), the val set's own mean pose placed in every crop about 13 (the best an image-blind network could do),
# and the same run with lr 1e-9 (training broken) about 1.
THRESHOLD = 24.0


def _trainer(root: Path, **kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False, use_distributed_sampler=False, default_root_dir=root, **kwargs)


def _pckh(model: HRNet, datamodule: PoseDataModule, root: Path) -> float:
    outputs = _trainer(root).predict(model, datamodule=datamodule)
    index = torch.cat([o["index"] for o in outputs]).numpy()
    keypoints = torch.cat([o["keypoints"] for o in outputs]).numpy()
    truth = datamodule.val_dataset.mpii_ground_truth
    assert sorted(index.tolist()) == list(range(len(truth.joints)))
    pred = np.empty_like(keypoints)
    pred[index] = keypoints
    return mpii_pckh(pred, truth.joints, ~truth.missing, truth.headboxes)["Mean"]


@pytest.mark.slow
def test_tiny_learns_on_synthpose(synthpose_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    datamodule = PoseDataModule(name="synthpose", root=synthpose_root, format="mpii", input_size=INPUT_SIZE,
                                batch_size=16, val_batch_size=60, seed=0, augmentation=Augmentation(flip=True))
    datamodule.setup("fit")
    model = models.build("hrnet-tiny", input_size=list(INPUT_SIZE), num_joints=MPII.num_joints,
                         flip_pairs=[list(pair) for pair in MPII.flip_pairs], lr=2e-3, schedule="none")
    untrained = _pckh(model, datamodule, tmp_path)
    assert untrained < 5.0
    _trainer(tmp_path, max_steps=STEPS, num_sanity_val_steps=0, limit_val_batches=0).fit(model, datamodule=datamodule)
    trained = _pckh(model, datamodule, tmp_path)
    assert trained >= THRESHOLD, f"PCKh@0.5 {trained:.1f} after {STEPS} steps (untrained {untrained:.1f})"
