"""``benchmark.flops.model_cost``: parameters and GFLOPs counted on the meta device equal those of the real model."""

from __future__ import annotations

import pytest
import torch

from benchmark.flops import count_gflops, count_parameters, model_cost
from models import VARIANTS, build_random

# Every method once (the tiny variants) and two paper-size networks with a different head each.
VARIANTS_CHECKED = sorted(name for name in VARIANTS if name.endswith("-tiny")) + ["deeppose-res50",
                                                                                  "simplebaseline-res50"]


@pytest.mark.parametrize("name", VARIANTS_CHECKED)
def test_meta_count_equals_the_real_model(name: str) -> None:
    size = VARIANTS[name].input_size
    real = build_random(name)
    assert model_cost(lambda: build_random(name), size) == (count_parameters(real), count_gflops(real, size))


class _NeedsValues(torch.nn.Module):
    """A forward that reads a value (``.item()``), which meta tensors cannot give."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.conv(image)
        return out * 2 if out.sum().item() >= 0 else out


def test_a_model_that_needs_values_is_counted_with_real_weights() -> None:
    # Conv 3 -> 4, 3x3 'same' on 8x8: 3 * 4 * 9 * 64 = 6,912 MACs; 108 weights + 4 biases.
    params, gflops = model_cost(_NeedsValues, (8, 8))
    assert params == 112
    assert gflops == pytest.approx(6_912 / 1e9, rel=0, abs=1e-15)


def test_a_genuine_error_still_propagates() -> None:
    def broken() -> torch.nn.Module:
        return torch.nn.Linear(5, 2)  # a (1, 3, H, W) image does not fit

    with pytest.raises(RuntimeError):
        model_cost(broken, (4, 4))
