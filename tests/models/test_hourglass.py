"""Stacked Hourglass: the structure of umich-vl/pose-hg-train (hg.lua, Residual.lua) and its size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import models
from benchmark.config import load_config
from models.hourglass import Hourglass, Residual, StackedHourglass, StackedHourglassNet


def _residual_params(n_in: int, n_out: int) -> int:
    """Residual.lua convBlock + skipLayer: BN(in), 1x1 in->out/2, BN, 3x3 out/2, BN, 1x1 out/2->out (+ 1x1 skip)."""
    half = n_out // 2
    count = 2 * n_in + (n_in * half + half) + 2 * half + (9 * half * half + half) + 2 * half + (half * n_out + n_out)
    return count + (n_in * n_out + n_out if n_in != n_out else 0)


def _hg_lua_params(stacks: int, features: int, joints: int) -> int:
    """Parameter count of hg.lua's createModel, written out layer by layer."""
    stem = (3 * 64 * 49 + 64) + 2 * 64 + _residual_params(64, 128) + _residual_params(128, 128) \
        + _residual_params(128, features)
    hourglass = 13 * _residual_params(features, features)  # 3 per level x 4 levels + the innermost one
    per_stack = hourglass + _residual_params(features, features) + (features * features + features) + 2 * features \
        + (features * joints + joints)
    between = (features * features + features) + (joints * features + features)
    return stem + stacks * per_stack + (stacks - 1) * between


@pytest.mark.parametrize("stacks", [1, 2, 4, 8])
def test_parameter_count_equals_hg_lua(stacks: int) -> None:
    with torch.device("meta"):
        model = models.build(f"hourglass-{stacks}")
    assert sum(p.numel() for p in model.parameters()) == _hg_lua_params(stacks, 256, 16)


def test_eight_stacks_within_two_percent_of_the_published_size() -> None:
    count = _hg_lua_params(8, 256, 16)
    assert count == 25_434_112
    assert abs(count / 25.1e6 - 1) < 0.02


def test_residual_is_pre_activation_bottleneck_with_projection_skip() -> None:
    block = Residual(64, 128)
    kinds = [type(layer) for layer in block.body]
    assert kinds == [nn.BatchNorm2d, nn.ReLU, nn.Conv2d] * 3
    convs = [layer for layer in block.body if isinstance(layer, nn.Conv2d)]
    shapes = [(c.in_channels, c.out_channels, c.kernel_size) for c in convs]
    assert shapes == [(64, 64, (1, 1)), (64, 64, (3, 3)), (64, 128, (1, 1))]
    assert isinstance(block.skip, nn.Conv2d) and block.skip.kernel_size == (1, 1)
    assert isinstance(Residual(32, 32).skip, nn.Identity)


def test_hourglass_recursion_and_resolution() -> None:
    glass = Hourglass(4, 16).eval()
    depth, node = 0, glass
    while isinstance(node, Hourglass):
        depth, node = depth + 1, node.inner
    assert depth == 4 and isinstance(node, Residual)
    assert sum(isinstance(m, Residual) for m in glass.modules()) == 13
    x = torch.randn(1, 16, 16, 16)
    assert glass(x).shape == x.shape


def test_hourglass_sums_the_skip_and_the_upsampled_low_branch() -> None:
    torch.manual_seed(0)
    glass = Hourglass(1, 8).eval()
    x = torch.randn(2, 8, 4, 6)
    low = glass.after(glass.inner(glass.down(torch.nn.functional.max_pool2d(x, 2))))
    expected = glass.up(x) + low.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    torch.testing.assert_close(glass(x), expected)


def test_next_stack_input_adds_remapped_features_and_predictions() -> None:
    torch.manual_seed(0)
    net = StackedHourglassNet(stacks=2, features=16, num_joints=3).eval()
    image = torch.randn(1, 3, 64, 64)
    seen = {}
    net.hourglasses[1].register_forward_pre_hook(lambda module, args: seen.__setitem__("input", args[0]))
    with torch.no_grad():
        outputs = net(image)
        x = net.stem(image)
        y = net.features[0](net.hourglasses[0](x))
        expected = x + net.remap_features[0](y) + net.remap_heatmaps[0](net.heads[0](y))
    assert len(outputs) == 2 and all(o.shape == (1, 3, 16, 16) for o in outputs)
    torch.testing.assert_close(seen["input"], expected)
    assert len(net.remap_features) == len(net.remap_heatmaps) == 1


def test_input_must_be_divisible_by_64() -> None:
    with pytest.raises(ValueError, match="divisible by 64"):
        StackedHourglass(num_joints=16, input_size=[96, 96], flip_pairs=[], stacks=1, features=16)


def test_paper_variants_use_the_official_settings() -> None:
    variant = models.VARIANTS["hourglass-8"]
    assert variant.input_size == (256, 256)
    cfg = load_config(["method=hourglass-8"])
    assert (cfg.optim.optimizer, cfg.optim.lr) == ("rmsprop", 2.5e-4)
    with torch.device("meta"):
        model = models.build("hourglass-8")
    assert model.codec.heatmap_size == (64, 64)
    assert len(model.net.hourglasses) == 8 and model.net.heads[0].in_channels == 256
