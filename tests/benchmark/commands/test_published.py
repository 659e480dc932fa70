"""The published-checkpoint table and ``verify-checkpoints`` (benchmark/commands/published.py).

Truth: the table's own invariants (unique files, importable formats, the docs rendering it), and
the behaviour a user without data or weights must see: an immediate stop naming what is missing.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import models
from benchmark.cli import main
from benchmark.commands import published as P
from benchmark.commands import weights as W

DOC = Path(__file__).resolve().parents[3] / "docs" / "checkpoints.md"


def test_published_table_is_consistent():
    files = [p.file for p in P.PUBLISHED]
    assert len(files) == len(set(files))
    for entry in P.PUBLISHED:
        assert entry.format in W.FORMATS and entry.dataset in ("coco", "mpii")
        if not entry.importable:
            method = models.VARIANTS[entry.variant].method
            assert method in W.FORMAT_METHODS[entry.format]
            assert entry.input_size[0] % 32 == 0 and entry.input_size[1] % 32 == 0


def test_doc_table_equals_the_data():
    text = DOC.read_text()
    block = text.split("<!-- published:begin -->\n", 1)[1].split("\n<!-- published:end -->", 1)[0]
    assert block == P.reference_table()


def test_verify_stops_at_once_naming_what_is_missing(tmp_path, capsys):
    started = time.monotonic()
    assert main(["verify-checkpoints", "--data-root", str(tmp_path / "data"), "--weights", ""]) == 2
    assert "WEIGHTS" in capsys.readouterr().err
    weights = tmp_path / "weights"
    weights.mkdir()
    assert main(["verify-checkpoints", "--data-root", str(tmp_path / "data"), "--weights", str(weights)]) == 2
    err = capsys.readouterr().err
    assert "pose_hrnet_w32_256x192.pth" in err and "https://download.openmmlab.com/mmpose/" in err
    (weights / "pose_coco").mkdir()
    (weights / "pose_coco" / "pose_hrnet_w32_256x192.pth").write_bytes(b"")
    assert main(["verify-checkpoints", "--data-root", str(tmp_path / "data"), "--weights", str(weights)]) == 2
    err = capsys.readouterr().err
    assert f"coco: missing under {tmp_path / 'data' / 'coco'}: annotations/person_keypoints_train2017.json" in err
    assert "cocodataset.org" in err
    assert time.monotonic() - started < 10.0


def test_verify_reports_unimportable_checkpoints_without_data(tmp_path, capsys):
    (tmp_path / "my_run").mkdir()
    (tmp_path / "my_run" / "model_best.pth.tar").write_bytes(b"")  # not bearpaw's: another folder
    with pytest.raises(W.WeightsError, match="none of the published checkpoints is there"):
        P.verify_checkpoints(str(tmp_path / "nodata"), str(tmp_path), tmp_path / "out")
    (tmp_path / "hg_s8_b1").mkdir()
    (tmp_path / "hg_s8_b1" / "model_best.pth.tar").write_bytes(b"")
    capsys.readouterr()
    assert P.verify_checkpoints(str(tmp_path / "nodata"), str(tmp_path), tmp_path / "out") == 1
    lines = capsys.readouterr().out.splitlines()  # logged to stdout, one verdict per checkpoint, then the count
    assert lines[0].startswith("NOT IMPORTABLE  hg_s8_b1/model_best.pth.tar: bearpaw/pytorch-pose's HourglassNet")
    assert lines[1:] == ["0 of 1 present checkpoint(s) reproduced within 0.1"]


def test_evaluate_overrides_follow_each_protocol(tmp_path):
    by_file = {p.file: p for p in P.PUBLISHED}
    hrnet = P.evaluate_overrides(by_file["pose_hrnet_w32_256x192.pth"], tmp_path / "c.ckpt", Path("data"), tmp_path)
    assert {"data=coco", "data.root=data/coco", "data.val_boxes=detections", "model.convention=msra",
            "model.flip_test=true", "model.decoder=quarter"} <= set(hrnet)
    udp = next(p for p in P.PUBLISHED if p.convention == "udp")
    udp_overrides = set(P.evaluate_overrides(udp, tmp_path, Path("d"), tmp_path))
    assert {"model.convention=udp", "model.decoder=dark"} <= udp_overrides
    deeppose = by_file["deeppose_res50_mpii_256x256-c63cd0b6_20210203.pth"]
    overrides = P.evaluate_overrides(deeppose, tmp_path, Path("d"), tmp_path)
    assert "data.val_boxes=gt" in overrides and not any(o.startswith("model.decoder=") for o in overrides)


def test_verdicts_use_the_tolerance_and_units():
    entry = next(p for p in P.PUBLISHED if p.file == "pose_hrnet_w32_256x192.pth")
    assert P.our_value(entry, {"test": {"AP": 0.7445}}) == pytest.approx(74.45)
    assert P.verdict_line(entry, 74.45)[0] and not P.verdict_line(entry, 74.55)[0]
    assert "delta +0.15" in P.verdict_line(entry, 74.55)[1]
    mpii = next(p for p in P.PUBLISHED if p.file == "pose_hrnet_w48_256x256.pth")
    expected = "NOT VERIFIED  pose_hrnet_w48_256x256.pth: no published number, ours 90.0"
    assert P.verdict_line(mpii, 90.0) == (False, expected)
    # MPII numbers are PCKh percent already, the metric and boxes are the protocol's.
    assert P.our_value(mpii, {"test": {"PCKh/Mean": 90.25, "AP": 0.5}}) == 90.25
    assert P.our_value(mpii, {"val": {"PCKh/Mean": 90.25}}) is None  # only the test stage counts
    assert (mpii.metric, mpii.boxes, entry.metric, entry.boxes) == ("PCKh@0.5", "gt", "AP", "detections")
    hrnet_mpii = next(p for p in P.PUBLISHED if p.file == "pose_hrnet_w32_256x256.pth")
    assert P.verdict_line(hrnet_mpii, 90.25)[1] == (
        "REPRODUCED  pose_hrnet_w32_256x256.pth: PCKh@0.5 ours 90.25 vs 90.3 "
        "(leoxiaobin/deep-high-resolution-net.pytorch README.md), delta -0.05 (tolerance 0.1)")
