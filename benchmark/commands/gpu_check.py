"""``python -m benchmark gpu-check`` (``make gpu-check``): one prepared script that measures PoseBench on one GPU.

It needs nothing but the checkout (random weights, SynthPose generated into a temp directory) and runs in under
8 minutes on one H100, writing one JSON and one Markdown report (``results/gpu-check.json`` / ``.md``). Sections,
each with a time budget and guarded (a failing section is reported with its error and the next one runs):

- ``environment``: torch, CUDA, the device and its dense BF16 tensor-core peak (``PEAK_BF16_TFLOPS``).
- ``train``: HRNet-W32 (256x192), SimpleBaseline-R50 (256x192) and Hourglass-8 (256x256) at their recipes'
  per-GPU batch (``recipe/*.yaml`` ``data.batch_size``): train images/s (the method's ``training_step``, backward,
  an optimiser step, on a synthetic batch on the device), model FLOPs utilisation and peak GPU memory, in fp32,
  bf16-mixed, bf16-mixed + channels_last and that + ``torch.compile``; and the ``benchmark/speed_defaults.py``
  rows these measure (channels_last: bf16 + channels_last vs bf16; bf16: bf16 vs fp32), printed to paste.
- ``evaluation``: evaluation images/s of the real path with flip test (``PoseEstimator.predict_crop``: forward,
  mirrored forward, decoding; models/base.py), bf16-mixed + channels_last.
- ``loader``: images/s of ``PoseDataModule``'s training loader on SynthPose with the HRNet recipe's augmentation
  and one worker per CPU core, against each model's train images/s: is the GPU starved?
- ``gpu_tests``: ``pytest -m gpu`` in a subprocess (tests/gpu), its pass/fail counts.
- ``ddp``: ``python -m benchmark train`` of the Hourglass demo preset with ``trainer.strategy=ddp``, one device
  (NCCL), a few steps on SynthPose: its exit code and the run record it wrote.

MFU. ``benchmark.flops.count_gflops`` counts multiply-accumulates of one forward pass; a multiply-accumulate is 2
FLOPs, and a training step is about 3 forward passes (the backward pass computes the gradients of both the inputs
and the weights, each costing one forward), so ``MFU = 3 x 2 x GMACs x 1e9 x images/s / peak``, for every
precision against the dense BF16 peak. Peaks: NVIDIA's datasheets give BF16 tensor-core TFLOPS with 2:4 sparsity,
twice the dense rate: H100 SXM 1,979 (dense 989.4), H100 PCIe 1,513 (756), H200 SXM 1,979 (989.4) (NVIDIA H100
and H200 Tensor Core GPU datasheets; the dense 989.4 is in the NVIDIA H100 Tensor Core GPU Architecture
whitepaper); A100 312 dense (NVIDIA A100 Tensor Core GPU datasheet, 624 with sparsity).

``--dry-run`` runs every section on the CPU at tiny sizes (tiny variants at 64x64, batch 2, two steps, fp32 where
the sections ask for bf16, no ``torch.compile``, DDP over gloo, the gpu tests collected but not run) in well under
a minute, and writes the same report with ``"dry_run": true``; tests/benchmark/commands/test_gpu_check.py runs it.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import logging
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_OUT = Path("results/gpu-check.json")
REPO = Path(__file__).resolve().parents[2]
GPU_TESTS = REPO / "tests" / "gpu"
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("A100", 312.0),
)
"""Dense BF16 tensor-core peak by a substring of ``torch.cuda.get_device_name`` (first match; module docstring)."""
RECIPES = (
    ("hrnet", "hrnet_w32_coco_256x192"),
    ("simplebaseline", "simplebaseline_res50_coco_256x192"),
    ("hourglass", "hourglass8_mpii_256"),
)
"""The methods measured and the recipe that gives each its paper variant, input size and per-GPU batch."""
BUDGET_S = {"environment": 5.0, "train": 240.0, "evaluation": 30.0, "loader": 45.0, "gpu_tests": 60.0, "ddp": 75.0}
"""Seconds per section on a GPU: 455 s in all, under the 8 minutes the check is sized for."""
DRY_INPUT = (64, 64)
DRY_BATCH = 2
SYNTH_IMAGES = {False: (256, 32), True: (16, 8)}
"""SynthPose (train, val) images generated for the loader and DDP sections, on a GPU and in a dry run."""


@dataclass(frozen=True)
class TrainSetting:
    """One training configuration measured for every model."""

    name: str
    bf16: bool
    channels_last: bool
    compile: bool


SETTINGS = (
    TrainSetting("fp32", bf16=False, channels_last=False, compile=False),
    TrainSetting("bf16", bf16=True, channels_last=False, compile=False),
    TrainSetting("bf16+channels_last", bf16=True, channels_last=True, compile=False),
    TrainSetting("bf16+channels_last+compile", bf16=True, channels_last=True, compile=True),
)
COMPILE_RESERVE_S = 60.0
"""``torch.compile`` is tried only while the train section has this much of its budget left (compiling HRNet takes
tens of seconds)."""


@dataclass
class Check:
    """What every section needs: dry run or not, the device, the temp directory, the models measured."""

    dry_run: bool
    device: Any
    workdir: Path
    models: list[dict[str, Any]]

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def autocast(self, bf16: bool) -> Callable[[], AbstractContextManager[Any]]:
        """bf16-mixed on CUDA; fp32 on the CPU of a dry run (whose bf16 autocast is slow and beside the point)."""
        import torch

        if bf16 and self.device.type == "cuda":
            return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext

    def synth_root(self) -> Path:
        return self.workdir / "synthpose"


# ------------------------------------------------------------------------------ measuring


def rate(step: Callable[[], Any], batch_size: int, target_s: float, sync: Callable[[], None],
         min_steps: int = 2, warmup: int = 2) -> tuple[float, int]:
    """``(images/s, steps)`` of ``step`` after ``warmup`` steps: at least ``min_steps``, more until ``target_s``
    seconds have passed."""
    for _ in range(warmup):
        step()
    sync()
    steps, start = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < target_s:
        step()
        steps += 1
        sync()
    return steps * batch_size / (time.perf_counter() - start), steps


def peak_tflops(device_name: str | None) -> float | None:
    """The dense BF16 peak of ``device_name`` (``PEAK_BF16_TFLOPS``), None for the CPU or an unlisted GPU."""
    if device_name is None:
        return None
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in device_name), None)


def mfu(gmacs: float, images_per_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation of training: ``3 x 2 x GMACs`` FLOPs per image (module docstring) over the peak."""
    return None if peak is None else 3 * 2 * gmacs * 1e9 * images_per_s / (peak * 1e12)


