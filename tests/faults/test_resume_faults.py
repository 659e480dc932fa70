"""``train resume=...`` fault cases: a finished run is never retrained or re-recorded, a resumed
run's record counts the wall time of every segment, and a bad resume checkpoint stops at once in one line."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from benchmark.cli import main
from benchmark.run_record import read_record
from benchmark.train import CHECKPOINT_KEY


def _train(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "method=simplebaseline-tiny", f"data.root={root}", "data.max_samples=8", "data.batch_size=4",
        "model.input_size=[64,64]", "trainer.accelerator=cpu", "trainer.devices=1",
        "trainer.enable_progress_bar=false", f"output_dir={out / 'runs'}", f"results_dir={out / 'results'}",
        "run_name=tiny", "seed=3", *extra,
    ]


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(synthpose_root, tmp_path_factory) -> Path:
    """A run that trained all its ``trainer.max_epochs=1`` and wrote its record."""
    out = tmp_path_factory.mktemp("finished")
    assert main(_train(synthpose_root, out, "trainer.max_epochs=1")) == 0
    return out


def test_resume_last_of_a_finished_run_stops_and_touches_nothing(finished, synthpose_root, capsys):
    before = _snapshot(finished)
    (run_dir,) = (finished / "runs" / "tiny").iterdir()
    (record,) = (finished / "results").glob("*.json")
    capsys.readouterr()
    assert main(_train(synthpose_root, finished, "trainer.max_epochs=1", "resume=last")) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "Traceback" not in out
    assert f"run {run_dir} finished at epoch 1" in out and f"its record is {record}" in out
    assert "nothing to resume" in out
    assert _snapshot(finished) == before  # bytes and mtimes: no retraining, no retest, no new record


@pytest.mark.slow  # two tiny training segments: about 12 s on 2 CPU cores
def test_raised_max_epochs_resumes_and_the_record_sums_every_segment(finished, synthpose_root, tmp_path):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    (record_path,) = (tmp_path / "results").glob("*.json")
    first = read_record(record_path)
    last = next((tmp_path / "runs").rglob("last.ckpt"))
    saved = torch.load(last, weights_only=True)[CHECKPOINT_KEY]
    assert saved["segments"] == 1 and 0 < saved["wall_time_s"] <= first["wall_time_s"]

    started = time.time()
    assert main(_train(synthpose_root, tmp_path, "trainer.max_epochs=2", "resume=last")) == 0
    elapsed = time.time() - started
    second = read_record(record_path)  # the same run id: the record is replaced by the longer run's
    assert second["epochs"] == 2 and second["segments"] == 2
    assert saved["wall_time_s"] < second["wall_time_s"] <= saved["wall_time_s"] + elapsed
    assert second["device_hours"] == pytest.approx(second["wall_time_s"] / 3600, rel=1e-12)
    assert second["started_at"] == first["started_at"]  # the run started with its first segment
    resaved = torch.load(last, weights_only=True)[CHECKPOINT_KEY]
    assert resaved["segments"] == 2 and saved["wall_time_s"] < resaved["wall_time_s"] <= second["wall_time_s"]


def _bad_checkpoints(tmp_path: Path) -> dict[str, Path]:
    torch.save({"epoch": 0, "state_dict": {"w": torch.zeros(1000)}}, tmp_path / "whole.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes((tmp_path / "whole.ckpt").read_bytes()[:500])
    garbage = tmp_path / "runs" / "tiny" / "20240101-000000-abcdef" / "checkpoints" / "last.ckpt"
    garbage.parent.mkdir(parents=True)
    garbage.write_bytes(b"not a checkpoint\n")
    return {"truncated": truncated, "last": garbage, "missing": tmp_path / "nowhere.ckpt"}


@pytest.mark.parametrize("case", ["last", "truncated", "missing"])
def test_a_bad_resume_checkpoint_stops_in_one_line_before_generating_data(case, tmp_path, capsys):
    path = _bad_checkpoints(tmp_path)[case]
    data = tmp_path / "synth"  # empty: SynthPose would be generated (small here, in case it is)
    resume = "last" if case == "last" else str(path)
    code = main(_train(data, tmp_path, f"resume={resume}", "data.synth_train=4", "data.synth_val=2"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: resume=") and "\n" not in err and "Traceback" not in err
    assert str(path) in err
    assert ("no such checkpoint file" if case == "missing" else "cannot load") in err
    assert not data.exists()  # checked before any data is generated


@pytest.mark.parametrize("segments", [0, -1, 1.5, True, "2", None])
def test_a_record_with_a_bad_segment_count_is_rejected(segments):
    from benchmark.run_record import validate_record

    example = Path(__file__).parents[1] / "benchmark" / "data" / "leaderboard" / "records" / "hourglass-8_mpii_s0.json"
    record = json.loads(example.read_text())
    validate_record(record)  # records from before resume accounting have no count
    validate_record({**record, "segments": 3})
    with pytest.raises(ValueError, match=r"field 'segments' must be a positive integer"):
        validate_record({**record, "segments": segments})
