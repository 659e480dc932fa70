"""The protocol registry: one object per name, a duplicate fails, an unknown name lists the known ones."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from benchmark.errors import PoseBenchError
from benchmark.evaluation import EvaluationCallback
from benchmark.protocols import PROTOCOLS, Column, Protocol, get_protocol, leaderboard_protocols, register_protocol
from datamodules.datasets import FORMATS


class _Unregistered(Protocol):
    title = "X"
    primary = (Column("X", "X/Mean"),)
    error_label = "x"

    def score(self, dataset, predictions):
        return {"X/Mean": 0.0}

    def person_errors(self, dataset, keypoints):
        return np.zeros(len(keypoints))


def test_every_dataset_protocol_is_registered_once_in_table_order():
    assert sorted(PROTOCOLS) == ["coco", "lsp", "mpii"]
    assert [p.name for p in leaderboard_protocols()] == ["mpii", "coco", "lsp"]
    assert all(get_protocol(name) is protocol and protocol.name == name for name, protocol in PROTOCOLS.items())
    assert set(FORMATS) <= set(PROTOCOLS)  # SynthPose is scored under the protocol of the format it is read in


def test_a_duplicate_name_fails_and_keeps_the_first():
    before = PROTOCOLS["mpii"]
    with pytest.raises(ValueError, match=r"protocol 'mpii' is already registered by "
                                         r"benchmark\.protocols\.mpii\.MpiiProtocol; cannot register .*_Unregistered"):
        register_protocol("mpii")(_Unregistered)
    assert PROTOCOLS["mpii"] is before


def test_a_protocol_without_its_table_names_is_refused():
    class Untitled(_Unregistered):
        title = ""
        error_label = ""

    with pytest.raises(ValueError, match=r"protocol .*\.Untitled must set title, error_label$"):
        register_protocol("untitled")(Untitled)
    assert "untitled" not in PROTOCOLS


def test_an_unknown_name_is_a_user_error_listing_the_known_ones():
    with pytest.raises(PoseBenchError, match=r"^unknown evaluation protocol 'flic'; known: coco, lsp, mpii$"):
        get_protocol("flic")


@pytest.mark.parametrize(("name", "ranking", "label", "scale"), [
    ("mpii", "PCKh/Mean", "PCKh@0.5", 1.0), ("coco", "AP", "AP", 100.0), ("lsp", "PCK/Mean", "PCK@0.2", 1.0)])
def test_the_primary_metric_is_the_one_table_everything_ranks_by(name, ranking, label, scale):
    protocol = get_protocol(name)
    assert protocol.ranking_metric == ranking and protocol.primary[0] == (label, ranking)
    assert protocol.display(0.5) == 0.5 * scale
    dataset = SimpleNamespace(protocol=name)
    assert EvaluationCallback(dataset).primary_metric("test") == f"test/{ranking}"  # checkpoint selection
