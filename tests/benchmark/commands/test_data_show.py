"""``python -m benchmark data show``: the PNG it writes, its errors, and ``draw_skeleton``."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from benchmark.cli import main
from benchmark.commands.data_show import draw_skeleton, show_sample
from datamodules.datasets import build_dataset
from datamodules.records import DatasetError
from datamodules.skeletons import MPII
from datamodules.synthpose import generate_synthpose

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which the PNG spec puts first, right after the signature."""
    header = path.read_bytes()[:24]
    assert header[:8] == PNG_SIGNATURE and header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthpose")
    generate_synthpose(root, num_train=2, num_val=2, seed=0, progress=False)
    return root


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory, coco_fixture_dir: Path) -> Path:
    """A COCO root in the standard layout built from the four real val2017 fixture images."""
    root = tmp_path_factory.mktemp("coco")
    (root / "annotations").mkdir()
    shutil.copy(coco_fixture_dir / "test_coco.json", root / "annotations" / "person_keypoints_val2017.json")
    (root / "val2017").mkdir()
    for image in coco_fixture_dir.glob("*.jpg"):
        (root / "val2017" / image.name).symlink_to(image)
    (root / "person_detection_results").mkdir()
    shutil.copy(
        coco_fixture_dir / "test_coco_det_AP_H_56.json",
        root / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person.json",
    )
    return root


@pytest.mark.parametrize("augment", [False, True])
def test_show_synthpose_sample(synth_root, tmp_path, augment):
    out = tmp_path / "new" / "folder" / "sample.png"
    written = show_sample("synthpose", synth_root, split="val", index=1, augment=augment, input_size=(64, 48), out=out)
    assert written == out
    assert _png_size(out) == (1200, 600)
    assert out.stat().st_size > 10_000  # two drawn panels, not a blank canvas
    assert [p.name for p in out.parent.iterdir()] == ["sample.png"]  # no temp file left behind


def test_show_real_coco_sample(coco_root, tmp_path):
    out = show_sample("coco", coco_root, split="val", index=2, out=tmp_path / "coco.png")
    assert _png_size(out) == (1200, 600)
    assert out.stat().st_size > 10_000


def test_out_of_range_index_names_index_and_count(synth_root, tmp_path):
    count = len(build_dataset("synthpose", synth_root, "val").records)
    for index in (count, -1):
        with pytest.raises(DatasetError, match=rf"index {index} .*{count} records"):
            show_sample("synthpose", synth_root, split="val", index=index, out=tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_cli_data_show(synth_root, tmp_path, capsys):
    out = tmp_path / "cli.png"
    argv = ["data", "show", "--data", "synthpose", "--root", str(synth_root), "--index", "0", "--out", str(out)]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert _png_size(out) == (1200, 600)
    assert main(argv[:-3] + ["999", "--out", str(out)]) == 2
    assert "index 999" in capsys.readouterr().err


def _mpii_pose() -> np.ndarray:
    """(16, 2) keypoints of a standing person inside a 60 x 40 image."""
    return np.array(
        [[14, 55], [15, 45], [16, 35], [24, 35], [25, 45], [26, 55], [20, 35], [20, 20],
         [20, 16], [20, 8], [8, 30], [10, 25], [14, 20], [26, 20], [30, 25], [32, 30]], dtype=np.float64,
    )


def test_draw_skeleton_on_axes_keeps_annotated_limbs_and_sides():
    figure = Figure()
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.imshow(np.zeros((60, 40, 3), dtype=np.uint8))
    limits = (ax.get_xlim(), ax.get_ylim())
    visible = np.zeros(16, dtype=bool)
    visible[:6] = True  # legs only: pelvis (6) unannotated, so its two limbs go
    keypoints = _mpii_pose()
    keypoints[0] = (-500.0, 900.0)  # far outside the image: must not rescale the view
    assert draw_skeleton(ax, keypoints, visible, MPII) is ax
    lines, points = ax.collections
    segments = [np.asarray(s) for s in lines.get_segments()]
    # MPII limbs in order: (0, 1), (1, 2) right leg; (3, 4), (4, 5) left leg.
    np.testing.assert_array_equal(np.stack(segments), keypoints[[[0, 1], [1, 2], [3, 4], [4, 5]]])
    colours = lines.get_colors()
    assert np.array_equal(colours[0], colours[1]) and np.array_equal(colours[2], colours[3])
    assert not np.array_equal(colours[0], colours[2])
    np.testing.assert_array_equal(points.get_offsets(), keypoints[:6])
    assert (ax.get_xlim(), ax.get_ylim()) == limits


def test_draw_skeleton_on_image_returns_a_drawn_copy():
    image = np.full((60, 40, 3), 128, dtype=np.uint8)
    original = image.copy()
    nothing = draw_skeleton(image, _mpii_pose(), np.zeros(16), MPII)
    np.testing.assert_array_equal(nothing, original)  # no annotated joint: pixels unchanged
    drawn = draw_skeleton(image, _mpii_pose(), np.ones(16), MPII)
    np.testing.assert_array_equal(image, original)
    assert drawn.shape == (60, 40, 3) and drawn.dtype == np.uint8
    # Left shoulder (26, 20) is drawn blue, right shoulder (14, 20) orange (x, y -> row y, column x).
    left, right = drawn[20, 26].astype(int), drawn[20, 14].astype(int)
    assert left[2] > left[0] + 50
    assert right[0] > right[2] + 50
    with pytest.raises(ValueError, match="16 joints"):
        draw_skeleton(image, np.zeros((17, 2)), np.ones(17), MPII)
