"""Damaged and duplicated run records: the leaderboard is never silently wrong.

Every case starts from the real test records of ``tests/benchmark/data/leaderboard/records`` and
damages a copy: a record copied under another name, five same-seed runs, a rerun on another commit,
an ``evaluate`` record of a trained checkpoint (duplicates: one run counted once, a warning naming the
files, n = distinct seeds, the other rows untouched), and NaN / inf / negative / impossible metrics or a
string ``input_size`` (rejected on read, naming the file and the field; nothing already written changes).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from benchmark import cli
from benchmark.commands.leaderboard import (
    CSV_NAME,
    MARKDOWN_NAME,
    PLOT_NAME,
    LeaderboardError,
    generate_leaderboard,
)
from benchmark.run_record import read_record, validate_record

DATA = Path(__file__).resolve().parents[1] / "benchmark" / "data" / "leaderboard"
RECORDS = DATA / "records"
EXPECTED = DATA / "expected"
HOURGLASS = "hourglass-8_mpii_s1.json"
SHA = "c0ffee" * 10 + "abcd"


def _load(name: str) -> dict[str, Any]:
    return json.loads((RECORDS / name).read_text())


def _records(tmp_path: Path, extra: dict[str, dict[str, Any]]) -> Path:
    """The test records plus ``extra`` (file name -> record; an existing name is replaced)."""
    records = tmp_path / "records"
    shutil.copytree(RECORDS, records)
    for name, record in extra.items():
        (records / name).write_text(json.dumps(record))
    return records


def _table_lines(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("|")]


def _row(markdown: str, variant: str) -> list[str]:
    """The cells of the main-table line of ``variant`` (the line with its footnote mark)."""
    for line in _table_lines(markdown):
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 1 and cells[1].startswith(f"{variant}[^"):
            return cells
    raise AssertionError(f"no table row for {variant}")


def _other_lines_unchanged(markdown: str, variant: str) -> None:
    """Every table line not about ``variant`` is the expected one (footnote numbers included)."""
    expected = [line for line in _table_lines((EXPECTED / MARKDOWN_NAME).read_text()) if variant not in line]
    assert [line for line in _table_lines(markdown) if variant not in line] == expected


# ------------------------------------------------------------------------------ duplicates (case 2)


def test_a_copied_record_is_one_run_not_a_second_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = _records(tmp_path, {"hourglass-8_mpii_s1_copy.json": _load(HOURGLASS)})
    generate_leaderboard(records, tmp_path / "out")
    markdown = (tmp_path / "out" / MARKDOWN_NAME).read_text()
    # Before: n = 4 with seed 1 counted twice (88.50 ± 0.33). After: the three seeds, as without the copy.
    assert _row(markdown, "hourglass-8")[7:11] == ["88.50 ± 0.40", "32.00 ± 2.65", "60.00 ± 0.00", "3"]
    assert (tmp_path / "out" / CSV_NAME).read_bytes() == (EXPECTED / CSV_NAME).read_bytes()
    _other_lines_unchanged(markdown, "hourglass-8")
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1  # once, naming both files
    assert HOURGLASS in warnings[0] and "hourglass-8_mpii_s1_copy.json" in warnings[0]
    assert "same run" in warnings[0]
    assert "hourglass-8_mpii_s1_copy.json" in markdown.split("## MPII")[0]  # the board says what it set aside


def _same_seed(name: str, commit: str, finished: str, value: float, run_id: str) -> dict[str, Any]:
    record = _load(name)
    record["git"]["commit"] = commit
    record["finished_at"] = finished
    record["run_id"] = run_id
    stage = "test" if record["metrics"].get("test") else "val"
    record["metrics"][stage]["PCKh/Mean"] = value
    return record


def test_five_runs_with_one_seed_are_not_five_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # simplebaseline-res50 on MPII has one seed-0 record (89.0); four more seed-0 runs on other commits
    # (89.1 ... 89.4, the last the latest).
    extra = {f"simplebaseline-res50_mpii_s0_r{i}.json": _same_seed(
        "simplebaseline-res50_mpii_s0.json", f"{i}" * 40, f"2026-11-{25 + i}T10:30:00+00:00", 89.0 + i / 10,
        f"rerun{i}") for i in range(1, 5)}
    generate_leaderboard(_records(tmp_path, extra), tmp_path / "out")
    markdown = (tmp_path / "out" / MARKDOWN_NAME).read_text()
    # Before: one row "89.20 ± 0.16 ... 5". After: the latest run only (89.4), n = 1, no ±.
    row = _row(markdown, "simplebaseline-res50")
    assert row[7] == "89.40" and row[10] == "1" and "±" not in "".join(row)
    assert "run `rerun4`" in markdown and "run `simplebaseline-res50_mpii_s0`" not in markdown
    _other_lines_unchanged(markdown, "simplebaseline-res50")
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "seed 0" in warnings[0]
    assert all(name in warnings[0] for name in ["simplebaseline-res50_mpii_s0.json", *extra])


def test_a_rerun_on_another_commit_replaces_its_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `benchmark rerun` of seed 1 gives 88.6 on a later commit: with both counted the spread shrank
    # (88.53 ± 0.33, n = 4); now seed 1 is the rerun's, n = 3.
    rerun = _same_seed(HOURGLASS, "f" * 40, "2026-12-01T09:00:00+00:00", 88.6, "hourglass-8_mpii_s1_rerun")
    generate_leaderboard(_records(tmp_path, {"hourglass-8_mpii_s1_rerun.json": rerun}), tmp_path / "out")
    markdown = (tmp_path / "out" / MARKDOWN_NAME).read_text()
    row = _row(markdown, "hourglass-8")
    assert row[7] == "88.53 ± 0.40" and row[10] == "3"  # 88.1, 88.6, 88.9: std 0.4041
    assert "seed 1 run `hourglass-8_mpii_s1_rerun` commit `ffffffffffff`" in markdown
    assert "run `hourglass-8_mpii_s1`" not in markdown
    _other_lines_unchanged(markdown, "hourglass-8")
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and HOURGLASS in warnings[0] and "hourglass-8_mpii_s1_rerun.json" in warnings[0]


def test_evaluating_a_trained_checkpoint_is_not_a_second_row(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    trained = _load(HOURGLASS)
    trained["checkpoint"] = {"path": "outputs/hg/s1/checkpoints/last.ckpt", "sha256": SHA, "bytes": 1000}
    evaluated = json.loads(json.dumps(trained))
    # What `evaluate ckpt=...` writes: its own run name, the checkpoint path, pretrained off, a later time.
    evaluated["config"].update(ckpt=trained["checkpoint"]["path"], run_name="eval_hourglass-8_mpii")
    model = evaluated["config"]["model"]
    model["kwargs"] = {**(model.get("kwargs") or {}), "pretrained": False}
    evaluated.update(run_id="eval_hourglass-8_mpii_x", best={}, finished_at="2026-12-01T09:00:00+00:00")
    evaluated["metrics"] = {"test": {**trained["metrics"]["test"], "PCKh/Mean": 70.0}}
    records = _records(tmp_path, {HOURGLASS: trained, "zz_eval.json": evaluated})
    generate_leaderboard(records, tmp_path / "out")
    markdown = (tmp_path / "out" / MARKDOWN_NAME).read_text()
    # Before: a second hourglass-8 row at 70.00 (n = 1). After: the training record's row alone.
    assert (tmp_path / "out" / CSV_NAME).read_bytes() == (EXPECTED / CSV_NAME).read_bytes()
    assert "70.00" not in markdown and "eval_hourglass-8_mpii_x" not in markdown.split("## MPII")[1]
    assert _table_lines(markdown) == _table_lines((EXPECTED / MARKDOWN_NAME).read_text())
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and HOURGLASS in warnings[0] and "zz_eval.json" in warnings[0]
    assert "checkpoint" in warnings[0]


# ------------------------------------------------------------------------------ impossible values (case 7)


BAD_VALUES = [
    ("hourglass-8_mpii_s0.json", lambda r: r["metrics"]["test"].update({"PCKh/Mean": float("nan")}),
     "metrics['test']['PCKh/Mean']", "finite"),
    ("hourglass-8_mpii_s0.json", lambda r: r["protocols"][0]["metrics"].update({"PCKh/Mean": float("inf")}),
     "protocols[0].metrics['PCKh/Mean']", "finite"),
    ("hourglass-8_mpii_s0.json", lambda r: r["metrics"]["val"].update({"PCKh/AUC": float("-inf")}),
     "metrics['val']['PCKh/AUC']", "finite"),
    ("hourglass-8_mpii_s0.json", lambda r: r["metrics"]["test"].update({"PCKh/Head": -3.0}),
     "metrics['test']['PCKh/Head']", "negative"),
    ("hourglass-8_mpii_s0.json", lambda r: r["metrics"]["test"].update({"PCKh/Mean": 100.5}),
     "metrics['test']['PCKh/Mean']", "percentage"),
    ("simplebaseline-res50_coco_s0.json", lambda r: r["metrics"]["test"].update({"AP": 69.2}),
     "metrics['test']['AP']", "fraction"),
    ("simplebaseline-res50_coco_s0.json", lambda r: r["metrics"]["test"].update({"ARM": -0.5}),
     "metrics['test']['ARM']", "negative"),
    ("hourglass-8_mpii_s0.json", lambda r: r.update(input_size=["256", 256]), "'input_size'", "two positive"),
    ("hourglass-8_mpii_s0.json", lambda r: r.update(input_size=[256]), "'input_size'", "two positive"),
    ("hourglass-8_mpii_s0.json", lambda r: r.update(input_size=[0, 256]), "'input_size'", "two positive"),
    ("hourglass-8_mpii_s0.json", lambda r: r.update(input_size=[True, 256]), "'input_size'", "two positive"),
    ("hourglass-8_mpii_s0.json", lambda r: r["reference"].update(value=float("nan")), "'reference.value'",
     "finite"),
]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A leaderboard of the good records, generated once."""
    out = tmp_path_factory.mktemp("written")
    generate_leaderboard(RECORDS, out)
    return out


