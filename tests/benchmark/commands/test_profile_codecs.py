"""Tests for benchmark/commands/profile_codecs.py: the report's rows, the loop floor against hand-computed values,
and the vectorised codecs agreeing with it. Timings are the benchmark's printout, never asserted."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.commands import profile_codecs as P
from benchmark.errors import PoseBenchError


def test_report_has_every_row_and_the_two_implementations_agree(capsys) -> None:
    result = P.profile_codecs(batch=4, joints=5, height=16, width=12, repeats=1)
    assert {key: result[key] for key in ("batch", "joints", "height", "width", "repeats", "device")} == {
        "batch": 4, "joints": 5, "height": 16, "width": 12, "repeats": 1, "device": "cpu"}
    assert tuple(result["rows"]) == P.ROWS
    for name, row in result["rows"].items():
        assert set(row) == {"vectorised_ms", "loop_ms", "speedup", "max_difference"}, name
        assert row["speedup"] == pytest.approx(row["loop_ms"] / row["vectorised_ms"]), name
        # Both implementations compute the same thing (float32 rounding apart).
        assert row["max_difference"] < 1e-4, name
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("codecs: batch 4 x 5 joints, heatmap 16x12")
    assert [line.split()[0] for line in printed[2:]] == list(P.ROWS)


def test_loop_floor_matches_hand_computed_targets_and_peaks() -> None:
    # Input x = 21.5 is heatmap x = (21.5 + 0.5) / 4 - 0.5 = 5; input y = 17.5 is heatmap y = 4.
    heatmaps, weights = P._loop_encode(np.array([[[21.5, 17.5]]], np.float32), np.ones((1, 1), np.float32),
                                       (10, 20), unbiased=False)
    assert weights.tolist() == [[1.0]]
    assert heatmaps[0, 0, 4, 5] == 1.0
    assert heatmaps[0, 0, 4, 6] == pytest.approx(math.exp(-1 / (2 * P.SIGMA**2)), rel=1e-6)
    # The patch reaches 3 sigma = 6 pixels from the centre and stops there.
    assert heatmaps[0, 0, 4, 11] == pytest.approx(math.exp(-36 / (2 * P.SIGMA**2)), rel=1e-6)
    assert heatmaps[0, 0, 4, 12] == 0.0
    # One peak at (x 3, y 2), its right and lower neighbours higher than the left and upper ones.
    heatmap = np.zeros((1, 1, 6, 7), np.float32)
    heatmap[0, 0, 2, 3], heatmap[0, 0, 2, 4], heatmap[0, 0, 3, 3] = 1.0, 0.5, 0.4
    coords, scores = P._loop_argmax(heatmap)
    assert coords.tolist() == [[[3.0, 2.0]]] and scores.tolist() == [[1.0]]
    coords, _ = P._loop_quarter(heatmap)
    assert coords.tolist() == [[[3.25, 2.25]]]


def test_cli_profile_codecs_prints_every_row(capsys) -> None:
    assert main(["profile", "codecs", "--batch", "2", "--joints", "3", "--height", "16", "--width", "12",
                 "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert f"torch threads {torch.get_num_threads()}" in out and all(name in out for name in P.ROWS)


def test_an_empty_batch_is_a_user_error(capsys) -> None:
    with pytest.raises(PoseBenchError, match="batch"):
        P.profile_codecs(batch=0)
    assert main(["profile", "codecs", "--batch", "0"]) == 2
    assert "error: batch, joints, height, width and repeats must be >= 1" in capsys.readouterr().err