def model_settings(dry_run: bool) -> list[dict[str, Any]]:
    """``{method, recipe, variant, input_size, batch_size}`` of each model measured (the tiny variants in a dry
    run)."""
    from benchmark.config import load_config
    from benchmark.train import resolve_input_size

    models = []
    for method, recipe in RECIPES:
        cfg = load_config([f"recipe={recipe}"])
        models.append({"method": method, "recipe": recipe,
                       "variant": f"{method}-tiny" if dry_run else cfg.model.variant,
                       "input_size": list(DRY_INPUT if dry_run else resolve_input_size(cfg)),
                       "batch_size": DRY_BATCH if dry_run else int(cfg.data.batch_size)})
    return models


def _build(check: Check, model: dict[str, Any], channels_last: bool, **overrides: Any) -> Any:
    import torch

    from benchmark.commands.profile_layouts import build_random

    torch.manual_seed(0)
    network = build_random(model["variant"], input_size=model["input_size"], **overrides).to(check.device)
    return network.to(memory_format=torch.channels_last) if channels_last else network


def _peak_memory_mib(check: Check) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(check.device) / 2**20 if check.device.type == "cuda" else None


def _reset_peak_memory(check: Check) -> None:
    import torch

    if check.device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(check.device)


# ------------------------------------------------------------------------------ sections


def section_environment(check: Check) -> dict[str, Any]:
    import torch

    name = torch.cuda.get_device_name(check.device) if check.device.type == "cuda" else None
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "device": name or "cpu",
            "peak_bf16_tflops": peak_tflops(name), "cpu_count": os.cpu_count()}


