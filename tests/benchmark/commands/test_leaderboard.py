"""The generated leaderboard: byte-exact against committed files, statistics, sections, bad records.

The records in ``data/leaderboard/records/`` are a fixed, small set: three seeds of Hourglass-8
on MPII (with a recipe reference and per-protocol metrics), one SimpleBaseline MPII run with
only a val stage, two COCO seeds with detections, and two SynthPose runs.
``data/leaderboard/expected/`` holds the markdown and CSV they must give; the plot is checked by
the points it draws (its bytes depend on the matplotlib build). Regenerate the
expected files only deliberately, after reading the diff:
``python -c "from pathlib import Path; from benchmark.commands.leaderboard import generate_leaderboard;
generate_leaderboard(Path('tests/benchmark/data/leaderboard/records'),
Path('tests/benchmark/data/leaderboard/expected'))"`` (then delete the PNG there).
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from benchmark.commands.leaderboard import (
    CSV_NAME,
    MARKDOWN_NAME,
    PLOT_NAME,
    LeaderboardError,
    fmt_stat,
    generate_leaderboard,
    mean_std,
    plot_panels,
    read_entries,
    setting_hash,
)
from benchmark.errors import PoseBenchError

DATA = Path(__file__).parents[1] / "data" / "leaderboard"
RECORDS = DATA / "records"
EXPECTED = DATA / "expected"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("leaderboard")
    assert generate_leaderboard(RECORDS, out) == out / MARKDOWN_NAME
    return out


def _row(markdown: str, cell: str) -> list[str]:
    """The cells of the first table line whose second cell starts with ``cell``."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and len(cells) > 1 and cells[1].startswith(cell):
            return cells
    raise AssertionError(f"no table row for {cell}")


