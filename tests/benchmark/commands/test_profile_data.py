"""Loader profile: a short run on the COCO fixtures reports the pipeline/floor ratio and stays near the target."""

from __future__ import annotations

import cv2
import torch

from benchmark.cli import main
from benchmark.commands.profile_data import profile_data


def test_short_profile_reports_ratio_under_bound(capsys):
    threads = torch.get_num_threads(), cv2.getNumThreads()
    result = profile_data(samples=20)
    assert result["samples"] == 20 and result["records"] >= 10 and result["input_size"] == [256, 192]
    assert result["target_ratio"] == 1.3 and result["meets_target"] == (result["ratio"] <= 1.3)
    assert result["floor_ms"] > 0.0 and result["pipeline_ms"] > result["floor_ms"] * 0.9
    assert abs(result["ratio"] - result["pipeline_ms"] / result["floor_ms"]) < 1e-12
    # Target is 1.3 for the full 200-sample run; a short run on a shared CPU gets headroom.
    assert result["ratio"] < 1.6
    assert "ratio" in capsys.readouterr().out
    # The one-core limit is undone afterwards.
    assert (torch.get_num_threads(), cv2.getNumThreads()) == threads


def test_cli_runs_the_profile(capsys):
    assert main(["profile", "data", "--samples", "3"]) == 0
    assert "floor (cv2.imread + one warpAffine)" in capsys.readouterr().out
