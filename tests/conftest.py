"""Shared test fixtures: the real sample data in ../shared/fixtures and offline settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # pytest -n N: N worker processes share the cores; one torch thread each keeps them from oversubscribing.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = PROJECT_ROOT.parent / "shared" / "fixtures"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"test fixture missing: {path} (expected the shared sample data beside the checkout)")
    return path


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """``../shared/fixtures``; fails (never skips) when absent."""
    return _require(FIXTURES)


@pytest.fixture(scope="session")
def coco_fixture_dir(fixtures_dir: Path) -> Path:
    return _require(fixtures_dir / "coco")


@pytest.fixture(scope="session")
def mpii_fixture_dir(fixtures_dir: Path) -> Path:
    return _require(fixtures_dir / "mpii")


SYNTHPOSE_TRAIN = 400
SYNTHPOSE_VAL = 60


@pytest.fixture(scope="session")
def synthpose_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SynthPose data set generated once per test session (seed 0; 400 train / 60 val images)."""
    from datamodules.synthpose import generate_synthpose

    root = tmp_path_factory.mktemp("synthpose") / "data"
    generate_synthpose(root, num_train=SYNTHPOSE_TRAIN, num_val=SYNTHPOSE_VAL, seed=0, progress=False)
    return root
