"""The demo: its plan covers the registry, its check catches a missing method or number, and a
one-method demo runs end to end (spawned workers, records, leaderboard, resume)."""

from __future__ import annotations

from pathlib import Path

import pytest

import models
from benchmark.commands import demo
from benchmark.commands.leaderboard import MARKDOWN_NAME
from benchmark.config import load_config
from benchmark.run_record import read_record


def test_plan_covers_every_registered_method_in_both_formats(tmp_path: Path) -> None:
    runs = demo.plan_demo(data_root=tmp_path / "data", out_dir=tmp_path / "out", runs_dir=tmp_path / "runs")
    assert [(run.method, run.data_format) for run in runs] == [
        (method, data_format) for method in sorted(models.METHODS) for data_format in ("mpii", "coco")]
    for run in runs:
        cfg = load_config(list(run.overrides))
        variant = models.VARIANTS[cfg.model.variant]
        assert variant.tiny and variant.method == run.method  # the method's tiny preset
        assert cfg.data.name == "synthpose" and cfg.data.format == run.data_format
        assert cfg.trainer.accelerator == "cpu" and cfg.reference.metric is None
        assert cfg.results_dir == str(tmp_path / "out" / "runs") and run.epochs == cfg.trainer.max_epochs
        assert cfg.trainer.check_val_every_n_epoch == cfg.trainer.max_epochs  # one validation, at the end
        assert cfg.model.kwargs.get("pretrained", False) is False  # nothing to download


def test_a_method_without_a_preset_is_an_error_naming_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(models.METHODS, "newpose", models.METHODS["hourglass"])
    with pytest.raises(demo.DemoError, match=r"no demo preset for 1 method\(s\): write .*recipe/demo_newpose\.yaml"):
        demo.plan_demo()
    with pytest.raises(demo.DemoError, match=r"unknown method\(s\) \['nopose'\]"):
        demo.plan_demo(["nopose"])


_TABLE_HEADER = ("| method | variant | PCKh@0.5 | n |\n|---|---|---|---|\n")


def _board(tmp_path: Path, mpii_rows: str, coco_rows: str) -> Path:
    path = tmp_path / MARKDOWN_NAME
    path.write_text(
        "# demo\n\n## SynthPose\n\n### SynthPose (MPII format)\n\n" + _TABLE_HEADER + mpii_rows + "\nPer joint:\n\n"
        "| method | variant | Head |\n|---|---|---|\n| cpm | cpm-tiny | nan |\n\n"
        "### SynthPose (COCO format)\n\n| method | variant | AP | AP50 |\n|---|---|---|---|\n" + coco_rows
        + "\n## Training cost\n\n| method | AP |\n|---|---|\n| hrnet | 1.0 |\n")
    return path


def test_check_passes_a_complete_board_and_names_what_is_missing(tmp_path: Path) -> None:
    mpii = "| cpm | cpm-tiny | 10.75 | 1 |\n| hrnet | hrnet-tiny | 35.30 ± 1.20 | 2 |\n"
    coco = "| cpm | cpm-tiny | 0.00 | 0.00 |\n| hrnet | hrnet-tiny | 4.13 | 19.41 |\n"
    assert demo.check_demo_leaderboard(_board(tmp_path, mpii, coco), ["cpm", "hrnet"]) == []
    # hrnet lacks a COCO row: the Training cost table further down does not count.
    problems = demo.check_demo_leaderboard(_board(tmp_path, mpii, coco.splitlines()[0] + "\n"), ["cpm", "hrnet"])
    assert problems == [f"{tmp_path / MARKDOWN_NAME}: '### SynthPose (COCO format)' has no row for method hrnet"]
    problems = demo.check_demo_leaderboard(_board(tmp_path, mpii.replace("10.75", "–"), coco), ["cpm", "hrnet"])
    assert len(problems) == 1 and "row of cpm has no number in PCKh@0.5: ['–']" in problems[0]
    problems = demo.check_demo_leaderboard(_board(tmp_path, mpii, coco.replace("4.13", "nan")), ["hrnet"])
    assert len(problems) == 1 and "row of hrnet has no number in AP" in problems[0]
    assert demo.check_demo_leaderboard(tmp_path / "none.md", ["cpm"]) == [
        f"{tmp_path / 'none.md'}: no leaderboard (the demo did not write it)"]
    (tmp_path / "flat.md").write_text("# no tables\n")
    assert len(demo.check_demo_leaderboard(tmp_path / "flat.md", ["cpm"])) == 2


@pytest.mark.slow
def test_one_method_demo_end_to_end_then_resumes(synthpose_root: Path, tmp_path: Path, capsys) -> None:
    out, runs_dir = tmp_path / "demo", tmp_path / "runs"
    extra = ("trainer.max_epochs=1", "trainer.check_val_every_n_epoch=1", "data.max_samples=48")
    code = demo.run_demo(["ief"], data_root=synthpose_root, out_dir=out, runs_dir=runs_dir, jobs=2, extra=extra)
    assert code == 0
    records = sorted((out / "runs").glob("*.json"))
    assert len(records) == 2
    formats = {read_record(path)["config"]["data"]["format"] for path in records}
    assert formats == {"mpii", "coco"}
    for path in records:
        record = read_record(path)
        assert record["method"] == "ief" and record["variant"] == "ief-tiny" and record["epochs"] == 1
        assert len(record["protocols"]) == 2  # regression: flip test off and on
    board = (out / MARKDOWN_NAME).read_text()
    assert "### SynthPose (MPII format)" in board and "### SynthPose (COCO format)" in board
    assert (out / "leaderboard.png").is_file()
    assert all((runs_dir / f"demo_ief_{f}.log").stat().st_size > 0 for f in ("mpii", "coco"))  # worker output
    printed = capsys.readouterr().out
    assert "ief (mpii): PCKh@0.5" in printed and "ief (coco): AP" in printed
    # A second demo finds both records and trains nothing.
    assert demo.run_demo(["ief"], data_root=synthpose_root, out_dir=out, runs_dir=runs_dir, extra=extra) == 0
    assert sorted((out / "runs").glob("*.json")) == records
    assert "Training 0 of 2 runs" in capsys.readouterr().out