def test_markdown_and_csv_match_the_committed_files_byte_for_byte(generated: Path) -> None:
    assert (generated / MARKDOWN_NAME).read_bytes() == (EXPECTED / MARKDOWN_NAME).read_bytes()
    assert (generated / CSV_NAME).read_bytes() == (EXPECTED / CSV_NAME).read_bytes()
    assert (generated / PLOT_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_regenerating_gives_the_same_bytes_for_every_file(generated: Path, tmp_path: Path) -> None:
    # Records copied elsewhere and read again: neither paths nor time may leak into the output.
    records = tmp_path / "elsewhere"
    shutil.copytree(RECORDS, records)
    generate_leaderboard(records, tmp_path / "out")
    for name in (MARKDOWN_NAME, CSV_NAME, PLOT_NAME):
        assert (tmp_path / "out" / name).read_bytes() == (generated / name).read_bytes(), name
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_mean_std_and_n_over_three_seeds(generated: Path) -> None:
    # PCKh@0.5 of seeds 0/1/2: 88.1, 88.5, 88.9 -> mean 88.5; deviations -0.4, 0, 0.4 ->
    # sample variance (0.16 + 0 + 0.16) / 2 = 0.16 -> std 0.4. PCKh@0.1: 30, 31, 35 -> mean 32,
    # variance (4 + 1 + 9) / 2 = 7 -> std 2.6458. Paper 88.78: delta -0.28, within 1.0.
    mean, std, n = mean_std([88.1, 88.5, 88.9])
    assert n == 3 and mean == pytest.approx(88.5, abs=1e-12) and std == pytest.approx(0.4, abs=1e-12)
    assert mean_std([30.0, 31.0, 35.0]) == (32.0, pytest.approx(7 ** 0.5, abs=1e-12), 3)
    assert mean_std([89.0]) == (89.0, None, 1)
    assert mean_std([]) == (None, None, 0)
    assert fmt_stat([0.690, 0.694], 100.0) == "69.20 ± 0.28"
    cells = _row((generated / MARKDOWN_NAME).read_text(), "hourglass-8[")
    assert cells[7:14] == ["88.50 ± 0.40", "32.00 ± 2.65", "60.00 ± 0.00", "3", "88.78 (PCKh@0.5)", "-0.28",
                           "reproduced (±1.00)"]
    single = _row((generated / MARKDOWN_NAME).read_text(), "simplebaseline-res50[^1]")
    assert single[7:11] == ["89.00", "33.00", "61.50", "1"]  # n = 1: no ±
    coco = _row((generated / MARKDOWN_NAME).read_text(), "simplebaseline-res50[^3]")
    assert coco[7] == "69.20 ± 0.28" and coco[13:16] == ["2", "70.40 (AP)", "-1.20"]
    assert coco[16] == "not reproduced (±0.70)"


def test_the_plot_draws_each_tables_first_primary_metric_against_gflops(generated: Path) -> None:
    # The records' model.gflops and the same means and sample stds as the tables (percent; COCO AP x 100).
    panels = plot_panels(read_entries(RECORDS))
    assert [(title, label) for title, label, _ in panels] == [
        ("MPII", "PCKh@0.5"), ("COCO", "AP"), ("SynthPose (MPII format)", "PCKh@0.5"),
        ("SynthPose (COCO format)", "AP")]
    mpii, coco, synth_mpii, synth_coco = (points for _, _, points in panels)
    assert [(x, variant) for x, _, _, variant in mpii] == [(8.99, "simplebaseline-res50"), (26.97, "hourglass-8")]
    assert mpii[0][1:3] == (89.0, 0.0) and mpii[1][1:3] == (pytest.approx(88.5, abs=1e-12),
                                                             pytest.approx(0.4, abs=1e-12))
    # AP 0.690 and 0.694: mean 69.2, std |0.4| / sqrt(2).
    assert coco == [(8.99, pytest.approx(69.2, abs=1e-12), pytest.approx(0.4 / 2 ** 0.5, abs=1e-12),
                     "simplebaseline-res50")]
    assert [(x, variant) for x, _, _, variant in synth_mpii + synth_coco] == [(0.321, "hourglass-tiny"),
                                                                             (0.15, "simplebaseline-tiny")]
    # Four panels, two 5.5 x 4 inch panels a row at 100 dpi: 1100 x 800 pixels (PNG header, IHDR chunk).
    header = (generated / PLOT_NAME).read_bytes()[:24]
    assert header[12:16] == b"IHDR" and struct.unpack(">II", header[16:24]) == (1100, 800)


def test_synthpose_rows_have_their_own_section(generated: Path) -> None:
    markdown = (generated / MARKDOWN_NAME).read_text()
    real, synthetic = markdown.split("## SynthPose\n", 1)
    assert "-tiny" not in real.split("## Training cost")[0]
    assert "hourglass-tiny[" in synthetic and "simplebaseline-tiny[" in synthetic
    assert "hourglass-8[" not in synthetic.split("## Training cost")[0]
    # The SynthPose MPII record carries the Hourglass recipe reference; it is never compared.
    assert _row(synthetic, "hourglass-tiny[")[-3:] == ["–", "–", "no reference"]
    lines = (generated / CSV_NAME).read_text().splitlines()[1:]
    assert {line.split(",")[0] for line in lines if "-tiny" in line} == {"synthpose"}
    assert {line.split(",")[0] for line in lines if "-tiny" not in line} == {"real"}


def _copy_with(tmp_path: Path, name: str, text: str) -> Path:
    records = tmp_path / "records"
    shutil.copytree(RECORDS, records)
    (records / name).write_text(text)
    return records


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.pop("seed"), "'seed'"),
        (lambda r: r.update(device_hours="ten"), "'device_hours'"),
        (lambda r: r["dataset"].update(name="flic"), "'dataset.name'"),
        (lambda r: r["metrics"]["test"].pop("PCKh/Mean"), "'PCKh/Mean'"),
        (lambda r: r["model"].update(gflops="27"), "'model.gflops'"),
        (lambda r: r["protocols"][2].pop("flip_test"), "'protocols[2].flip_test'"),
    ],
)
def test_a_malformed_record_is_rejected_naming_file_and_field(tmp_path: Path, change, field: str) -> None:
    record = json.loads((RECORDS / "hourglass-8_mpii_s1.json").read_text())
    change(record)
    records = _copy_with(tmp_path, "hourglass-8_mpii_s1.json", json.dumps(record))
    with pytest.raises(LeaderboardError) as error:
        generate_leaderboard(records, tmp_path / "out")
    assert "hourglass-8_mpii_s1.json" in str(error.value) and field in str(error.value)
    assert not (tmp_path / "out").exists()  # nothing is written when a record is bad


