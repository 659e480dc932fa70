"""Shared test fixtures: the real sample data in ../shared/fixtures and offline settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

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
