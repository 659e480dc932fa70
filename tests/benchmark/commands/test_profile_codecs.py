"""Tests for benchmark/commands/profile_codecs.py: the returned structure, agreement of the two implementations,
and the speed-up of vectorised DARK decoding over the per-keypoint loop."""

from __future__ import annotations

import pytest
import torch

from benchmark.cli import main
from benchmark.commands.profile_codecs import ROWS, profile_codecs


@pytest.fixture
def one_torch_thread():
    """Time with one torch thread: on a shared machine a descheduled OpenMP worker stalls every
    parallel region of the vectorised code (the loop is single-threaded), which makes ratios noisy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_profile_codecs_structure_agreement_and_speedup(one_torch_thread, capsys) -> None:
    result = profile_codecs(batch=16, joints=17, height=64, width=48, repeats=5)
    assert {key: result[key] for key in ("batch", "joints", "height", "width", "repeats", "threads", "device")} == {
        "batch": 16, "joints": 17, "height": 64, "width": 48, "repeats": 5, "threads": 1, "device": "cpu",
    }
    assert result["cpus"] >= 1 and result["load_average"] >= 0
    assert tuple(result["rows"]) == ROWS
    for name, row in result["rows"].items():
        assert set(row) == {"vectorised_ms", "loop_ms", "speedup", "max_difference"}, name
        assert row["vectorised_ms"] > 0 and row["loop_ms"] > 0, name
        assert row["speedup"] == pytest.approx(row["loop_ms"] / row["vectorised_ms"]), name
        # Both implementations compute the same thing (float32 rounding apart).
        assert row["max_difference"] < 1e-4, name
    assert result["rows"]["decode_dark"]["speedup"] >= 3.0

    printed = capsys.readouterr().out
    assert "torch threads 1" in printed
    for name in ROWS:
        assert name in printed


def test_cli_profile_codecs(one_torch_thread, capsys) -> None:
    assert main(["profile", "codecs", "--batch", "2", "--joints", "3", "--height", "16", "--width", "12",
                 "--repeats", "1"]) == 0
    assert "decode_dark" in capsys.readouterr().out


def test_profile_codecs_rejects_empty_batch() -> None:
    with pytest.raises(ValueError, match="batch"):
        profile_codecs(batch=0)
