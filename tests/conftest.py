"""Shared fixtures: the real data in ../shared (skipped with a reason when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

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


TINY_NERF = ("nerf.netdepth=4", "nerf.netwidth=32", "nerf.netdepth_fine=4", "nerf.netwidth_fine=32", "nerf.skips=[1]",
             "nerf.n_samples=16", "nerf.n_importance=16", "training.batch_rays=256")
"""Recipe overrides for a paper-shaped NeRF small enough to train in seconds (import from conftest)."""


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors gain nothing from a second thread, and OpenMP threads spin badly on a shared 2-core
    machine. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