def test_a_record_that_is_not_json_is_rejected_naming_the_file(tmp_path: Path) -> None:
    records = _copy_with(tmp_path, "broken.json", '{"schema_version": 1,')
    with pytest.raises(LeaderboardError, match=r"broken\.json: not valid JSON"):
        generate_leaderboard(records, tmp_path / "out")


def test_no_records_gives_an_empty_leaderboard(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    text = generate_leaderboard(tmp_path / "runs", tmp_path / "out", title="Demo").read_text()
    assert text.startswith("# Demo\n") and "0 run records, 0 rows." in text and "No run records yet." in text


def test_galleries_are_linked_relative_to_the_markdown(tmp_path: Path) -> None:
    records = tmp_path / "records"
    shutil.copytree(RECORDS, records)
    path = records / "hourglass-tiny_synthpose_s0.json"
    record = json.loads(path.read_text())
    record["gallery"] = f"{record['run_id']}_gallery.png"
    path.write_text(json.dumps(record))
    generate_leaderboard(records, tmp_path / "out")
    board = (tmp_path / "out" / MARKDOWN_NAME).read_text()
    section = board[board.index("## Prediction galleries"):board.index("## Provenance")]
    assert section.count("<details>") == 1  # only the run with a gallery
    assert ("<summary>SynthPose (MPII format): hourglass-tiny (run hourglass-tiny_synthpose_s0)</summary>\n\n"
            "![hourglass-tiny best and worst](../records/hourglass-tiny_synthpose_s0_gallery.png)") in section
    generate_leaderboard(records, records)  # beside the records: a plain file name
    assert "(hourglass-tiny_synthpose_s0_gallery.png)" in (records / MARKDOWN_NAME).read_text()


def test_a_board_of_synthpose_runs_only_says_so(tmp_path: Path) -> None:
    records = tmp_path / "records"
    records.mkdir()
    for path in RECORDS.glob("*synthpose*.json"):
        shutil.copy(path, records)
    generate_leaderboard(records, tmp_path / "synthetic")
    generate_leaderboard(RECORDS, tmp_path / "all")
    sentence = "No run on a real dataset (MPII, COCO, LSP) has been recorded yet"
    assert sentence in (tmp_path / "synthetic" / MARKDOWN_NAME).read_text()
    assert sentence not in (tmp_path / "all" / MARKDOWN_NAME).read_text()


def test_imported_checkpoints_get_their_own_table_and_every_row_names_its_grid(tmp_path: Path) -> None:
    # The same COCO record, once as published weights scored under the msra grid: it must not join (or be
    # averaged into) the trained row, and its table, evaluation label and footnote say what it is.
    record = json.loads((RECORDS / "simplebaseline-res50_coco_s0.json").read_text())
    record["protocol"]["convention"] = "msra"
    record["run_id"] = "imported_run"
    record["imported"] = {"format": "msra", "source_file": "/w/pose_resnet_50_256x192.pth", "sha256": "ab" * 32}
    records = _copy_with(tmp_path, "zz_imported.json", json.dumps(record))
    generate_leaderboard(records, tmp_path / "out")
    markdown = (tmp_path / "out" / MARKDOWN_NAME).read_text()
    trained, imported = markdown.split("## COCO\n", 1)[1].split("## COCO: published checkpoints (imported weights)", 1)
    assert _row(trained, "simplebaseline-res50")[-4] == "2"  # still the two trained seeds (n)
    row = _row(imported, "simplebaseline-res50")
    assert row[6] == "detected boxes, flip, quarter, msra grid" and row[-4] == "1"
    assert "weights imported from `pose_resnet_50_256x192.pth` (msra, sha256 `abababababab`)" in imported


def test_a_test_server_reference_is_not_comparable(tmp_path: Path) -> None:
    # The same three hourglass runs against a test-server number: no delta, no pass or fail.
    records = tmp_path / "records"
    shutil.copytree(RECORDS, records)
    for path in records.glob("hourglass-8_mpii_s*.json"):
        record = json.loads(path.read_text())
        record["reference"]["split"] = "test"
        path.write_text(json.dumps(record))
    generate_leaderboard(records, tmp_path / "out")
    row = _row((tmp_path / "out" / MARKDOWN_NAME).read_text(), "hourglass-8")
    assert row[-3:] == ["88.78 (PCKh@0.5)", "–", "not comparable (test-split reference)"]


def test_reference_rows_sit_under_their_table_and_each_row_gets_its_multiple_of_the_floor(tmp_path: Path) -> None:
    """A references file for SynthPose (MPII format) with a mean-pose floor of 12.5 PCKh: hourglass-tiny's 70.25
    is 5.62 times it; the floor and ceiling rows appear under that table only, with a fingerprint warning because
    the file's fingerprint is not the runs'."""
    records = tmp_path / "runs"
    shutil.copytree(RECORDS, records)
    payload = {"kind": "posebench-reference-rows", "protocol": "mpii",
               "dataset": {"name": "synthpose", "format": "mpii", "split": "val", "fingerprint": "other"},
               "rows": [{"label": "mean pose (image-blind)", "kind": "floor", "metrics": {"PCKh/Mean": 12.5}},
                        {"label": "oracle: argmax", "kind": "ceiling", "metrics": {"PCKh/Mean": 100.0}}]}
    (records / "references").mkdir()
    (records / "references" / "synthpose-mpii.json").write_text(json.dumps(payload))
    markdown = generate_leaderboard(records, tmp_path / "out").read_text()
    section = markdown.split("### SynthPose (MPII format)")[1].split("###")[0]
    assert "x mean pose (PCKh@0.5)" in section
    assert "5.62" in _row(section, "hourglass-tiny")
    assert "| mean pose (image-blind) | floor | 12.50 |" in section
    assert "| oracle: argmax | ceiling | 100.00 |" in section
    assert "fingerprint differs" in section
    coco = markdown.split("### SynthPose (COCO format)")[1]
    assert "x mean pose" not in coco and "mean pose (image-blind)" not in coco
    assert "x mean pose" not in markdown.split("## SynthPose")[0]  # real-data tables without references unchanged


def test_a_damaged_references_file_is_an_error_naming_it(tmp_path: Path) -> None:
    records = tmp_path / "runs"
    shutil.copytree(RECORDS, records)
    (records / "references").mkdir()
    (records / "references" / "synthpose-mpii.json").write_text('{"kind": "something else"}')
    with pytest.raises(PoseBenchError, match="synthpose-mpii.json: not a reference-rows file"):
        generate_leaderboard(records, tmp_path / "out")


@pytest.mark.parametrize(("second_seed", "shown", "mark"), [(88.6, "88.80 ± 0.28", "~"), (89.2, "89.10 ± 0.14", "")])
def test_a_row_within_the_spread_of_the_row_above_is_marked(tmp_path: Path, second_seed: float, shown: str,
                                                            mark: str) -> None:
    """simplebaseline-res50 (MPII) gets a seed 1 of ``second_seed`` PCKh@0.5 beside its seed 0's 89.0. With 88.6:
    mean 88.8, std 0.2828; hourglass-8 below it has 88.5 ± 0.4: |88.8 - 88.5| = 0.3 <= 0.6828, marked "~". With 89.2:
    mean 89.1, std 0.1414: 0.6 > 0.5414, not marked."""
    records = tmp_path / "runs"
    shutil.copytree(RECORDS, records)
    record = json.loads((records / "simplebaseline-res50_mpii_s0.json").read_text())
    record["seed"], record["config"]["seed"], record["run_id"] = 1, 1, "simplebaseline-res50_mpii_s1"
    record["metrics"]["val"]["PCKh/Mean"] = second_seed
    (records / "simplebaseline-res50_mpii_s1.json").write_text(json.dumps(record))
    markdown = generate_leaderboard(records, tmp_path / "out").read_text()
    table = markdown.split("\n## MPII\n")[1].split("\n\n")[0].strip()
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    first, second = _row(table, "simplebaseline-res50"), _row(table, "hourglass-8")
    assert header[header.index("n") + 1] == "vs above" and first[header.index("PCKh@0.5")] == shown
    assert first[header.index("vs above")] == "" and second[header.index("vs above")] == mark
    assert "~ in \"vs above\": the row's mean PCKh@0.5 is within the spread of the row above" in markdown
    # The COCO table has one row: no column, no note.
    assert "vs above" not in markdown.split("\n## COCO\n")[1].split("\n## ")[0]


def test_joint_presence_accuracy_gets_its_own_table_for_the_rows_that_have_it(tmp_path: Path) -> None:
    """Two seeds of a method that predicts joint presence (Visibility/accuracy 80 and 90, in percent under every
    protocol): a table under MPII with 85.00 ± 7.07 (sample std of 80 and 90), n 2; no such table where no row has the
    metric (COCO), and no percent scaling applied twice."""
    records = tmp_path / "runs"
    shutil.copytree(RECORDS, records)
    for seed, accuracy in ((0, 80.0), (1, 90.0)):
        record = json.loads((records / "simplebaseline-res50_mpii_s0.json").read_text())
        record["seed"], record["config"]["seed"], record["run_id"] = seed, seed, f"simplebaseline-res50_mpii_s{seed}"
        record["metrics"]["val"]["Visibility/accuracy"] = accuracy
        (records / f"simplebaseline-res50_mpii_s{seed}.json").write_text(json.dumps(record))
    markdown = generate_leaderboard(records, tmp_path / "out").read_text()
    mpii = markdown.split("\n## MPII\n")[1].split("\n## ")[0]
    presence = mpii.split("Joint presence")[1].split("\n\n", 2)[1]
    assert _row(presence, "simplebaseline-res50")[2:] == ["85.00 ± 7.07", "2"]
    assert "hourglass-8" not in presence
    assert "Joint presence" not in markdown.split("\n## COCO\n")[1].split("\n## ")[0]


def test_runs_of_one_auto_config_that_trained_in_other_precisions_are_separate_rows(tmp_path: Path) -> None:
    """``trainer.precision: auto`` resolves per machine: seed 0 trained in bf16-mixed and seed 1 in fp32 are not two
    seeds of one setting. Each is its own row, and the bf16 row says so in its evaluation cell."""
    records = tmp_path / "runs"
    shutil.copytree(RECORDS, records)
    source = json.loads((records / "simplebaseline-res50_mpii_s0.json").read_text())
    for seed, precision, value in ((0, "bf16-mixed", 89.0), (1, "32-true", 88.0)):
        record = json.loads(json.dumps(source))
        record["seed"], record["config"]["seed"], record["run_id"] = seed, seed, f"simplebaseline-res50_mpii_s{seed}"
        record["config"].setdefault("trainer", {}).update(precision="auto", channels_last="auto")
        record["speed"] = {"channels_last": {"value": False, "source": "speed default: x"},
                           "precision": {"value": precision, "source": "speed default: y"}}
        record["metrics"]["val"]["PCKh/Mean"] = value
        (records / f"simplebaseline-res50_mpii_s{seed}.json").write_text(json.dumps(record))
    markdown = generate_leaderboard(records, tmp_path / "out").read_text()
    table = markdown.split("\n## MPII\n")[1].split("\n\n")[0].strip()
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    rows = [line for line in table.splitlines() if "simplebaseline-res50" in line]
    assert len(rows) == 2
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in rows]
    assert sorted((c[header.index("PCKh@0.5")], c[header.index("n")]) for c in cells) == [("88.00", "1"),
                                                                                          ("89.00", "1")]
    labels = {c[header.index("PCKh@0.5")]: c[header.index("evaluation")] for c in cells}
    assert labels["89.00"].endswith(", bf16-mixed") and "bf16" not in labels["88.00"]


