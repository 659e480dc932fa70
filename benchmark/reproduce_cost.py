"""Time and cost to reproduce each paper recipe on H100 GPUs: an ESTIMATE from counted FLOPs, not a measurement.

``python -m benchmark summary`` prints it (README.md, "Time and cost to reproduce") and ``summary --json`` gives
each variant's recipes under ``reproduce``. What each number rests on:

- Counted: the forward multiply-accumulates (GMACs) at the recipe's input size (``benchmark.flops.model_cost``).
  Training an image costs three forward passes (the backward pass computes the gradients of the activations and
  of the weights, each about one forward), at 2 FLOPs per MAC: ``6 x GMACs x 1e9`` FLOPs.
- From the recipe: ``trainer.max_epochs`` passes over the train split; evaluation is a validation every
  ``trainer.check_val_every_n_epoch`` epochs plus the final test (forward only, twice with ``model.flip_test``),
  on the ground-truth boxes or the person detections (``data.val_boxes``).
- Set sizes (persons): MPII train 22,246 and val 2,958 (``annot/train.json`` / ``valid.json``, the HRNet and
  mmpose split; docs/fidelity.md); COCO train2017 149,813 persons with keypoints in 118,287 images and val2017
  6,352 (what the HRNet code's COCO loader prints: "=> load 149813 samples", "=> load 6352 samples"), 104,125
  boxes in the 56.4-AP person detections (``COCO_val2017_detections_AP_H_56_person.json``, "Total boxes: 104125"
  when the SimpleBaseline / HRNet code loads it); LSP 1,000 train and 1,000 test images; LSP-extended 10,000
  train images (Johnson & Everingham, CVPR'11), no val split.
- Peak: 989.4 TFLOP/s, the dense BF16 tensor-core rate of one H100 SXM (NVIDIA's H100 datasheet gives 1,979 with
  2:4 sparsity, twice the dense rate), taken from ``benchmark/commands/gpu_check.py`` ``PEAK_BF16_TFLOPS``.
- MFU (model FLOPs utilisation): MEASURED where ``results/gpu-check.json`` (``python -m benchmark gpu-check`` on a
  GPU) has a train row of the variant (its best setting), else ASSUMED ``ASSUMED_MFU``. Small models do not reach
  it: their times are lower bounds, and their core counts say the loader, not the GPU, sets the pace.
- 8 GPUs: ASSUMED ``ASSUMED_SCALING`` data-parallel efficiency, wall time = one GPU's time / (8 x efficiency).
- CPU cores to keep one GPU fed = its train images/s x one core's loader time per image. That time is MEASURED by
  ``python -m benchmark profile data`` (the COCO 256x192 training pipeline with photometric augmentation on one
  core of the 2-core development machine, README.md "Loader speed"); ``summary --measure-loader`` measures it
  again on this machine on generated SynthPose images.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.commands.gpu_check import PEAK_BF16_TFLOPS
from benchmark.config import lookup
from benchmark.errors import PoseBenchError

H100_PEAK_TFLOPS = dict(PEAK_BF16_TFLOPS)["H100"]
ASSUMED_MFU = 0.30
ASSUMED_SCALING = 0.90
GPUS = 8
LOADER_MS_PER_IMAGE = 1.69
"""One core's time per COCO 256x192 training image, ``python -m benchmark profile data`` (README.md)."""
GPU_CHECK_REPORT = Path("results/gpu-check.json")


@dataclass(frozen=True)
class SetSizes:
    """Persons (samples) of a data set's splits; ``detections``: val boxes when ``data.val_boxes=detections``."""

    train: int
    val: int | None
    detections: int | None = None


SET_SIZES: dict[str, SetSizes] = {
    "mpii": SetSizes(train=22_246, val=2_958),
    "coco": SetSizes(train=149_813, val=6_352, detections=104_125),
    "lsp": SetSizes(train=1_000, val=1_000),
    "lsp_extended": SetSizes(train=9_000, val=1_000),
}


