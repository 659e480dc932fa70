"""The demo: a sweep file that covers the registry (one run per method and format, methods filled in from the
registry), its preset check, its leaderboard check, and a one-method demo end to end through the sweep runner
(parallel runs, records, logs, leaderboard, a second demo that trains nothing)."""

from __future__ import annotations

import json
import shutil
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
        # No validation pass (the test pass scores the same split), or one at the end at most.
        assert cfg.trainer.limit_val_batches == 0 or cfg.trainer.check_val_every_n_epoch >= cfg.trainer.max_epochs
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
    assert spec["parameters"]["seed"] == {"value": 0}  # one seed unless --seeds says more


def test_seeds_repeat_every_run_with_seeds_0_to_n_minus_1(tmp_path: Path) -> None:
    spec = demo.demo_sweep(["cpm", "ief"], ("mpii",), out_dir=tmp_path, seeds=2)
    assert [(run["recipe"], run["seed"]) for run in expand_sweep(spec)] == [
        ("demo_cpm", 0), ("demo_cpm", 1), ("demo_ief", 0), ("demo_ief", 1)]
    assert [load_config(_overrides(run)).seed for run in expand_sweep(spec)] == [0, 1, 0, 1]
    assert demo.demo_sweep(["cpm"], seeds=1)["parameters"]["seed"] == {"value": 0}
    with pytest.raises(demo.DemoError, match="at least one seed"):
        demo.demo_sweep(seeds=0)


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


