"""gpu-check: the dry run exercises every section on the CPU and writes a sane report; MFU and peaks by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.commands.gpu_check import RECIPES, SETTINGS, gpu_check, mfu, peak_tflops
from benchmark.speed_defaults import Measurement

SECTIONS = {"environment", "train", "evaluation", "loader", "gpu_tests", "ddp"}
GPU_TESTS = 6  # tests/gpu/test_cuda_paths.py: 3 tests, one of them for each of the 3 decoders


def test_peaks_are_the_datasheets_dense_bf16_figures():
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("NVIDIA H200") == 989.4
    assert peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops("Tesla T4") is None and peak_tflops(None) is None


def test_mfu_is_six_flops_per_forward_multiply_accumulate():
    # 10 GMACs forward = 20 GFLOPs; a train step is 3 forwards = 60 GFLOPs per image; 100 images/s = 6 TFLOP/s.
    assert mfu(10.0, 100.0, 989.4) == pytest.approx(6.0 / 989.4, rel=1e-12)
    assert mfu(10.0, 100.0, None) is None


# The tests of the dry run's report are slow: it trains tiny models and runs two subprocesses (pytest, a DDP run).
@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("gpu-check") / "report.json"
    returned = gpu_check(out, dry_run=True)
    assert json.loads(out.read_text()) == json.loads(json.dumps(returned))
    return returned, out


@pytest.mark.slow
def test_the_dry_run_runs_every_section_ok(report):
    result, _ = report
    assert result["dry_run"] is True
    assert set(result["sections"]) == SECTIONS
    failed = {name: s.get("error") for name, s in result["sections"].items() if s["status"] != "ok"}
    assert failed == {}


@pytest.mark.slow
def test_the_dry_run_measures_every_model_in_every_eager_setting(report):
    result, _ = report
    rows = result["sections"]["train"]["rows"]
    assert {(r["method"], r["setting"]) for r in rows} == {(m, s.name) for m, _ in RECIPES for s in SETTINGS}
    measured = [r for r in rows if "images_per_s" in r]
    assert {r["setting"] for r in measured} == {s.name for s in SETTINGS if not s.compile}
    assert all(r["images_per_s"] > 0 and r["gmacs"] > 0 and r["loss_finite"] for r in measured)
    assert all(r["mfu"] is None and r["peak_memory_mib"] is None for r in measured)  # the CPU has no listed peak
    assert all(r["skipped"] == "dry run" for r in rows if "images_per_s" not in r)
    assert all(r["images_per_s"] > 0 for r in result["sections"]["evaluation"]["rows"])


@pytest.mark.slow
def test_the_speed_default_rows_are_python_to_paste(report):
    result, _ = report
    source = "\n".join(result["sections"]["train"]["speed_default_rows"])
    table = eval("{" + source + "}", {"Measurement": Measurement})  # noqa: S307 - the report's own rows
    assert set(table) == {(m, "cpu", option) for m, _ in RECIPES for option in ("channels_last", "bf16")}
    assert all(row.ratio > 0 for row in table.values())


@pytest.mark.slow
def test_the_loader_and_the_subprocess_sections_report_what_they_ran(report):
    result, _ = report
    loader = result["sections"]["loader"]
    assert loader["workers"] >= 1 and all(entry["images_per_s"] > 0 for entry in loader["loader"])
    assert {m["method"] for m in loader["models"]} == {m for m, _ in RECIPES}
    assert all(m["starved"] == (m["loader_images_per_s"] < m["train_images_per_s"]) for m in loader["models"])
    tests = result["sections"]["gpu_tests"]
    assert (tests["collected"], tests["passed"], tests["failed"]) == (GPU_TESTS, 0, 0)
    ddp = result["sections"]["ddp"]
    assert (ddp["returncode"], ddp["backend"], ddp["strategy"], ddp["world_size"], ddp["global_step"]) == \
        (0, "gloo", "ddp", 1, 2)


@pytest.mark.slow
def test_the_markdown_report_sits_beside_the_json(report):
    _, out = report
    text = out.with_suffix(".md").read_text()
    assert text.startswith("# gpu-check (dry run: CPU, tiny sizes)")
    for heading in ("## Training", "## Evaluation", "## Data loader", "## GPU tests", "## DDP smoke run"):
        assert heading in text