def estimate(gmacs: float, train_images: int, epochs: int, eval_images: int, evaluations: int, flip_test: bool,
             mfu: float, loader_ms_per_image: float, peak_tflops: float = H100_PEAK_TFLOPS, gpus: int = GPUS,
             scaling: float = ASSUMED_SCALING) -> dict[str, float | int]:
    """The estimate arithmetic (module docstring): FLOPs, hours on one GPU and on ``gpus``, cores per GPU."""
    forward_flops = 2 * gmacs * 1e9
    train_flops = 3 * forward_flops * train_images * epochs
    eval_flops = forward_flops * (2 if flip_test else 1) * eval_images * evaluations
    sustained = peak_tflops * 1e12 * mfu  # FLOP/s one GPU delivers
    hours_one = (train_flops + eval_flops) / sustained / 3600
    hours_many = hours_one / (gpus * scaling)
    train_images_per_s = sustained / (3 * forward_flops)
    return {"train_pflop": train_flops / 1e15, "eval_pflop": eval_flops / 1e15,
            "hours_1_gpu": hours_one, "gpu_hours_1_gpu": hours_one,
            f"hours_{gpus}_gpus": hours_many, f"gpu_hours_{gpus}_gpus": hours_many * gpus,
            "gpu_train_images_per_s": train_images_per_s,
            "cpu_cores_per_gpu": math.ceil(train_images_per_s * loader_ms_per_image / 1e3)}


def measured_mfu(path: Path = GPU_CHECK_REPORT) -> dict[str, tuple[float, str]]:
    """``{variant: (best MFU, where from)}`` of a GPU ``gpu-check`` report (none for a dry run or no report)."""
    if not path.is_file():
        return {}
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise PoseBenchError(f"{path}: not a gpu-check JSON report ({error}); rerun python -m benchmark gpu-check "
                             "or delete it") from error
    if report.get("dry_run", True):
        return {}
    device = lookup(report, "sections.environment.device", default="GPU")
    best: dict[str, tuple[float, str]] = {}
    for row in lookup(report, "sections.train.rows", default=[]):
        mfu = row.get("mfu")
        if mfu is not None and mfu > best.get(row["variant"], (0.0, ""))[0]:
            best[row["variant"]] = (float(mfu), f"measured: gpu-check, {row['setting']}, {device}")
    return best


