"""Model cost as ``summary`` reports it and run records store it (README.md, ``summary --json``).

GFLOPs are multiply-accumulates of one forward pass at the input size, batch 1, i.e.
``torch.utils.flop_counter.FlopCounterMode``'s FLOP total / 2 (it counts a multiply-add as 2 FLOPs).
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_gflops(model: torch.nn.Module, input_size: tuple[int, int]) -> float:
    """Multiply-accumulates (in 1e9) of ``model`` on one ``(1, 3, H, W)`` zero image, in eval mode."""
    model.eval()
    parameter = next(model.parameters(), None)
    image = torch.zeros(1, 3, *input_size, device=parameter.device if parameter is not None else "cpu")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(image)
    return counter.get_total_flops() / 2 / 1e9
