"""Train-step time of every method in channels-last vs contiguous memory format, and bf16-mixed vs fp32, same run.

``python -m benchmark profile layouts`` builds each registered method's demo variant at its demo
preset's input size and batch (``recipe/demo_<method>.yaml``), plus the paper variants asked for with
``--paper``, and times one training step (the method's own ``training_step`` on a synthetic batch,
backward, SGD step) in both layouts, and in bf16-mixed (``torch.autocast`` on the CPU) in the layout the CPU's
channels-last default picks, alternating the three so that load on a shared machine hits them alike, best of
``--repeats`` after one warm-up each. The ratios ``channels_last / contiguous`` and ``bf16 / fp32`` are what
``benchmark/speed_defaults.py`` records for the CPU; ``python -m benchmark gpu-check`` reuses the batch
and the step for its GPU measurements.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from benchmark.errors import PoseBenchError
from models.base import PoseEstimator

log = logging.getLogger(__name__)

DEFAULT_PAPER = ("simplebaseline-res50",)
PAPER_BATCH = 4
"""Batch of the paper variants on the CPU: a few seconds per step on one thread."""


def build_random(name: str, **overrides: Any) -> PoseEstimator:
    """Variant ``name`` with random weights (``models.build_random``); an unknown name is a user error naming it."""
    from models import VARIANTS
    from models import build_random as build_untrained

    if name not in VARIANTS:
        raise PoseBenchError(f"unknown variant {name!r}; registered: {', '.join(sorted(VARIANTS))}")
    return build_untrained(name, **overrides)


def synthetic_batch(model: PoseEstimator, batch_size: int, device: torch.device | str = "cpu",
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """A ``PoseBatch`` of random images ``(B, 3, H, W)`` and joints inside the crop, identity crop matrices."""
    generator = torch.Generator().manual_seed(seed)
    height, width = model.input_size
    joints = model.num_joints
    keypoints = torch.rand(batch_size, joints, 2, generator=generator) * torch.tensor([width - 1.0, height - 1.0])
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(batch_size, 2, 3).contiguous()
    batch = {
        "image": torch.randn(batch_size, 3, height, width, generator=generator),
        "keypoints": keypoints,
        "visible": torch.ones(batch_size, joints),
        "index": torch.arange(batch_size),
        "matrix": identity,
        "inverse_matrix": identity.clone(),
        "center": torch.full((batch_size, 2), width / 2.0),
        "scale": torch.full((batch_size, 2), 1.0),
        "image_id": torch.arange(batch_size),
        "box_score": torch.ones(batch_size),
        "area": torch.full((batch_size,), float(height * width)),
        "headbox": torch.tensor([[0.0, 0.0], [width / 4.0, height / 4.0]]).expand(batch_size, 2, 2).contiguous(),
    }
    return {key: value.to(device) for key, value in batch.items()}


def train_step(model: PoseEstimator, batch: dict[str, torch.Tensor],
               autocast: Callable[[], AbstractContextManager[Any]] = nullcontext) -> Callable[[], float]:
    """A closure running one training step of ``model`` on ``batch`` (its ``training_step`` under ``autocast``,
    backward, SGD) and returning the loss."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)

    def step() -> float:
        with warnings.catch_warnings():
            # self.log() outside a Trainer warns once per call; the step is timed without one.
            warnings.simplefilter("ignore")
            with autocast():
                loss = model.training_step(batch, 0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def best_times(steps: dict[str, Callable[[], Any]], repeats: int, sync: Callable[[], None] = lambda: None
               ) -> dict[str, float]:
    """Best wall time in seconds of each of ``steps``, run alternately ``repeats`` times after one warm-up each."""
    for step in steps.values():
        step()
    sync()
    best = dict.fromkeys(steps, math.inf)
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            sync()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def cpu_bf16() -> AbstractContextManager[Any]:
    """bf16-mixed on the CPU, as Lightning's ``precision="bf16-mixed"`` runs it."""
    return torch.autocast("cpu", dtype=torch.bfloat16)


def measure_layouts(name: str, input_size: tuple[int, int], batch_size: int, repeats: int) -> dict[str, Any]:
    """``{variant, input_size, batch_size, contiguous_s, channels_last_s, ratio, bf16_layout, bf16_s, bf16_ratio}``
    of one variant on the CPU. The copies share their weights, so all run the same arithmetic; bf16-mixed is
    timed in the layout the CPU's channels-last default picks (``bf16_layout``), against fp32 in that layout, as a
    run with both defaults trains."""
    from benchmark.speed_defaults import decide
    from models import VARIANTS

    torch.manual_seed(0)
    contiguous = build_random(name, input_size=list(input_size)).train()
    copies = {}
    for copy in ("channels_last", "bf16"):
        copies[copy] = build_random(name, input_size=list(input_size)).train()
        copies[copy].load_state_dict(contiguous.state_dict())
    channels_last = copies["channels_last"].to(memory_format=torch.channels_last)
    bf16_layout = "channels_last" if decide(VARIANTS[name].method, "cpu", "channels_last")[0] else "contiguous"
    bf16 = copies["bf16"].to(memory_format=torch.channels_last) if bf16_layout == "channels_last" else copies["bf16"]
    batch = synthetic_batch(contiguous, batch_size)
    times = best_times({"contiguous": train_step(contiguous, batch), "channels_last": train_step(channels_last, batch),
                        "bf16": train_step(bf16, batch, cpu_bf16)}, repeats)
    return {"variant": name, "input_size": list(input_size), "batch_size": batch_size,
            "contiguous_s": times["contiguous"], "channels_last_s": times["channels_last"],
            "ratio": times["channels_last"] / times["contiguous"], "bf16_layout": bf16_layout,
            "bf16_s": times["bf16"], "bf16_ratio": times["bf16"] / times[bf16_layout]}


def demo_settings() -> list[tuple[str, str, tuple[int, int], int]]:
    """``(method, variant, input_size, batch_size)`` of every registered method's demo preset; a method without
    one is skipped with a warning."""
    from benchmark.config import available, load_config
    from benchmark.train import method_of, resolve_input_size
    from models import METHODS

    rows = []
    for method in sorted(METHODS):
        if f"demo_{method}" not in available("recipe"):
            log.warning(f"{method}: no recipe/demo_{method}.yaml, not measured")
            continue
        cfg = load_config([f"recipe=demo_{method}"])
        rows.append((method, cfg.model.variant, resolve_input_size(cfg), int(cfg.data.batch_size)))
        if method_of(cfg.model.variant) != method:
            raise PoseBenchError(f"recipe/demo_{method}.yaml trains {cfg.model.variant}, not a {method} variant")
    return rows


def profile_layouts(paper: tuple[str, ...] = DEFAULT_PAPER, repeats: int = 5, threads: int = 1,
                    methods: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Measure every method's demo variant (or those of ``methods``) and the ``paper`` variants; log a table."""
    from models import VARIANTS

    torch.set_num_threads(threads)
    settings = [s for s in demo_settings() if not methods or s[0] in methods]
    for name in paper:
        if name not in VARIANTS:
            raise PoseBenchError(f"--paper {name}: not a registered variant; registered: {', '.join(sorted(VARIANTS))}")
        settings.append((VARIANTS[name].method, name, VARIANTS[name].input_size, PAPER_BATCH))
    date = datetime.date.today().isoformat()
    log.info(f"train step, channels_last / contiguous and bf16-mixed / fp32 (in the layout the CPU default picks): "
             f"{threads} torch thread(s), {os.cpu_count()} cores, best of {repeats}, load average "
             f"{os.getloadavg()[0]:.1f}, {date}")
    log.info("| method | variant | input | batch | contiguous s | channels_last s | ratio | bf16 layout | bf16 s | "
             "bf16 ratio |")
    log.info("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for method, name, input_size, batch_size in settings:
        row = {"method": method, "date": date, **measure_layouts(name, input_size, batch_size, repeats)}
        rows.append(row)
        log.info(f"| {method} | {name} | {input_size[0]}x{input_size[1]} | {batch_size} | {row['contiguous_s']:.3f} | "
                 f"{row['channels_last_s']:.3f} | {row['ratio']:.2f} | {row['bf16_layout']} | {row['bf16_s']:.3f} | "
                 f"{row['bf16_ratio']:.2f} |")
    return rows