def measure_loader_ms(samples: int = 64) -> float:
    """One core's ms per 256x192 training image of generated SynthPose (``profile data``'s pipeline side)."""
    from benchmark.commands.profile_data import profile_data
    from datamodules.synthpose import generate_synthpose

    # The profiler logs its own report to stdout, which would break ``summary --json``; only its number is used.
    profiler_log = logging.getLogger(profile_data.__module__)
    level = profiler_log.level
    profiler_log.setLevel(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory(prefix="posebench-loader-") as tmp:
            generate_synthpose(Path(tmp), num_train=32, num_val=4, seed=0, progress=False)
            result = profile_data("synthpose", Path(tmp), split="train", input_size=(256, 192), samples=samples,
                                  repeats=2)
    finally:
        profiler_log.setLevel(level)
    return float(result["pipeline_ms"])


def paper_recipes() -> list[str]:
    """Recipe names that reproduce a paper (every ``recipe/*.yaml`` but the ``demo_*`` presets)."""
    from benchmark.config import available

    return [name for name in available("recipe") if not name.startswith("demo_")]


def recipe_setting(name: str) -> dict[str, Any]:
    """What the estimate needs from recipe ``name``: variant, data, input size, kwargs, epochs, evaluations."""
    from benchmark.config import load_config, to_dict
    from models import VARIANTS

    config = to_dict(load_config([f"recipe={name}"]))
    variant = config["model"]["variant"]
    input_size = config["model"]["input_size"] or VARIANTS[variant].input_size
    epochs = int(config["trainer"]["max_epochs"])
    every = int(lookup(config, "trainer.check_val_every_n_epoch", default=1) or 1)
    return {"recipe": name, "variant": variant, "data": config["data"]["name"],
            "val_boxes": config["data"]["val_boxes"], "input_size": [int(v) for v in input_size],
            "kwargs": dict(config["model"]["kwargs"]), "epochs": epochs,
            "flip_test": bool(config["model"]["flip_test"]),
            "evaluations": epochs // every + (1 if config["test_after_fit"] else 0)}


def recipe_gmacs(setting: dict[str, Any]) -> float:
    """Forward GMACs of the recipe's model at its input size, counted on the meta device."""
    from benchmark.flops import model_cost
    from models import build_random

    size = tuple(setting["input_size"])
    return model_cost(lambda: build_random(setting["variant"], **{**setting["kwargs"], "input_size": list(size)}),
                      size)[1]


def recipe_estimate(setting: dict[str, Any], gmacs: float, mfu: dict[str, tuple[float, str]],
                    loader_ms_per_image: float, loader_source: str) -> dict[str, Any]:
    """One recipe's row: its setting, GMACs, the assumptions used, and ``estimate`` (None without set sizes)."""
    sizes = SET_SIZES.get(setting["data"])
    value, source = mfu.get(setting["variant"], (ASSUMED_MFU, "assumed"))
    row = {key: setting[key] for key in ("recipe", "variant", "data", "input_size", "epochs", "flip_test")}
    row.update(gmacs=gmacs, mfu=value, mfu_source=source, peak_tflops=H100_PEAK_TFLOPS, gpus=GPUS,
               scaling_efficiency=ASSUMED_SCALING, loader_ms_per_image=loader_ms_per_image,
               loader_source=loader_source, train_images=None, eval_images=None, evaluations=None, estimate=None)
    if sizes is None:
        return row
    val = sizes.detections if setting["val_boxes"] == "detections" else sizes.val
    evaluations = setting["evaluations"] if val is not None else 0
    row.update(train_images=sizes.train, eval_images=val or 0, evaluations=evaluations)
    row["estimate"] = estimate(gmacs, sizes.train, setting["epochs"], val or 0, evaluations, setting["flip_test"],
                               value, loader_ms_per_image)
    return row


def _hours(value: float | None) -> str:
    return "–" if value is None else "< 0.01" if value < 0.005 else f"{value:.2f}"


def format_table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of recipe estimates ``summary`` prints and README.md holds, and what it rests on."""
    lines = [f"| recipe | variant | GMACs | epochs x train persons | MFU | 1 H100: hours | {GPUS} H100: hours | "
             f"{GPUS} H100: GPU-hours | CPU cores per GPU |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        e = r["estimate"] or {}
        mfu = f"{r['mfu']:.2f} " + ("assumed" if r["mfu_source"] == "assumed" else "measured")
        train = "?" if r["train_images"] is None else f"{r['train_images']:,}"
        cells = [_hours(e.get(key)) for key in ("hours_1_gpu", f"hours_{GPUS}_gpus", f"gpu_hours_{GPUS}_gpus")]
        lines.append(f"| {r['recipe']} | {r['variant']} | {r['gmacs']:.2f} | {r['epochs']} x {train} | {mfu} | "
                     f"{' | '.join(cells)} | {e.get('cpu_cores_per_gpu', '–')} |")
    loader = rows[0]["loader_ms_per_image"] if rows else LOADER_MS_PER_IMAGE
    loader_source = rows[0]["loader_source"] if rows else "measured by profile data, README.md"
    lines += [
        "",
        "An estimate, not a measurement (benchmark/reproduce_cost.py):",
        "- FLOPs: 6 x GMACs per training image (a forward and a backward pass of about two forwards) x epochs x",
        "  train-set persons, plus every validation and the final test (forward only, x2 with flip test).",
        f"- One H100 SXM: {H100_PEAK_TFLOPS} dense BF16 TFLOP/s x MFU; MFU assumed {ASSUMED_MFU:.2f} where",
        "  `gpu-check` (results/gpu-check.json) has not measured the variant.",
        f"- {GPUS} GPUs: an assumed {ASSUMED_SCALING:.0%} data-parallel scaling efficiency.",
        f"- CPU cores per GPU: its train images/s x {loader:.2f} ms per image on one core ({loader_source}).",
        "- Small models do not reach the MFU: their hours are lower bounds and the loader sets their pace.",
    ]
    return "\n".join(lines)


def recipe_estimates(variants: list[str] | None = None, measure_loader: bool = False) -> list[dict[str, Any]]:
    """``recipe_estimate`` of every paper recipe (only those of ``variants`` when given)."""
    settings = [recipe_setting(name) for name in paper_recipes()]
    if variants:
        settings = [s for s in settings if s["variant"] in variants]
    if measure_loader:
        loader_ms, source = measure_loader_ms(), "measured now by summary --measure-loader on SynthPose"
    else:
        loader_ms, source = LOADER_MS_PER_IMAGE, "measured by profile data, README.md"
    mfu = measured_mfu()
    return [recipe_estimate(s, recipe_gmacs(s), mfu, loader_ms, source) for s in settings]
