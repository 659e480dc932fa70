"""The committed leaderboard is current: regenerating it from the committed run records gives the
same markdown and CSV bytes and the same plotted points, and every committed record is valid and
has its gallery.

The plot is compared by what it shows, not by its bytes (those depend on the matplotlib and
FreeType build): its points are the committed CSV's GFLOPs and mean ± std of each table's first
primary metric, and the committed PNG is a PNG of the size the number of panels gives.

The committed state is read from git (``git archive HEAD results``), so a user's own runs, which
land in ``results/runs/`` by default, do not make this test fail; outside a git checkout the
working tree's ``results/`` is checked instead.
"""

from __future__ import annotations

import csv
import io
import math
import shutil
import struct
import subprocess
import tarfile
from pathlib import Path

from benchmark.commands.leaderboard import (
    CSV_NAME,
    MARKDOWN_NAME,
    PLOT_NAME,
    generate_leaderboard,
    plot_panels,
    read_entries,
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
    for name in (MARKDOWN_NAME, CSV_NAME):
        assert (tmp_path / "generated" / name).read_bytes() == (results / name).read_bytes(), (
            f"results/{name} is stale: run `make leaderboard` and commit it")
    board = (results / MARKDOWN_NAME).read_text()
    for path in records:
        record = read_record(path)
        assert record["run_id"] in board  # every record has its provenance footnote
        assert record["gallery"] is None or (path.parent / record["gallery"]).is_file()


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which the PNG spec puts right after the signature."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def test_committed_plot_shows_the_committed_numbers(tmp_path: Path) -> None:
    results = _committed_results(tmp_path / "committed")
    panels = plot_panels(read_entries(results / "runs"))
    assert panels, "the committed records give at least one table"
    with (results / CSV_NAME).open(newline="") as f:
        table = list(csv.DictReader(f))
    for title, label, points in panels:
        # The CSV line of each row's first primary metric, where the row has GFLOPs and a mean.
        expected = sorted((row["gflops"], row["mean"], row["std"] or "0.0000", row["variant"]) for row in table
                          if row["dataset"] == title and row["metric"] == label and row["gflops"] and row["mean"])
        plotted = sorted((f"{x:.4f}", f"{y:.4f}", f"{std:.4f}", variant) for x, y, std, variant in points)
        assert plotted == expected, f"results/{PLOT_NAME} panel {title!r} is stale: run `make leaderboard`"
    # Two 5.5 x 4 inch panels a row at 100 dpi.
    assert _png_size(results / PLOT_NAME) == (550 * min(2, len(panels)), 400 * math.ceil(len(panels) / 2))
