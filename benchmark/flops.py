"""Model cost as ``summary`` reports it and run records store it (README.md, ``summary --json``).

GFLOPs are multiply-accumulates of one forward pass at the input size, batch 1, i.e.
``torch.utils.flop_counter.FlopCounterMode``'s FLOP total / 2 (it counts a multiply-add as 2 FLOPs).
``model_cost`` counts them, and the parameters, on the meta device: shapes only, no weights allocated or
initialised and no arithmetic done, so the numbers are those of the real model at a fraction of the time
(tests/benchmark/commands/test_summary_meta.py checks equality).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

log = logging.getLogger(__name__)


def count_gflops(model: torch.nn.Module, input_size: tuple[int, int]) -> float:
    """Multiply-accumulates (in 1e9) of ``model`` on one ``(1, 3, H, W)`` zero image, in eval mode."""
    model.eval()
    parameter = next(model.parameters(), None)
    image = torch.zeros(1, 3, *input_size, device=parameter.device if parameter is not None else "cpu")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(image)
    return counter.get_total_flops() / 2 / 1e9


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameter elements (shared parameters once)."""
    return int(sum(p.numel() for p in model.parameters()))


def model_cost(build: Callable[[], torch.nn.Module], input_size: tuple[int, int]) -> tuple[int, float]:
    """``(parameters, GFLOPs)`` of the model ``build()`` returns, counted on the meta device.

    A model whose construction or forward pass needs real values (reading a file, ``.item()``, a tensor made on
    an explicit device) raises on meta; it is then built and run with real weights on the CPU.
    """
    try:
        with torch.device("meta"):
            model = build()
        return count_parameters(model), count_gflops(model, input_size)
    except (NotImplementedError, RuntimeError) as error:
        # Meta tensors refuse data access with one of these two; a genuine bug raises again below.
        log.debug(f"counting with real weights, the meta device failed: {type(error).__name__}: {error}")
    model = build()
    return count_parameters(model), count_gflops(model, input_size)
