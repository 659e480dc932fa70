"""The committed leaderboard is current: regenerating it from the committed run records gives the
same bytes (markdown, CSV and plot), and every committed record is valid and has its gallery."""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmark.leaderboard import CSV_NAME, MARKDOWN_NAME, PLOT_NAME, generate_leaderboard
from benchmark.run_record import read_record

RESULTS = Path(__file__).resolve().parents[2] / "results"


def test_committed_leaderboard_is_what_its_records_give(tmp_path: Path) -> None:
    records = sorted((RESULTS / "runs").glob("*.json"))
    assert records, "results/runs/ holds the committed run records"
    # Generated in a copy laid out like results/ (the markdown links the galleries as runs/...).
    shutil.copytree(RESULTS / "runs", tmp_path / "runs")
    generate_leaderboard(tmp_path / "runs", tmp_path)
    for name in (MARKDOWN_NAME, CSV_NAME, PLOT_NAME):
        assert (tmp_path / name).read_bytes() == (RESULTS / name).read_bytes(), (
            f"results/{name} is stale: run `make leaderboard` and commit it")
    board = (RESULTS / MARKDOWN_NAME).read_text()
    for path in records:
        record = read_record(path)
        assert record["run_id"] in board  # every record has its provenance footnote
        assert record["gallery"] is None or (path.parent / record["gallery"]).is_file()
