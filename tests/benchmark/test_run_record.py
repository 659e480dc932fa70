"""Run records: schema round trip, clear rejections, atomic writes that survive a crash."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from benchmark import run_record
from benchmark.run_record import (
    SCHEMA,
    SCHEMA_VERSION,
    read_record,
    validate_record,
    write_record,
)

RECORDS = Path(__file__).parent / "data" / "leaderboard" / "records"


def _record() -> dict[str, Any]:
    """A complete record (one of the leaderboard test records, all schema fields present)."""
    return json.loads((RECORDS / "hourglass-8_mpii_s0.json").read_text())


SPEED = {"channels_last": {"value": True, "source": "speed default: channels_last on for hourglass on cpu "
                                                  "(step x0.66, measured 2026-12-06)"},
         "precision": {"value": "32-true", "source": "config"}}
"""A ``speed`` field as the runner writes it (benchmark/train.py ``speed_settings``)."""


def test_every_schema_field_is_in_the_example_record() -> None:
    record = _record()
    assert set(SCHEMA) <= set(record) and record["schema_version"] == SCHEMA_VERSION == 2
    validate_record(record)


def test_round_trip_is_lossless_and_nan_becomes_null(tmp_path: Path) -> None:
    record = _record()
    record["metrics"]["test"]["PCKh/pelvis"] = float("nan")
    record["protocols"][0]["metrics"]["PCKh/Mean"] = float("inf")
    path = write_record(record, tmp_path)
    assert path == tmp_path / f"{record['run_id']}.json"
    loaded = read_record(path)
    expected = copy.deepcopy(record)
    expected["metrics"]["test"]["PCKh/pelvis"] = None
    expected["protocols"][0]["metrics"]["PCKh/Mean"] = None
    assert loaded == expected
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("seed"), "run record lacks field 'seed'"),
        (lambda r: r.update(seed="0"), "run record field 'seed' must be <class 'int'>, got str"),
        (lambda r: r.update(seed=True), "run record field 'seed' must be <class 'int'>, got bool"),
        (lambda r: r.update(schema_version=1), "run record schema_version 1 != 2"),
        (lambda r: r["metrics"]["test"].update({"PCKh/Mean": "88.1"}), r"metrics\['test'\] must map metric names"),
        (lambda r: r["git"].pop("dirty"), "run record git lacks 'dirty'"),
        (lambda r: r["dataset"].pop("fingerprint"), "run record dataset lacks 'fingerprint'"),
        (lambda r: r["protocol"].pop("decoder"), "run record protocol lacks 'decoder'"),
        (lambda r: r.update(checkpoint={"path": "x.ckpt"}), "run record checkpoint lacks 'sha256'"),
        (lambda r: r.update(wandb={"id": "abc"}), "run record wandb lacks 'url'"),
        (lambda r: r["protocols"][1].pop("stage"), r"run record lacks field 'protocols\[1\]\.stage'"),
        (lambda r: r["protocols"].append("dark"), r"protocols\[6\] must be an object with keys"),
        (lambda r: r["protocols"][2]["metrics"].update(x=[1]), r"protocols\[2\]\.metrics must map"),
        (lambda r: r.update(world_size=1.0), "run record field 'world_size' must be <class 'int'>, got float"),
        (lambda r: r["protocols"][0].update(decoder=1), r"field 'protocols\[0\]\.decoder' must be a string, got 1"),
        (lambda r: r["protocols"][0].update(flip_test=1), r"field 'protocols\[0\]\.flip_test' must be true or false"),
        (lambda r: r["reference"].update(value="88.8"), "field 'reference.value' must be a number or null, got '88.8'"),
        (lambda r: r["model"].update(params=True), "field 'model.params' must be a number or null, got True"),
        (lambda r: r["protocol"].update(convention="hrnet"), "'protocol.convention' must be one of aligned, msra, udp"),
        (lambda r: r.update(imported={"format": "msra-hrnet"}),
         "field 'imported' must be null or an object .* 'source_file'"),
        (lambda r: r.update(speed=[]), "field 'speed' must be an object with keys"),
        (lambda r: r.update(speed={**SPEED, "channels_last": {"value": "yes", "source": "config"}}),
         r"field 'speed.channels_last' must be \{value: bool, source: str\}"),
        (lambda r: r.update(speed={"channels_last": SPEED["channels_last"]}),
         r"field 'speed.precision' must be \{value: str, source: str\}, got None"),
    ],
)
def test_malformed_records_are_rejected_naming_the_field(change, message: str, tmp_path: Path) -> None:
    record = _record()
    change(record)
    with pytest.raises(ValueError, match=message):
        validate_record(record)
    with pytest.raises(ValueError, match=message):
        write_record(record, tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temp file
    # Reading the same record from disk names the file too.
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=f"{path}: .*{message}"):
        read_record(path)


def test_speed_is_optional_and_checked_when_present(tmp_path: Path) -> None:
    old = _record()
    assert "speed" not in old  # written before the field existed: still loads
    validate_record(old)
    record = {**old, "speed": SPEED}
    assert read_record(write_record(record, tmp_path))["speed"] == SPEED


def test_not_an_object_is_rejected() -> None:
    with pytest.raises(ValueError, match="must be a JSON object, got list"):
        validate_record([])


def test_crash_mid_write_leaves_the_previous_record_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _record()
    path = write_record(first, tmp_path)
    before = path.read_bytes()
    second = _record()
    second["metrics"]["test"]["PCKh/Mean"] = 12.5

    def crash(src: str, dst: str) -> None:
        # The temp file holds the whole new record; the process dies before the rename.
        assert json.loads(Path(src).read_text())["metrics"]["test"]["PCKh/Mean"] == 12.5
        raise KeyboardInterrupt

    monkeypatch.setattr(run_record.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_record(second, tmp_path)
    monkeypatch.setattr(run_record.os, "replace", os.replace)
    assert path.read_bytes() == before and read_record(path) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # the temp file was removed


def test_a_killed_writer_leaves_only_a_hidden_temp_file_the_leaderboard_ignores(tmp_path: Path) -> None:
    from benchmark.commands.leaderboard import generate_leaderboard

    write_record(_record(), tmp_path / "runs")
    # What a SIGKILL between write and rename leaves: a truncated dot-file beside the records.
    (tmp_path / "runs" / ".x.json.abc.tmp").write_text('{"schema_version": 2, "run_')
    generate_leaderboard(tmp_path / "runs", tmp_path / "out")
    assert "hourglass-8" in (tmp_path / "out" / "LEADERBOARD.md").read_text()
