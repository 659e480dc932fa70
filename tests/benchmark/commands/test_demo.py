"""The demo: a sweep file that covers the registry (one run per method and format, methods filled in from the
registry), its preset check, its leaderboard check, and a one-method demo end to end through the sweep runner
(parallel runs, records, logs, leaderboard, a second demo that trains nothing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import models
from benchmark.commands import demo
from benchmark.commands.launch import cpu_cores
from benchmark.commands.leaderboard import MARKDOWN_NAME
from benchmark.commands.sweep import build_command, expand_sweep, fill_methods
from benchmark.config import load_config
from benchmark.run_record import read_record


def _overrides(params: dict) -> list[str]:
    return [f"{name}={value}" for name, value in params.items()]


def test_the_demo_sweep_is_one_run_per_registered_method_and_format(tmp_path: Path) -> None:
    spec = demo.demo_sweep(data_root=tmp_path / "data", out_dir=tmp_path / "out", runs_dir=tmp_path / "runs")
    runs = expand_sweep(spec)
    assert sorted((run["recipe"], run["data.format"]) for run in runs) == sorted(
        (f"demo_{method}", data_format) for method in models.METHODS for data_format in ("mpii", "coco"))
    for run in runs:
        cfg = load_config(_overrides(run))
        variant = models.VARIANTS[cfg.model.variant]
        assert variant.tiny and f"demo_{variant.method}" == run["recipe"]  # the method's tiny preset
        assert cfg.data.name == "synthpose" and cfg.data.format == run["data.format"]
        assert cfg.data.root == str(tmp_path / "data") and cfg.output_dir == str(tmp_path / "runs")
        assert cfg.trainer.accelerator == "cpu" and cfg.reference.metric is None
        assert cfg.results_dir == str(tmp_path / "out" / "runs")
        assert cfg.trainer.check_val_every_n_epoch == cfg.trainer.max_epochs  # one validation, at the end
        assert cfg.model.kwargs.get("pretrained", False) is False  # nothing to download
        assert build_command(spec, run, "py")[:4] == ["py", "-m", "benchmark", "train"]


def test_the_sweep_file_names_no_method_a_new_one_joins_from_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = yaml.safe_load(demo.DEMO_SWEEP.read_text())
    assert spec["parameters"]["recipe"] == {"values": ["demo_{method}"]}
    monkeypatch.setitem(models.METHODS, "newpose", models.METHODS["hourglass"])
    recipes = fill_methods(spec)["parameters"]["recipe"]["values"]
    assert recipes == [f"demo_{method}" for method in sorted(models.METHODS)] and "demo_newpose" in recipes


def test_method_format_and_overrides_narrow_the_sweep(tmp_path: Path) -> None:
    spec = demo.demo_sweep(["hrnet", "cpm", "hrnet"], ("coco",), out_dir=tmp_path, extra=("trainer.max_epochs=1",))
    assert [(run["recipe"], run["data.format"], run["trainer.max_epochs"]) for run in expand_sweep(spec)] == [
        ("demo_hrnet", "coco", "1"), ("demo_cpm", "coco", "1")]
    assert spec["parameters"]["data.root"] == {"value": "data/synthpose-demo"}  # the file's, when not given


def test_a_method_without_a_preset_is_an_error_naming_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(demo.DemoError, match=r"unknown SynthPose format\(s\) \['lsp'\]"):
        demo.demo_sweep(formats=("lsp",))
    monkeypatch.setitem(models.METHODS, "newpose", models.METHODS["hourglass"])
    with pytest.raises(demo.DemoError, match=r"no demo preset for 1 method\(s\): write .*recipe/demo_newpose\.yaml"):
        demo.demo_sweep()
    with pytest.raises(demo.DemoError, match=r"unknown method\(s\) \['nopose'\]"):
        demo.demo_sweep(["nopose"])


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


def test_demo_check_command_exits_1_on_an_incomplete_board(tmp_path: Path, capsys) -> None:
    from benchmark.cli import main

    _board(tmp_path, "| cpm | cpm-tiny | 10.75 | 1 |\n", "| cpm | cpm-tiny | 0.00 | 0.00 |\n")
    assert main(["demo", "--check", "--out", str(tmp_path), "--method", "cpm"]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / MARKDOWN_NAME}: every method has its PCKh@0.5 and AP\n")
    assert main(["demo", "--check", "--out", str(tmp_path), "--method", "cpm", "--method", "hrnet"]) == 1
    assert capsys.readouterr().err.count("has no row for method hrnet") == 2


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
        assert (out / "runs" / record["gallery"]).is_file()
    board = (out / MARKDOWN_NAME).read_text()
    assert "### SynthPose (MPII format)" in board and "### SynthPose (COCO format)" in board
    # The floor and ceiling rows of both formats, computed on the runs' own val split.
    assert sorted(p.name for p in (out / "runs" / "references").glob("*.json")) == ["synthpose-coco.json",
                                                                                   "synthpose-mpii.json"]
    assert board.count("| mean pose (image-blind) | floor |") == 2 and "x mean pose (PCKh@0.5)" in board
    assert "fingerprint differs" not in board
    assert (out / "leaderboard.png").is_file()
    assert all((runs_dir / f"{f}_demo_ief.log").stat().st_size > 0 for f in ("mpii", "coco"))  # each run's output
    printed = capsys.readouterr().out
    assert f"2 of 2 runs to run, 2 at a time, {max(1, cpu_cores() // 2)} torch thread(s) each" in printed
    assert "ief (mpii): PCKh@0.5" in printed and "ief (coco): AP" in printed
    # A second demo finds both records and trains nothing.
    assert demo.run_demo(["ief"], data_root=synthpose_root, out_dir=out, runs_dir=runs_dir, extra=extra) == 0
    assert sorted((out / "runs").glob("*.json")) == records
    printed = capsys.readouterr().out
    assert printed.count(" skip, record ") == 2 and "# 2 runs, 2 done, 0 to run" in printed


def test_check_compares_with_the_committed_records_within_the_tolerances(tmp_path: Path) -> None:
    """The committed demo records against copies of themselves: nothing moved; one copy's PCKh raised by 4.5 points
    and one AP lowered by 0.02 (2 points): only the PCKh row is beyond its tolerance (4.0), and it is named."""
    committed = Path(__file__).resolve().parents[3] / "results" / "runs"
    fresh = tmp_path / "runs"
    fresh.mkdir()
    for path in committed.glob("*.json"):
        fresh.joinpath(path.name).write_text(path.read_text())
    lines, moved = demo.compare_with_committed(fresh, committed)
    assert lines and not moved
    hrnet_mpii = next(p for p in fresh.glob("*.json") if "hrnet" in p.name and "mpii" in p.name)
    record = json.loads(hrnet_mpii.read_text())
    record["metrics"]["test"]["PCKh/Mean"] += 4.5
    hrnet_mpii.write_text(json.dumps(record))
    hrnet_coco = next(p for p in fresh.glob("*.json") if "hrnet" in p.name and "coco" in p.name)
    record = json.loads(hrnet_coco.read_text())
    record["metrics"]["test"]["AP"] -= 0.02
    hrnet_coco.write_text(json.dumps(record))
    _, moved = demo.compare_with_committed(fresh, committed)
    assert len(moved) == 1 and moved[0].startswith("hrnet-tiny (mpii) PCKh/Mean") and "+4.50" in moved[0]