@pytest.mark.parametrize(("name", "change", "field", "why"), BAD_VALUES)
def test_an_impossible_value_is_rejected_on_read(tmp_path: Path, written: Path, name: str, change, field: str,
                                                  why: str) -> None:
    record = _load(name)
    change(record)
    with pytest.raises(ValueError) as error:
        validate_record(record)
    assert field in str(error.value) and why in str(error.value)
    records = _records(tmp_path, {name: record})  # json.dumps writes NaN / Infinity, which json.load reads back
    with pytest.raises(ValueError) as error:
        read_record(records / name)
    assert str(records / name) in str(error.value) and field in str(error.value)
    # A leaderboard already written stays byte for byte what it was.
    out = shutil.copytree(written, tmp_path / "out")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(LeaderboardError) as error:
        generate_leaderboard(records, out)
    assert name in str(error.value) and field in str(error.value)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_the_cli_exits_2_naming_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = _load("simplebaseline-res50_coco_s1.json")
    record["metrics"]["test"]["AP"] = float("nan")
    records = _records(tmp_path, {"simplebaseline-res50_coco_s1.json": record})
    assert cli.main(["leaderboard", "--records", str(records), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "simplebaseline-res50_coco_s1.json" in err and "metrics['test']['AP']" in err
    assert not (tmp_path / "out").exists()


def test_null_metrics_and_cocoeval_no_data_stay_allowed(tmp_path: Path) -> None:
    # JSON null (the writer's NaN) and pycocotools' -1 ("no objects of that size") are what real runs write.
    record = _load("simplebaseline-res50_coco_s0.json")
    record["metrics"]["test"].update(APL=-1.0, ARL=None)
    validate_record(record)
    generate_leaderboard(_records(tmp_path, {"simplebaseline-res50_coco_s0.json": record}), tmp_path / "out")
    assert (tmp_path / "out" / PLOT_NAME).is_file()
