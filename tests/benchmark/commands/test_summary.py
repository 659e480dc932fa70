"""``summary``: the README's contract (keys, MAC convention, paper figures), unknown variants, and ``profile model``."""

from __future__ import annotations

import json

import pytest
import torch

from benchmark.cli import main
from benchmark.commands.summary import profile_model, summary
from benchmark.flops import count_gflops

CONTRACT_KEYS = {"name", "method", "params", "gflops", "paper_gflops", "input_size"}


def test_summary_json_has_the_contract_keys(capsys):
    assert main(["summary", "--json", "--variant", "hourglass-tiny", "--variant", "simplebaseline-tiny"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["hourglass-tiny", "simplebaseline-tiny"]
    for row in rows:
        assert CONTRACT_KEYS <= set(row)
        assert isinstance(row["params"], int) and row["params"] > 0 and row["gflops"] > 0
        assert len(row["input_size"]) == 2
    assert rows[0]["method"] == "hourglass" and rows[0]["input_size"] == [128, 128]
    assert rows[0]["reproduce"] == [] and rows[1]["reproduce"] == []  # no paper recipe trains a tiny variant


def test_summary_gives_the_cost_to_reproduce_the_variants_recipes(capsys):
    assert main(["summary", "--json", "--variant", "tompson"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    (recipe,) = row["reproduce"]
    assert (recipe["recipe"], recipe["variant"], recipe["gmacs"]) == ("tompson_mpii", "tompson", row["gflops"])
    assert (recipe["train_images"], recipe["eval_images"], recipe["epochs"]) == (22_246, 2_958, 140)
    hours = recipe["estimate"]["hours_1_gpu"]
    assert recipe["estimate"]["hours_8_gpus"] == pytest.approx(hours / (8 * recipe["scaling_efficiency"]), rel=1e-12)
    assert main(["summary", "--variant", "tompson"]) == 0
    text = capsys.readouterr().out
    assert "| tompson | tompson | 256x256 |" in text and "| tompson_mpii | tompson | 50.91 | 140 x 22,246 |" in text
    assert "An estimate, not a measurement" in text


def test_gflops_are_multiply_accumulates():
    # Conv 3 -> 8, 3x3, 'same' on 16x16: 3 * 8 * 9 * 256 MACs = 55,296; no bias FLOPs are counted.
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    assert count_gflops(conv, (16, 16)) == pytest.approx(55_296 / 1e9, rel=0, abs=1e-15)


def test_unknown_variant_is_named(capsys):
    assert main(["summary", "--variant", "hourglass-9"]) == 2
    assert "hourglass-9" in capsys.readouterr().err


@pytest.mark.slow
def test_paper_variants_match_the_paper_parameter_counts():
    rows = {r["name"]: r for r in summary(["simplebaseline-res50", "simplebaseline-res101",
                                           "simplebaseline-res152", "hourglass-8"])}
    for name, params_m, paper_gflops in (("simplebaseline-res50", 34.0, 8.9), ("simplebaseline-res101", 53.0, 12.4),
                                         ("simplebaseline-res152", 68.6, 15.7), ("hourglass-8", 25.1, None)):
        assert rows[name]["params"] / 1e6 == pytest.approx(params_m, rel=0.02), name
        assert rows[name]["paper_gflops"] == paper_gflops
    assert rows["simplebaseline-res50"]["input_size"] == [256, 192]
    # ResNet-50 at 256x192 (~4.0 G MACs) plus the three deconvolutions (~1.4 G MACs).
    assert rows["simplebaseline-res50"]["gflops"] == pytest.approx(5.43, abs=0.02)


def test_profile_model_reports_throughput_on_cpu():
    report = profile_model("simplebaseline-tiny", batch_size=2, steps=1, warmup=0, device="cpu")
    assert report["forward_images_per_s"] > 0 and report["forward_backward_images_per_s"] > 0
    assert report["peak_memory_mib"] is None and report["input_size"] == [128, 96]


def test_profile_model_cli_prints_json_and_rejects_bad_settings(capsys):
    assert main(["profile", "model", "method=hourglass-tiny", "batch_size=1", "steps=1", "device=cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["name"] == "hourglass-tiny" and report["device"] == "cpu" and report["batch_size"] == 1
    assert main(["profile", "model", "batchsize=1"]) == 2
    assert "method=VARIANT" in capsys.readouterr().err
    assert main(["profile", "model", "method=hourglass-tiny", "steps=two"]) == 2
    assert "(batch_size and steps are integers)" in capsys.readouterr().err
    assert main(["profile", "model", "method=hourglass-9"]) == 2
    assert "error: unknown variant(s) hourglass-9; registered: " in capsys.readouterr().err


@pytest.mark.slow
def test_measure_loader_times_synthpose_and_keeps_the_json_clean(capsys):
    assert main(["summary", "--json", "--variant", "tompson", "--measure-loader"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    (recipe,) = row["reproduce"]
    assert recipe["loader_source"].startswith("measured now") and recipe["loader_ms_per_image"] > 0