def train_row(check: Check, model: dict[str, Any], setting: TrainSetting, target_s: float,
              peak: float | None) -> dict[str, Any]:
    """Train images/s, MFU and peak memory of one model in one setting."""
    import torch

    from benchmark.commands.profile_layouts import synthetic_batch, train_step
    from benchmark.flops import count_gflops

    network = _build(check, model, setting.channels_last)
    gmacs = count_gflops(network, tuple(model["input_size"]))
    network.train()
    if setting.compile:
        network.forward = torch.compile(network.forward)
    batch = synthetic_batch(network, model["batch_size"], check.device)
    if setting.channels_last:
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
    _reset_peak_memory(check)
    step = train_step(network, batch, check.autocast(setting.bf16))
    images_per_s, steps = rate(step, model["batch_size"], target_s, check.sync, warmup=1 if check.dry_run else 3)
    loss = step()
    return {"method": model["method"], "variant": model["variant"], "setting": setting.name,
            "images_per_s": images_per_s, "steps": steps, "gmacs": gmacs, "mfu": mfu(gmacs, images_per_s, peak),
            "peak_memory_mib": _peak_memory_mib(check), "loss_finite": math.isfinite(loss)}


def section_train(check: Check, budget_s: float) -> dict[str, Any]:
    """Every model in every setting (compile last, while the budget lasts), and the speed-default rows."""
    from benchmark.speed_defaults import table_row

    peak = section_environment(check)["peak_bf16_tflops"]
    start = time.perf_counter()
    eager = [s for s in SETTINGS if not s.compile]
    target_s = 0.0 if check.dry_run else (budget_s - COMPILE_RESERVE_S * 1.5) / (len(check.models) * len(eager)) / 2
    rows: list[dict[str, Any]] = []
    for model in check.models:
        rows += [train_row(check, model, setting, target_s, peak) for setting in eager]
    for model in check.models:
        for setting in (s for s in SETTINGS if s.compile):
            left = budget_s - (time.perf_counter() - start)
            if check.dry_run or left < COMPILE_RESERVE_S:
                reason = "dry run" if check.dry_run else f"{left:.0f} s of the budget left"
                rows.append({"method": model["method"], "variant": model["variant"], "setting": setting.name,
                             "skipped": reason})
                continue
            try:
                rows.append(train_row(check, model, setting, min(target_s, left / 4), peak))
            except Exception as error:  # torch.compile fails in many backend-specific ways; the row says which
                rows.append({"method": model["method"], "variant": model["variant"], "setting": setting.name,
                             "error": f"{type(error).__name__}: {error}"[:500]})
    speed = {(r["method"], r["setting"]): r["images_per_s"] for r in rows if "images_per_s" in r}
    accelerator, date = check.device.type, datetime.date.today().isoformat()
    paste = []
    for model in check.models:
        m = model["method"]
        what = f"{model['variant']} batch {model['batch_size']}, gpu-check"
        paste.append(table_row(m, accelerator, "channels_last",
                               speed[m, "bf16"] / speed[m, "bf16+channels_last"], date, f"{what}, in bf16-mixed"))
        paste.append(table_row(m, accelerator, "bf16", speed[m, "fp32"] / speed[m, "bf16"], date, what))
    return {"rows": rows, "speed_default_rows": paste}


def section_evaluation(check: Check, budget_s: float) -> dict[str, Any]:
    """Evaluation images/s with flip test through ``predict_crop`` (forward, mirrored forward, decoding)."""
    import torch

    target_s = 0.0 if check.dry_run else budget_s / len(check.models) / 2
    rows = []
    for model in check.models:
        network = _build(check, model, channels_last=True, flip_test=True).eval()
        image = torch.randn(model["batch_size"], 3, *model["input_size"], device=check.device)
        image = image.contiguous(memory_format=torch.channels_last)
        autocast = check.autocast(True)

        def evaluate(network: Any = network, image: torch.Tensor = image, autocast: Any = autocast) -> None:
            with torch.no_grad(), autocast():
                network.predict_crop(image)

        images_per_s, steps = rate(evaluate, model["batch_size"], target_s, check.sync)
        rows.append({"method": model["method"], "variant": model["variant"], "flip_test": True,
                     "setting": "bf16+channels_last", "images_per_s": images_per_s, "steps": steps})
    return {"rows": rows}


