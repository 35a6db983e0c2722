"""Shared fixtures: the real data in ../shared (skipped with a reason when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test saying what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: this test needs the shared real data beside the repo (../shared/data)")
    return path


@pytest.fixture(scope="session")
def fern_dir() -> Path:
    """../shared/data/fern: 20 iPhone X photos (images/) and poses_bounds.reference.npy."""
    return shared_path("fern")


@pytest.fixture(scope="session")
def lego_dir() -> Path:
    return shared_path("lego")


@pytest.fixture(scope="session")
def fox_dir() -> Path:
    return shared_path("fox")
