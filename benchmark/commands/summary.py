"""``python -m benchmark summary``: parameters and GFLOPs of every registered variant, the time and cost to reproduce
each paper recipe (``benchmark.reproduce_cost``), and ``profile model``.

GFLOPs follow the README's contract (``summary --json``): multiply-accumulates of one forward pass at the variant's
input size, batch 1, i.e. ``torch.utils.flop_counter.FlopCounterMode``'s FLOP total / 2
(it counts a multiply-add as 2 FLOPs). ``paper_gflops`` is the paper's own figure where the
registry has one; papers used other counters, so the two are shown side by side, not compared.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

import torch

from benchmark.errors import PoseBenchError
from benchmark.flops import model_cost

log = logging.getLogger(__name__)


def _check_variants(names: list[str]) -> None:
    """Raise ``PoseBenchError`` naming every one of ``names`` that is not a registered variant."""
    from models import VARIANTS

    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise PoseBenchError(f"unknown variant(s) {', '.join(unknown)}; registered: {', '.join(sorted(VARIANTS))}")


def summarize_variant(name: str) -> dict[str, Any]:
    """``{name, method, params, gflops, paper_gflops, paper_params, input_size [H, W], tiny, modernized}``."""
    from models import VARIANTS, build_random

    variant = VARIANTS[name]
    params, gflops = model_cost(lambda: build_random(name), variant.input_size)
    return {
        "name": name,
        "method": variant.method,
        "params": params,
        "gflops": gflops,
        "paper_gflops": variant.paper_gflops,
        "paper_params": variant.paper_params,
        "input_size": list(variant.input_size),
        "tiny": variant.tiny,
        "modernized": variant.modernized,
    }


def summary(names: list[str] | None = None) -> list[dict[str, Any]]:
    """``summarize_variant`` of ``names`` (default: every registered variant, sorted)."""
    from models import VARIANTS

    chosen = sorted(VARIANTS) if not names else names
    _check_variants(chosen)
    return [summarize_variant(name) for name in chosen]


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of ``summary`` rows."""
    lines = ["| variant | method | input (H x W) | params (M) | GFLOPs (MACs) | paper GFLOPs | paper params (M) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        paper_g = "–" if r["paper_gflops"] is None else f"{r['paper_gflops']:.1f}"
        paper_p = "–" if r["paper_params"] is None else f"{r['paper_params']:.1f}"
        lines.append(f"| {r['name']} | {r['method']} | {r['input_size'][0]}x{r['input_size'][1]} | "
                     f"{r['params'] / 1e6:.2f} | {r['gflops']:.2f} | {paper_g} | {paper_p} |")
    return "\n".join(lines)


def run_summary(names: list[str] | None, as_json: bool, measure_loader: bool = False) -> str:
    """The text ``python -m benchmark summary [--json]`` prints: the variants, then the cost to reproduce each paper
    recipe of them (``benchmark.reproduce_cost``; in JSON under each variant's ``reproduce``)."""
    from benchmark import reproduce_cost

    rows = summary(names)
    estimates = reproduce_cost.recipe_estimates([r["name"] for r in rows], measure_loader)
    if as_json:
        for row in rows:
            row["reproduce"] = [e for e in estimates if e["variant"] == row["name"]]
        return json.dumps(rows, indent=2)
    if not estimates:
        return format_table(rows)
    heading = "Time and cost to reproduce the paper recipes"
    return f"{format_table(rows)}\n\n{heading}\n\n{reproduce_cost.format_table(estimates)}"


def profile_model(name: str, batch_size: int = 8, steps: int = 5, warmup: int = 2,
                  device: str | None = None) -> dict[str, Any]:
    """Images/s of forward and forward+backward of variant ``name`` at its input size, and peak memory.

    Runs on CUDA when present (else CPU) with random weights and inputs; peak memory is the CUDA
    allocator's peak (None on CPU). Times are wall-clock means over ``steps`` after ``warmup``.
    """
    from models import VARIANTS, build_random

    _check_variants([name])
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    variant = VARIANTS[name]
    model = build_random(name).to(dev)
    image = torch.randn(batch_size, 3, *variant.input_size, device=dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def timed(fn) -> float:
        for _ in range(warmup):
            fn()
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        sync()
        return (time.perf_counter() - start) / steps

    def forward() -> None:
        with torch.no_grad():
            model(image)

    def forward_backward() -> None:
        outputs = model(image)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        sum(o.float().mean() for o in outputs).backward()
        model.zero_grad(set_to_none=True)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    model.eval()
    fwd = timed(forward)
    model.train()
    fwd_bwd = timed(forward_backward)
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    return {"name": name, "device": str(dev), "batch_size": batch_size, "input_size": list(variant.input_size),
            "forward_images_per_s": batch_size / fwd, "forward_backward_images_per_s": batch_size / fwd_bwd,
            "peak_memory_mib": peak}


# ---- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``summary [--json] [--variant NAME ...]``."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    parser.add_argument("--variant", action="append", help="only these variants (repeatable)")
    parser.add_argument("--measure-loader", action="store_true",
                        help="measure one core's loader time per image on generated SynthPose (about a minute) "
                             "instead of using the figure profile data measured")


def run(args: argparse.Namespace) -> int:
    """Print the summary table (or JSON)."""
    # Only a flag that is set is passed on: run_summary(names, as_json) stays the call tests replace.
    options = {"measure_loader": True} if args.measure_loader else {}
    log.info(run_summary(args.variant, args.json, **options))
    return 0
