"""The committed leaderboard is current: regenerating it from the committed run records gives the
same bytes (markdown, CSV and plot), and every committed record is valid and has its gallery.

The committed state is read from git (``git archive HEAD results``), so a user's own runs, which
land in ``results/runs/`` by default, do not make this test fail; outside a git checkout the
working tree's ``results/`` is checked instead.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

from benchmark.commands.leaderboard import (
    CSV_NAME,
    MARKDOWN_NAME,
    PLOT_NAME,
    generate_leaderboard,
)
from benchmark.run_record import read_record

ROOT = Path(__file__).resolve().parents[3]


def _committed_results(into: Path) -> Path:
    """The ``results/`` directory as committed at HEAD, extracted under ``into``."""
    try:
        archive = subprocess.run(["git", "archive", "--format=tar", "HEAD", "results"], cwd=ROOT,
                                 capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        shutil.copytree(ROOT / "results", into / "results", ignore=shutil.ignore_patterns("demo"))
        return into / "results"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "results"


def test_committed_leaderboard_is_what_its_records_give(tmp_path: Path) -> None:
    results = _committed_results(tmp_path / "committed")
    records = sorted((results / "runs").glob("*.json"))
    assert records, "results/runs/ holds the committed run records"
    # Generated in a copy laid out like results/ (the markdown links the galleries as runs/...).
    shutil.copytree(results / "runs", tmp_path / "generated" / "runs")
    generate_leaderboard(tmp_path / "generated" / "runs", tmp_path / "generated")
    for name in (MARKDOWN_NAME, CSV_NAME, PLOT_NAME):
        assert (tmp_path / "generated" / name).read_bytes() == (results / name).read_bytes(), (
            f"results/{name} is stale: run `make leaderboard` and commit it")
    board = (results / MARKDOWN_NAME).read_text()
    for path in records:
        record = read_record(path)
        assert record["run_id"] in board  # every record has its provenance footnote
        assert record["gallery"] is None or (path.parent / record["gallery"]).is_file()