def section_loader(check: Check, budget_s: float, train: dict[str, Any] | None) -> dict[str, Any]:
    """The training loader's images/s with one worker per core, per input size, against the models' consumption."""
    from benchmark.config import load_config
    from benchmark.train import build_augmentation
    from datamodules.datamodule import PoseDataModule

    workers = os.cpu_count() or 1
    augmentation = build_augmentation(load_config(["recipe=hrnet_w32_coco_256x192"]))
    num_train, num_val = SYNTH_IMAGES[check.dry_run]
    sizes = sorted({tuple(m["input_size"]) for m in check.models})
    # A third of the budget per input size measures; generating SynthPose and starting the workers take the rest.
    target_s = 0.0 if check.dry_run else budget_s / len(sizes) / 3
    loader_rate: dict[tuple[int, ...], float] = {}
    for size in sizes:
        batch_size = max(m["batch_size"] for m in check.models if tuple(m["input_size"]) == size)
        datamodule = PoseDataModule(name="synthpose", root=check.synth_root(), format="coco", input_size=size,
                                    augmentation=augmentation, batch_size=batch_size, num_workers=workers,
                                    persistent_workers=True, pin_memory=check.device.type == "cuda",
                                    synth_train=num_train, synth_val=num_val, drop_last=True)
        datamodule.prepare_data()
        datamodule.setup("fit")
        batches = iter(_endless(datamodule.train_dataloader()))
        next(batches)  # worker start-up is not loading
        loader_rate[size], _ = rate(functools.partial(next, batches), batch_size, target_s, lambda: None, warmup=1)
    consumption: dict[str, float] = {}
    for row in (train or {}).get("rows", []):
        if "images_per_s" in row:
            consumption[row["method"]] = max(consumption.get(row["method"], 0.0), row["images_per_s"])
    models = []
    for model in check.models:
        supply = loader_rate[tuple(model["input_size"])]
        demand = consumption.get(model["method"])
        models.append({"method": model["method"], "input_size": model["input_size"], "loader_images_per_s": supply,
                       "train_images_per_s": demand, "starved": None if demand is None else supply < demand})
    return {"workers": workers, "augmentation": "recipe/hrnet_w32_coco_256x192.yaml",
            "loader": [{"input_size": list(size), "images_per_s": r} for size, r in loader_rate.items()],
            "models": models}


def _endless(loader: Any) -> Any:
    while True:
        yield from loader


def section_gpu_tests(check: Check, budget_s: float) -> dict[str, Any]:
    """``pytest -m gpu`` in a subprocess and its counts (a dry run collects the tests without running them)."""
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", str(GPU_TESTS)]
    if check.dry_run:
        command.append("--collect-only")
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=budget_s)
    output = done.stdout + done.stderr
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped|tests? collected)",
                                                     output)}
    collected = counts.get("tests collected", counts.get("test collected", 0))
    result = {"command": " ".join(command[1:]), "returncode": done.returncode, "passed": counts.get("passed", 0),
              "failed": counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0),
              "skipped": counts.get("skipped", 0), "collected": collected or None}
    if done.returncode != 0:
        raise SectionFailed(f"pytest -m gpu exited {done.returncode}: {result}", output[-3000:])
    return result


def section_ddp(check: Check, budget_s: float) -> dict[str, Any]:
    """``benchmark train`` of the Hourglass demo preset with strategy=ddp on one device, a few steps; its record."""
    from benchmark.run_record import read_record

    runs = check.workdir / "runs"
    num_train, num_val = SYNTH_IMAGES[check.dry_run]
    accelerator = "cpu" if check.device.type == "cpu" else "gpu"
    command = [sys.executable, "-m", "benchmark", "train", "recipe=demo_hourglass", "data=synthpose",
               f"data.root={check.synth_root()}", f"data.synth_train={num_train}", f"data.synth_val={num_val}",
               "data.max_samples=8", "data.batch_size=4", "data.val_batch_size=8", "trainer.max_epochs=1",
               "trainer.max_steps=2", "trainer.check_val_every_n_epoch=1", "trainer.enable_progress_bar=false",
               f"trainer.accelerator={accelerator}", "trainer.devices=1", "trainer.strategy=ddp",
               "model.input_size=[64,64]", f"output_dir={check.workdir / 'outputs'}", f"results_dir={runs}",
               "run_name=gpu-check-ddp"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=budget_s)
    output = done.stdout + done.stderr
    records = sorted(runs.glob("*.json"))
    if done.returncode != 0 or not records:
        raise SectionFailed(f"benchmark train with strategy=ddp exited {done.returncode}, "
                            f"{len(records)} record(s) written", output[-3000:])
    record = read_record(records[0])
    return {"command": " ".join(command[1:]), "returncode": done.returncode,
            "backend": "gloo" if accelerator == "cpu" else "nccl", "record": records[0].name,
            "world_size": record["world_size"], "global_step": record["global_step"],
            "strategy": record["config"]["trainer"]["strategy"], "accelerator": record["hardware"]["accelerator"],
            "metrics": sorted(record["metrics"])}


