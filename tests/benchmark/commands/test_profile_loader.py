"""Loader throughput profile: what it iterates and what it reports, never how fast anything ran."""

from __future__ import annotations

import pytest
import torch

from benchmark.cli import main
from benchmark.commands.profile_loader import profile_loader
from benchmark.errors import PoseBenchError


def test_the_report_has_every_setting_and_consistent_ratios(synthpose_root, capsys):
    threads = torch.get_num_threads()
    result = profile_loader(root=synthpose_root, input_size=(64, 64), batch_size=16, epochs=1, workers=(0, 1))
    assert {key: result[key] for key in ("data", "format", "input_size", "batch_size", "epochs", "reduced_decode")} == {
        "data": "synthpose", "format": "mpii", "input_size": [64, 64], "batch_size": 16, "epochs": 1,
        "reduced_decode": True}
    assert result["images"] == 696  # the persons of the session's 400 SynthPose training images, one epoch
    serial, one = result["settings"]
    assert (serial["num_workers"], one["num_workers"]) == (0, 1)
    assert serial["ratio"] == 1.0 and one["ratio"] == one["img_per_s"] / serial["img_per_s"]
    assert serial["target"] is None and serial["meets_target"] is None
    assert one["target"] == 0.95 and one["meets_target"] == (one["ratio"] >= 0.95)
    assert all(s["img_per_s"] > 0 and s["main_cpu_ms_per_batch"] > 0 for s in result["settings"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("loader profile: synthpose (mpii) train, 64x64, batch 16, 1 epochs of 696 images after a "
                        "warm-up epoch, reduced decode on")
    assert lines[1].startswith("  num_workers=0: ") and "1.00x num_workers=0," in lines[1]
    assert lines[2].startswith("  num_workers=1: ")
    assert f"{one['ratio']:.2f}x num_workers=0 (target >= 0.95: " in lines[2]
    assert torch.get_num_threads() == threads  # the one-thread limit is undone


def test_bad_settings_are_user_errors(synthpose_root):
    with pytest.raises(PoseBenchError, match=r"workers >= 0, got 32, 3, \[-1\]"):
        profile_loader(root=synthpose_root, workers=(-1,))


def test_cli_runs_the_profile(synthpose_root, capsys):
    assert main(["profile", "loader", "--root", str(synthpose_root), "--input-size", "64", "64", "--epochs", "1",
                 "--workers", "0", "--no-reduced-decode"]) == 0
    out = capsys.readouterr().out
    assert "reduced decode off" in out and "num_workers=0:" in out
