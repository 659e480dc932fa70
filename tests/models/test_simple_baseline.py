"""SimpleBaseline: the head of microsoft/human-pose-estimation.pytorch pose_resnet.py on timm ResNets."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from torch import nn

import models
from models import pretrained
from models.simple_baseline import SimpleBaseline

# torchvision's ResNet totals (25,557,032 / 44,549,160 / 60,192,808) minus the 2048 x 1000 + 1000 classifier.
BACKBONE_PARAMS = {"res50": 23_508_032, "res101": 42_500_160, "res152": 58_143_808}


def _head_params(joints: int) -> int:
    """Three 4x4 deconvolutions without bias (2048 -> 256 -> 256 -> 256), their BNs, the 1x1 head."""
    deconv = 2048 * 256 * 16 + 2 * 256 * 256 * 16
    return deconv + 3 * 2 * 256 + 256 * joints + joints


@pytest.mark.parametrize("depth", ["res50", "res101", "res152"])
def test_parameter_count_is_torchvision_backbone_plus_head(depth: str) -> None:
    with torch.device("meta"):
        model = models.build(f"simplebaseline-{depth}", pretrained=False)
    assert sum(p.numel() for p in model.parameters()) == BACKBONE_PARAMS[depth] + _head_params(17)


def test_head_structure_follows_pose_resnet() -> None:
    with torch.device("meta"):
        model = models.build("simplebaseline-res50", pretrained=False)
    layers = list(model.net.head.deconv)
    assert [type(layer) for layer in layers] == [nn.ConvTranspose2d, nn.BatchNorm2d, nn.ReLU] * 3
    for deconv in layers[::3]:
        assert deconv.kernel_size == (4, 4) and deconv.stride == (2, 2) and deconv.padding == (1, 1)
        assert deconv.output_padding == (0, 0) and deconv.bias is None and deconv.out_channels == 256
    final = model.net.head.final
    assert final.kernel_size == (1, 1) and final.bias is not None
    assert (final.in_channels, final.out_channels) == (256, 17)
    assert model.net.backbone.num_features == 2048
    assert model.codec.heatmap_size == (64, 48)


def test_head_initialisation_is_small_normal() -> None:
    torch.manual_seed(0)
    model = models.build("simplebaseline-tiny")
    head = model.net.head
    convolutions = [m for m in head.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    weights = torch.cat([m.weight.detach().flatten() for m in convolutions])
    assert abs(float(weights.std()) - 0.001) < 0.00005
    assert float(head.final.bias.abs().max()) == 0.0
    norms = [m for m in head.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(bool((m.weight == 1).all()) and bool((m.bias == 0).all()) for m in norms)


def test_pretrained_and_backbone_reach_timm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = []
    create = timm.create_model

    def record(name: str, **kwargs):
        calls.append((name, kwargs))
        return create(name, **{**kwargs, "pretrained": False})

    monkeypatch.setattr(timm, "create_model", record)
    # Empty caches and a network that answers: the weights are asked of timm (stubbed, so nothing is fetched).
    monkeypatch.setattr(pretrained.hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(pretrained, "network_problem", lambda url: None)
    models.build("simplebaseline-tiny", pretrained=True)
    name, kwargs = calls[0]
    assert name == "resnet18" and kwargs["pretrained"] is True
    assert kwargs["num_classes"] == 0 and kwargs["global_pool"] == "" and kwargs["zero_init_last"] is False
    assert models.VARIANTS["simplebaseline-res50"].kwargs["backbone"] == "resnet50.tv_in1k"


def test_input_must_be_divisible_by_32() -> None:
    with pytest.raises(ValueError, match="divisible by 32"):
        SimpleBaseline(num_joints=17, input_size=[64, 48], flip_pairs=[], backbone="resnet18", pretrained=False)


def test_deconv_channels_must_be_three() -> None:
    with pytest.raises(ValueError, match="3 entries"):
        SimpleBaseline(num_joints=17, input_size=[64, 64], flip_pairs=[], backbone="resnet18", pretrained=False,
                       deconv_channels=[64, 64])