def test_demo_check_command_exits_1_on_an_incomplete_board(tmp_path: Path, capsys,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmark.cli import main

    monkeypatch.setitem(demo.MINIMUMS, "cpm", demo.Minimum(1.5, 1.0))
    _board(tmp_path, "| cpm | cpm-tiny | 20.00 | 1 |\n", "| cpm | cpm-tiny | 1.50 | 0.00 |\n")
    runs = _records(tmp_path, {("cpm", "mpii", 0): 20.0, ("cpm", "coco", 0): 0.015})
    check = ["demo", "--check", "--out", str(tmp_path), "--committed", str(runs), "--method", "cpm"]
    assert main(check) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{tmp_path / MARKDOWN_NAME}: every method has its PCKh@0.5 and AP\n")
    assert printed.endswith("every method reaches its minimum (benchmark/commands/demo.py MINIMUMS)\n")
    assert main([*check, "--method", "hrnet"]) == 1
    assert capsys.readouterr().err.count("has no row for method hrnet") == 2
    # A row below its minimum fails the check, named.
    record = next(runs.glob("cpm-tiny_synthpose-coco_*.json"))
    record.write_text(record.read_text().replace('"AP": 0.015', '"AP": 0.005'))
    assert main(check) == 1
    assert "error: cpm (coco) AP 0.50 is below its threshold 1.00" in capsys.readouterr().err


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
    """The committed demo records against copies of themselves: nothing moved; one copy's PCKh raised by 5.5 points
    and one AP lowered by 0.02 (2 points): only the PCKh row is beyond its tolerance (5.0), and it is named."""
    committed = Path(__file__).resolve().parents[3] / "results" / "runs"
    fresh = tmp_path / "runs"
    fresh.mkdir()
    for path in committed.glob("*.json"):
        fresh.joinpath(path.name).write_text(path.read_text())
    lines, moved = demo.compare_with_committed(fresh, committed)
    assert lines and not moved
    for data_format, metric, change in (("mpii", "PCKh/Mean", 5.5), ("coco", "AP", -0.02)):
        for path in fresh.glob(f"hrnet-tiny_synthpose-{data_format}_*.json"):  # every seed: the mean moves as much
            record = json.loads(path.read_text())
            record["metrics"]["test"][metric] += change
            path.write_text(json.dumps(record))
    _, moved = demo.compare_with_committed(fresh, committed)
    assert len(moved) == 1 and moved[0].startswith("hrnet-tiny (mpii) PCKh/Mean") and "+5.50" in moved[0]


COMMITTED = Path(__file__).resolve().parents[3] / "results" / "runs"
FLOOR = 12.351648351648352  # the mean pose's PCKh@0.5 in the committed results/runs/references/synthpose-mpii.json


def _records(tmp_path: Path, values: dict[tuple[str, str, int], float]) -> Path:
    """Copies of the committed demo record of each (method, format) with seed and test metric (PCKh@0.5 in percent,
    AP as a fraction) set from ``values``, beside the committed reference rows."""
    out = tmp_path / "runs"
    shutil.copytree(COMMITTED / "references", out / "references")
    for (method, data_format, seed), value in values.items():
        source = next(COMMITTED.glob(f"{method}-tiny_synthpose-{data_format}_*.json"))
        record = json.loads(source.read_text())
        record["seed"], record["config"]["seed"] = seed, seed
        record["metrics"]["test"]["PCKh/Mean" if data_format == "mpii" else "AP"] = value
        out.joinpath(f"{source.stem}_s{seed}.json").write_text(json.dumps(record))
    return out


def test_minimums_pass_at_the_threshold_and_name_a_row_below_it(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """With a bar of 1.5x the floor, 1.5 x 12.3516 = 18.527 PCKh@0.5, and AP 1.0; the mean over seeds is judged."""
    monkeypatch.setitem(demo.MINIMUMS, "cpm", demo.Minimum(1.5, 1.0))
    assert demo.floor_pckh(COMMITTED) == pytest.approx(FLOOR)
    runs = _records(tmp_path / "a", {("cpm", "mpii", 0): 18.53, ("cpm", "coco", 0): 0.010})
    assert demo.check_minimums(runs, ["cpm"]) == []
    # Seeds 17.0 and 20.0: mean 18.50 < 18.53; AP 0.0099 -> 0.99 < 1.00.
    runs = _records(tmp_path / "b", {("cpm", "mpii", 0): 17.0, ("cpm", "mpii", 1): 20.0, ("cpm", "coco", 0): 0.0099})
    assert demo.check_minimums(runs, ["cpm"]) == [
        "cpm (mpii) PCKh@0.5 18.50 is below its threshold 18.53 (1.5x the mean pose's 12.35; "
        "benchmark/commands/demo.py MINIMUMS)",
        "cpm (coco) AP 0.99 is below its threshold 1.00 (its minimum AP; benchmark/commands/demo.py MINIMUMS)"]
    assert demo.check_minimums(runs, ["cpm"], ("coco",)) == [
        "cpm (coco) AP 0.99 is below its threshold 1.00 (its minimum AP; benchmark/commands/demo.py MINIMUMS)"]


def test_minimums_name_a_method_without_records_and_a_missing_floor(tmp_path: Path) -> None:
    runs = _records(tmp_path, {("hrnet", "mpii", 0): 40.0, ("hrnet", "coco", 0): 0.10})
    assert demo.check_minimums(runs, ["hrnet", "deeppose"]) == [
        f"deeppose (mpii): no demo record with PCKh@0.5 in {runs}",
        f"deeppose (coco): no demo record with AP in {runs}"]
    shutil.rmtree(runs / "references")
    assert demo.check_minimums(runs, ["hrnet"]) == [
        f"{runs}: no mean-pose floor for the MPII format (references/synthpose-mpii.json, written by the demo)"]
    # A registered method without a row in MINIMUMS is held to the default bar.
    assert "newpose" not in demo.MINIMUMS and demo.DEFAULT_MINIMUM == demo.Minimum(1.5, 1.0)


def test_the_committed_records_reach_every_registered_method_minimum() -> None:
    """The committed demo (results/runs, written by `make demo` from this code) has a record of every registered
    method in both formats, each at or above its MINIMUMS row."""
    assert demo.check_minimums(COMMITTED, sorted(models.METHODS)) == []