def _table_cells(markdown: str, section: str, variant: str) -> tuple[list[str], list[list[str]]]:
    table = markdown.split(f"\n## {section}\n")[1].split("\n\n")[0].strip()
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if variant in line]
    return header, rows


def test_coco_runs_ranked_by_another_person_score_are_their_own_row_and_say_so(tmp_path: Path) -> None:
    """A record from before ``model.instance_score`` ranked persons by the box rescoring: it shares a row with a
    new record that says ``bbox_keypoint``. A run ranked by G-RMI's keypoint score is another row, named so in
    its evaluation cell; on MPII, which ranks no persons, the mode is not shown."""
    records = tmp_path / "runs"
    shutil.copytree(RECORDS, records)
    coco = json.loads((records / "simplebaseline-res50_coco_s1.json").read_text())
    assert "instance_score" not in coco["config"]["model"]  # written before the key existed
    coco["config"]["model"]["instance_score"] = "bbox_keypoint"
    (records / "simplebaseline-res50_coco_s1.json").write_text(json.dumps(coco))
    coco["seed"], coco["config"]["seed"], coco["run_id"] = 7, 7, "simplebaseline-res50_coco_s7"
    coco["config"]["model"]["instance_score"] = "keypoint"
    coco["metrics"]["test"]["AP"] = 0.5
    (records / "simplebaseline-res50_coco_s7.json").write_text(json.dumps(coco))
    mpii = json.loads((records / "simplebaseline-res50_mpii_s0.json").read_text())
    mpii["config"]["model"]["instance_score"] = "keypoint"
    (records / "simplebaseline-res50_mpii_s0.json").write_text(json.dumps(mpii))
    markdown = generate_leaderboard(records, tmp_path / "out").read_text()
    header, rows = _table_cells(markdown, "COCO", "simplebaseline-res50")
    by_n = {c[header.index("n")]: c[header.index("evaluation")] for c in rows}
    assert sorted(by_n) == ["1", "2"]  # seeds 0 (no key) and 1 (bbox_keypoint) share a row; seed 7 is alone
    assert "score" not in by_n["2"] and by_n["1"].endswith(", keypoint score")
    header, rows = _table_cells(markdown, "MPII", "simplebaseline-res50")
    assert len(rows) == 1 and "score" not in rows[0][header.index("evaluation")]


def test_a_key_a_record_predates_is_the_same_setting_as_the_value_runs_had_before_it() -> None:
    """``run_record.BEFORE_THE_KEY``: a record written before ``data.reduced_decode``, the speed settings or
    ``model.instance_score`` did what those values say, so it is one setting with a new record that sets them so."""
    old = {"model": {"variant": "hourglass-tiny"}, "data": {"name": "synthpose"}, "trainer": {"max_epochs": 2}}
    new = {"model": {"variant": "hourglass-tiny", "instance_score": "bbox_keypoint"},
           "data": {"name": "synthpose", "reduced_decode": False},
           "trainer": {"max_epochs": 2, "channels_last": False, "precision": "32-true"}}
    assert setting_hash(old) == setting_hash(new)
    for section, key, other in (("data", "reduced_decode", True), ("trainer", "channels_last", True),
                                ("trainer", "precision", "bf16-mixed"), ("model", "instance_score", "keypoint")):
        changed = json.loads(json.dumps(new))
        changed[section][key] = other
        assert setting_hash(changed) != setting_hash(old), key
