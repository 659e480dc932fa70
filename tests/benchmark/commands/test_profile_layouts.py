"""``profile layouts``: the three timed steps run the same arithmetic, and bf16 is timed in the default layout."""

from __future__ import annotations

import math

import torch

from benchmark import speed_defaults
from benchmark.commands.profile_layouts import build_random, cpu_bf16, measure_layouts, synthetic_batch, train_step


def test_bf16_is_timed_in_the_layout_the_channels_last_default_picks(monkeypatch):
    for on, layout in ((0.5, "channels_last"), (1.5, "contiguous")):
        monkeypatch.setitem(speed_defaults.MEASURED, ("visreg", "cpu", "channels_last"),
                            speed_defaults.Measurement(on, "2026-12-06", "x"))
        row = measure_layouts("visreg-tiny", (64, 64), 2, repeats=1)
        assert row["bf16_layout"] == layout
        assert row["bf16_ratio"] == row["bf16_s"] / row[f"{layout}_s"]
        assert row["ratio"] == row["channels_last_s"] / row["contiguous_s"]
        assert all(math.isfinite(row[key]) and row[key] > 0 for key in ("contiguous_s", "channels_last_s", "bf16_s"))


def test_the_bf16_step_runs_the_fp32_steps_computation_in_bf16():
    """Same weights and batch: the bf16-mixed loss is the fp32 loss up to bf16 rounding (8 bits of mantissa,
    compounded over the hourglass's ~100 layers: 5% here)."""
    torch.manual_seed(0)
    fp32, bf16 = (build_random("hourglass-tiny", input_size=[64, 64]) for _ in range(2))
    bf16.load_state_dict(fp32.state_dict())
    batch = synthetic_batch(fp32, 2)
    exact, rounded = train_step(fp32.train(), batch)(), train_step(bf16.train(), batch, cpu_bf16)()
    assert math.isfinite(rounded) and rounded != exact
    assert abs(rounded - exact) <= 0.1 * abs(exact)
