"""A protocol defined in one place (here, in this test) is used by the evaluation, the gallery and the
leaderboard without any other code knowing its name: what adding a dataset protocol file does."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from benchmark import metrics
from benchmark.commands.leaderboard import CSV_NAME, MARKDOWN_NAME, generate_leaderboard
from benchmark.evaluation import EvaluationCallback, evaluate_predictions
from benchmark.gallery import person_errors
from benchmark.protocols import PROTOCOLS, Column, Protocol, register_protocol
from datamodules.datasets import PoseDataset
from datamodules.records import PersonRecord
from datamodules.skeletons import LSP

RECORDS = Path(__file__).resolve().parents[1] / "data" / "leaderboard" / "records"


@pytest.fixture()
def toy() -> Iterator[Protocol]:
    """``toy``: PCK within a fixed 5 px, registered for the test only."""

    @register_protocol("toy")
    class ToyProtocol(Protocol):
        title = "Toy"
        primary = (Column("PCK@5px", "PCK5/Mean"),)
        per_joint = ("PCK5/r_ankle", "PCK5/Mean")
        error_label = "px err"

        def score(self, dataset, predictions):
            gt, visible = self.ground_truth(dataset)
            table = metrics.pck(predictions, gt, visible, np.full(len(gt), 5.0), 1.0, dataset.skeleton.joints)
            return {f"PCK5/{name}": value for name, value in table.items()}

        def person_errors(self, dataset, keypoints):
            gt, visible = self.ground_truth(dataset)
            return metrics.mean_normalised_error(keypoints, gt, visible, np.ones(len(gt)))

    yield PROTOCOLS["toy"]
    del PROTOCOLS["toy"]


def _dataset() -> PoseDataset:
    """Two LSP-skeleton persons, every joint annotated, scored under ``toy``."""
    records = [PersonRecord(image=f"im{i}.jpg", image_id=i, center=np.array([50.0, 50.0]), scale=np.ones(2),
                            keypoints=np.arange(28, dtype=np.float64).reshape(14, 2) + i, visible=np.ones(14, bool))
               for i in range(2)]
    return PoseDataset("toyset", "val", LSP, records, (), Path("."), "toy")


def test_evaluation_and_gallery_use_the_new_protocol(toy: Protocol, tmp_path: Path) -> None:
    dataset = _dataset()
    gt = np.stack([r.keypoints for r in dataset.records])
    pred = gt.copy()
    pred[0, :7] += [3.0, 4.0]  # 5 px: within
    pred[1, :7] += [6.0, 8.0]  # 10 px: outside
    result = evaluate_predictions(dataset, {"keypoints": pred, "scores": np.ones((2, 14))}, tmp_path, "val")
    assert result["PCK5/Mean"] == 75.0 and result["PCK5/r_ankle"] == 50.0 and result["PCK5/head_top"] == 100.0
    np.testing.assert_array_equal(scipy.io.loadmat(tmp_path / "val_predictions.mat")["preds"], pred + 1.0)
    assert EvaluationCallback(dataset).primary_metric("val") == "val/PCK5/Mean"
    np.testing.assert_array_equal(person_errors(dataset, pred), [2.5, 5.0])  # mean px error: 7 x 5 / 14, 7 x 10 / 14


def test_the_leaderboard_gives_the_new_protocol_its_table(toy: Protocol, tmp_path: Path) -> None:
    records = tmp_path / "records"
    shutil.copytree(RECORDS, records)
    record = json.loads((RECORDS / "hourglass-8_mpii_s0.json").read_text())
    record.update(run_id="hourglass-8_toy_s0", reference={}, protocols=[],
                  metrics={"test": {"PCK5/Mean": 75.0, "PCK5/r_ankle": 50.0}})
    record["dataset"] = {"name": "toy", "fingerprint": {"val": "cc" * 32}}
    record["config"]["data"]["name"] = "toy"
    (records / "hourglass-8_toy_s0.json").write_text(json.dumps(record))
    generate_leaderboard(records, tmp_path / "out")  # the toy record is a row of its own, nothing set aside
    assert "set aside" not in (tmp_path / "out" / MARKDOWN_NAME).read_text()
    markdown = (tmp_path / "out" / MARKDOWN_NAME).read_text()
    # After the tables of lower table_order (MPII 0, COCO 1, LSP 2; the toy protocol keeps the default 100).
    assert markdown.index("## COCO\n") < markdown.index("## Toy\n") < markdown.index("## SynthPose\n")
    toy_section = markdown.split("## Toy\n", 1)[1].split("\n## ", 1)[0]
    header, _, row = [line for line in toy_section.splitlines() if line.startswith("|")][:3]
    assert header.split(" | ")[7:9] == ["PCK@5px", "n"]
    assert row.split(" | ")[7:9] == ["75.00", "1"] and "no reference" in row
    assert "Per joint (PCK@5px, mean over runs):" in toy_section and "| hourglass | hourglass-8 | 50.00 | 75.00 |" in (
        toy_section)
    lines = [line for line in (tmp_path / "out" / CSV_NAME).read_text().splitlines() if ",toy," in line]
    assert len(lines) == 1 and lines[0].startswith("real,Toy,toy,test,hourglass,hourglass-8,")
