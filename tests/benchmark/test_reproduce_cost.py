"""``benchmark.reproduce_cost``: the estimate arithmetic by hand, the gpu-check MFU, the recipes, the README table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmark import reproduce_cost
from benchmark.errors import PoseBenchError
from benchmark.reproduce_cost import SET_SIZES, estimate, measured_mfu, recipe_estimate, recipe_setting

README = Path(__file__).resolve().parents[2] / "README.md"


def test_estimate_hand_computed() -> None:
    # 5 GMACs: a forward is 1e10 FLOPs, a training image 3e10. Train: 3e10 x 5,000 persons x 10 epochs = 1.5e15;
    # evaluation: 1e10 x 2 (flip) x 1,000 x 15 = 3e14; 1.8e15 FLOPs at 1 TFLOP/s x MFU 0.5 = 3,600 s = 1 h.
    # 8 GPUs at 80%: 1 / 6.4 = 0.15625 h, 1.25 GPU-hours. 5e11 / 3e10 = 16.67 images/s x 100 ms = 1.67 -> 2 cores.
    result = estimate(gmacs=5.0, train_images=5_000, epochs=10, eval_images=1_000, evaluations=15, flip_test=True,
                      mfu=0.5, loader_ms_per_image=100.0, peak_tflops=1.0, gpus=8, scaling=0.8)
    assert result["train_pflop"] == pytest.approx(1.5, rel=1e-12)
    assert result["eval_pflop"] == pytest.approx(0.3, rel=1e-12)
    assert result["hours_1_gpu"] == pytest.approx(1.0, rel=1e-12)
    assert result["gpu_hours_1_gpu"] == pytest.approx(1.0, rel=1e-12)
    assert result["hours_8_gpus"] == pytest.approx(0.15625, rel=1e-12)
    assert result["gpu_hours_8_gpus"] == pytest.approx(1.25, rel=1e-12)
    assert result["gpu_train_images_per_s"] == pytest.approx(50 / 3, rel=1e-12)
    assert result["cpu_cores_per_gpu"] == 2
    # Without flip test the evaluation halves.
    no_flip = estimate(5.0, 5_000, 10, 1_000, 15, False, 0.5, 100.0, peak_tflops=1.0, gpus=8, scaling=0.8)
    assert no_flip["eval_pflop"] == pytest.approx(0.15, rel=1e-12)


def _report(path: Path, dry_run: bool, rows: list[dict]) -> Path:
    report = {"dry_run": dry_run, "sections": {"environment": {"device": "NVIDIA H100 80GB HBM3"},
                                               "train": {"rows": rows}}}
    path.write_text(json.dumps(report))
    return path


def test_measured_mfu_takes_the_best_setting_of_a_gpu_report(tmp_path: Path) -> None:
    rows = [{"variant": "hrnet-w32", "setting": "fp32", "mfu": 0.1},
            {"variant": "hrnet-w32", "setting": "bf16+channels_last", "mfu": 0.35},
            {"variant": "hrnet-w32", "setting": "bf16+channels_last+compile", "skipped": "dry run"},
            {"variant": "hourglass-8", "setting": "bf16", "mfu": None}]
    assert measured_mfu(_report(tmp_path / "gpu.json", False, rows)) == {
        "hrnet-w32": (0.35, "measured: gpu-check, bf16+channels_last, NVIDIA H100 80GB HBM3")}
    assert measured_mfu(_report(tmp_path / "dry.json", True, rows)) == {}
    assert measured_mfu(tmp_path / "absent.json") == {}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(PoseBenchError, match="bad.json"):
        measured_mfu(tmp_path / "bad.json")


def test_every_paper_recipe_has_set_sizes_and_coco_evaluates_on_the_detections() -> None:
    settings = {name: recipe_setting(name) for name in reproduce_cost.paper_recipes()}
    assert "hrnet_w32_coco_256x192" in settings and not any(name.startswith("demo_") for name in settings)
    assert all(s["data"] in SET_SIZES for s in settings.values())
    coco = settings["hrnet_w32_coco_256x192"]
    assert (coco["variant"], coco["input_size"], coco["epochs"], coco["evaluations"]) == ("hrnet-w32", [256, 192], 210,
                                                                                          211)
    row = recipe_estimate(coco, gmacs=7.0, mfu={}, loader_ms_per_image=2.0, loader_source="test")
    assert (row["train_images"], row["eval_images"], row["mfu"], row["mfu_source"]) == (149_813, 104_125, 0.30,
                                                                                       "assumed")


@pytest.mark.slow
def test_readme_table_is_the_commands_output() -> None:
    text = README.read_text()
    block = re.search(r"<!-- reproduce-cost:begin -->\n(.*?)\n<!-- reproduce-cost:end -->", text, re.S)
    assert block, "README.md lost its reproduce-cost block"
    table = reproduce_cost.format_table(reproduce_cost.recipe_estimates())
    assert block.group(1) == table, ("README.md's reproduce-cost block is stale: paste the table `python -m benchmark "
                                     "summary` prints after 'Time and cost to reproduce the paper recipes'")