class SectionFailed(Exception):
    """A section's subprocess failed: the message says how, ``output`` holds the end of what it printed."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


# ------------------------------------------------------------------------------ the report


def run_section(name: str, fn: Callable[[], dict[str, Any]], budget_s: float) -> dict[str, Any]:
    """``fn()``'s result with ``status`` ``ok``, or its error with status ``error``: one failing section must not
    stop the check, so every exception is reported (with its traceback) rather than raised."""
    log.info(f"gpu-check: {name} (budget {budget_s:.0f} s)")
    start = time.perf_counter()
    try:
        result = {"status": "ok", **fn()}
    except Exception as error:
        detail = error.output if isinstance(error, SectionFailed) else traceback.format_exc()
        log.error(f"gpu-check: {name} failed: {type(error).__name__}: {error}")
        result = {"status": "error", "error": f"{type(error).__name__}: {error}", "detail": detail[-3000:]}
    result.update(seconds=time.perf_counter() - start, budget_s=budget_s)
    return result


def gpu_check(out: Path, dry_run: bool = False) -> dict[str, Any]:
    """Run every section, write ``out`` (JSON) and ``out`` with suffix ``.md`` atomically; the report."""
    import json

    import torch

    from benchmark.errors import PoseBenchError
    from benchmark.files import atomic_write_text

    if not dry_run and not torch.cuda.is_available():
        raise PoseBenchError("gpu-check needs a CUDA device (torch.cuda.is_available() is false); "
                             "--dry-run runs every section on the CPU at tiny sizes")
    budgets = {name: (budget if not dry_run else min(budget, 60.0)) for name, budget in BUDGET_S.items()}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        check = Check(dry_run=dry_run, device=torch.device("cpu" if dry_run else "cuda"), workdir=Path(tmp),
                      models=model_settings(dry_run))
        sections: dict[str, dict[str, Any]] = {}
        sections["environment"] = run_section("environment", lambda: section_environment(check),
                                              budgets["environment"])
        sections["train"] = run_section("train", lambda: section_train(check, budgets["train"]), budgets["train"])
        sections["evaluation"] = run_section("evaluation", lambda: section_evaluation(check, budgets["evaluation"]),
                                             budgets["evaluation"])
        train = sections["train"] if sections["train"]["status"] == "ok" else None
        sections["loader"] = run_section("loader", lambda: section_loader(check, budgets["loader"], train),
                                         budgets["loader"])
        sections["gpu_tests"] = run_section("gpu_tests", lambda: section_gpu_tests(check, budgets["gpu_tests"]),
                                            budgets["gpu_tests"])
        sections["ddp"] = run_section("ddp", lambda: section_ddp(check, budgets["ddp"]), budgets["ddp"])
    report = {"dry_run": dry_run, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "total_s": time.perf_counter() - started, "models": check.models, "sections": sections}
    atomic_write_text(out, json.dumps(report, indent=2, sort_keys=True) + "\n")
    atomic_write_text(out.with_suffix(".md"), markdown(report))
    rows = sections["train"].get("speed_default_rows", [])
    if rows:
        log.info("benchmark/speed_defaults.py MEASURED rows" + (" (dry run: not to paste)" if dry_run else "") + ":")
        log.info("\n".join(rows))
    log.info(f"gpu-check: wrote {out} and {out.with_suffix('.md')} in {report['total_s']:.0f} s")
    return report


def _number(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: one table per section, failed sections with their error."""
    sections = report["sections"]
    env = sections["environment"]
    lines = [f"# gpu-check{' (dry run: CPU, tiny sizes)' if report['dry_run'] else ''}", "",
             f"{report['created']}, {report['total_s']:.0f} s. Device: {env.get('device')}, torch {env.get('torch')}, "
             f"CUDA {env.get('cuda')}, dense BF16 peak {_number(env.get('peak_bf16_tflops'))} TFLOP/s, "
             f"{env.get('cpu_count')} CPU cores.", "",
             "| section | status | seconds | budget s |", "|---|---|---|---|"]
    lines += [f"| {name} | {s['status']} | {s['seconds']:.1f} | {s['budget_s']:.0f} |" for name, s in sections.items()]
    for name, section in sections.items():
        if section["status"] != "ok":
            lines += ["", f"## {name}: error", "", f"`{section['error']}`", "", "```text", section["detail"], "```"]
    train = sections["train"]
    if train["status"] == "ok":
        lines += ["", "## Training (MFU: 3 x 2 x forward GMACs x images/s / dense BF16 peak)", "",
                  "| method | variant | setting | images/s | MFU | peak memory MiB | GMACs |",
                  "|---|---|---|---|---|---|---|"]
        for r in train["rows"]:
            if "images_per_s" in r:
                lines.append(f"| {r['method']} | {r['variant']} | {r['setting']} | {r['images_per_s']:.1f} | "
                             f"{_number(r['mfu'], 3)} | {_number(r['peak_memory_mib'], 0)} | {r['gmacs']:.2f} |")
            else:
                lines.append(f"| {r['method']} | {r['variant']} | {r['setting']} | "
                             f"{r.get('skipped') or r.get('error')} | | | |")
        lines += ["", "Rows for `benchmark/speed_defaults.py` `MEASURED`"
                  + (" (dry run: not to paste)" if report["dry_run"] else "") + ":", "", "```python",
                  *train["speed_default_rows"], "```"]
    if sections["evaluation"]["status"] == "ok":
        lines += ["", "## Evaluation (flip test, bf16-mixed + channels_last)", "", "| method | variant | images/s |",
                  "|---|---|---|"]
        lines += [f"| {r['method']} | {r['variant']} | {r['images_per_s']:.1f} |"
                  for r in sections["evaluation"]["rows"]]
    loader = sections["loader"]
    if loader["status"] == "ok":
        lines += ["", f"## Data loader ({loader['workers']} workers, SynthPose, {loader['augmentation']}) vs the GPU",
                  "", "| method | input | loader images/s | train images/s (best) | GPU starved |",
                  "|---|---|---|---|---|"]
        lines += [f"| {m['method']} | {m['input_size'][0]}x{m['input_size'][1]} | {m['loader_images_per_s']:.1f} | "
                  f"{_number(m['train_images_per_s'])} | {m['starved']} |" for m in loader["models"]]
    tests = sections["gpu_tests"]
    if tests["status"] == "ok":
        lines += ["", "## GPU tests", "", f"`{tests['command']}`: {tests['passed']} passed, {tests['failed']} failed, "
                  f"{tests['skipped']} skipped, {tests['collected'] or '–'} collected."]
    ddp = sections["ddp"]
    if ddp["status"] == "ok":
        lines += ["", "## DDP smoke run", "",
                  f"`{ddp['command']}`: exit {ddp['returncode']}, backend {ddp['backend']}, "
                  f"record {ddp['record']} (world size {ddp['world_size']}, {ddp['global_step']} steps)."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``gpu-check [--out PATH] [--dry-run]``."""
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"JSON report (the Markdown one goes beside it with suffix .md; default {DEFAULT_OUT})")
    parser.add_argument("--dry-run", action="store_true",
                        help="every section on the CPU at tiny sizes, in well under a minute (no GPU needed)")


def run(args: argparse.Namespace) -> int:
    """Exit 0 when every section is ok, 1 when one failed (the report says which and why)."""
    report = gpu_check(args.out, dry_run=args.dry_run)
    return 0 if all(s["status"] == "ok" for s in report["sections"].values()) else 1
