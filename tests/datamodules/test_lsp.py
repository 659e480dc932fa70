"""LSP and LSP-extended loaders on tiny joints.mat files written in each dataset's layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from datamodules.lsp import load_lsp
from datamodules.records import DatasetError
from tests.builders import _person, write_lsp, write_lspet


def test_lsp_records(tmp_path: Path) -> None:
    values = write_lsp(tmp_path)
    records = load_lsp(tmp_path / "joints.mat", tmp_path / "images")
    assert len(records) == 4
    assert [Path(r.image).name for r in records] == ["im0001.jpg", "im0002.jpg", "im0003.jpg", "im0004.jpg"]
    assert [r.image_id for r in records] == [1, 2, 3, 4]
    assert records[0].image == str(tmp_path / "images" / "im0001.jpg")
    assert all(Path(r.image).is_file() for r in records)
    # 1-based -> 0-based; every LSP joint is annotated, whatever its occlusion flag.
    np.testing.assert_allclose(records[2].keypoints, _person(2.0) - 1.0, rtol=0, atol=0)
    assert all(r.visible.dtype == bool and r.visible.all() for r in records)
    np.testing.assert_array_equal(records[1].extras["flag"], values[1, :, 2])
    # Person 2 (0-based joints): x 11 .. 37, y 19 .. 58 -> centre (24, 38.5); longer side 39 -> 39 * 1.25 / 200.
    np.testing.assert_allclose(records[2].center, [24.0, 38.5], rtol=0, atol=1e-12)
    np.testing.assert_allclose(records[2].scale, [0.24375, 0.24375], rtol=1e-15, atol=0)


def test_lsp_extended_records(tmp_path: Path) -> None:
    write_lspet(tmp_path)
    records = load_lsp(tmp_path / "joints.mat", tmp_path / "images", extended=True)
    assert [Path(r.image).name for r in records] == ["im00001.jpg", "im00002.jpg"]
    assert [r.image_id for r in records] == [1, 2]
    assert all(Path(r.image).is_file() for r in records)
    assert records[0].visible.all()
    np.testing.assert_array_equal(np.flatnonzero(~records[1].visible), [0, 1, 2, 3])
    # Person 1's box ignores the junk of its unannotated joints: x 18 .. 36, y 31 .. 58 (0-based).
    np.testing.assert_allclose(records[1].center, [27.0, 44.5], rtol=0, atol=1e-12)
    np.testing.assert_allclose(records[1].scale, [27 * 1.25 / 200] * 2, rtol=1e-15, atol=0)
    np.testing.assert_allclose(records[1].keypoints[4:], _person(1.0)[4:] - 1.0, rtol=0, atol=0)


@pytest.mark.parametrize("extended", [False, True])
def test_wrong_layout_names_file_and_other_dataset(tmp_path: Path, extended: bool) -> None:
    # An LSP file read as LSP-extended and the other way round.
    write_lspet(tmp_path) if not extended else write_lsp(tmp_path)
    with pytest.raises(DatasetError, match="lsp_extended" if not extended else "'lsp'") as error:
        load_lsp(tmp_path / "joints.mat", tmp_path, extended=extended)
    assert str(tmp_path / "joints.mat") in str(error.value)


def test_missing_joints_key(tmp_path: Path) -> None:
    scipy.io.savemat(str(tmp_path / "joints.mat"), {"points": np.zeros((3, 14, 2))})
    with pytest.raises(DatasetError, match="missing key 'joints'"):
        load_lsp(tmp_path / "joints.mat", tmp_path)


@pytest.mark.parametrize("extended", [False, True])
def test_flag_other_than_0_or_1_names_file_image_and_joint(tmp_path: Path, extended: bool) -> None:
    values = write_lspet(tmp_path) if extended else write_lsp(tmp_path)
    values[1, 12, 2] = 2.0
    layout = (1, 2, 0) if extended else (2, 1, 0)
    scipy.io.savemat(str(tmp_path / "joints.mat"), {"joints": np.transpose(values, layout)})
    name = "im00002.jpg" if extended else "im0002.jpg"
    expected = rf"'joints' flag 2.0 of image 2 \({name}\), joint 12 \(neck\) is not 0 or 1"
    with pytest.raises(DatasetError, match=expected):
        load_lsp(tmp_path / "joints.mat", tmp_path / "images", extended=extended)
