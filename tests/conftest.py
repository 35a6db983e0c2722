"""Shared fixtures: the real data in ../shared (skipped with a reason when absent)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
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


@pytest.fixture(scope="session")
def fern_posed(tmp_path_factory):
    """The 20 example fern photos (1008x756) ingested and posed with SfM on 504x378 copies:
    (scene, the poses stage's result, its reporter). Tests must not change the scene."""
    from nerfpipe.progress import RecordingReporter
    from nerfpipe.stages import ingest, poses

    scene = tmp_path_factory.mktemp("fern20")
    ingest.run(ingest.IngestParams(photos=REPO / "examples" / "fern" / "photos", scene=scene, factors=(8,)),
               RecordingReporter())
    rep = RecordingReporter()
    res = poses.run(poses.PosesParams(scene=scene, sfm_size=512, threads=2), rep)
    return scene, res, rep


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


@pytest.fixture(scope="module")
def tiny_lego(lego_dir, tmp_path_factory):
    """8 training and 2 test views of lego at 40x40 (camera_angle_x unchanged, so the focal scales)."""
    scene = tmp_path_factory.mktemp("lego")
    for split, count in (("train", 8), ("test", 2), ("val", 1)):
        meta = json.loads((lego_dir / f"transforms_{split}.json").read_text())
        meta["frames"] = meta["frames"][:count]
        (scene / split).mkdir()
        for frame in meta["frames"]:
            img = cv2.imread(str(lego_dir / (frame["file_path"] + ".png")), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(scene / (frame["file_path"] + ".png")), cv2.resize(img, (40, 40), interpolation=cv2.INTER_AREA))
        (scene / f"transforms_{split}.json").write_text(json.dumps(meta))
    return scene


def published_fern(fern_dir: Path, scene: Path, factor: int, photos: list[Path] | None = None,
                   read_flag: int = cv2.IMREAD_REDUCED_COLOR_8) -> Path:
    """``scene`` in the published LLFF layout: ``images_<factor>/`` PNGs of the fern photos at 4032x3024 /
    factor (read with ``read_flag``, then area-resized) and the authors' poses as poses_bounds.npy.
    ``photos``: default the 20 originals in ../shared (read at 1/8, 504x378)."""
    size = (4032 // factor, 3024 // factor)
    folder = scene / f"images_{factor}"
    folder.mkdir()
    for path in sorted(photos if photos is not None else (fern_dir / "images").glob("*.JPG")):
        img = cv2.imread(str(path), read_flag)
        cv2.imwrite(str(folder / f"{path.stem}.png"), cv2.resize(img, size, interpolation=cv2.INTER_AREA))
    shutil.copy(fern_dir / "poses_bounds.reference.npy", scene / "poses_bounds.npy")
    return scene
