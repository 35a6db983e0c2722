"""The capture report's measurements: sharpness and exposure of a photo, the cameras and points of a sparse model.

- sharpness: variance of the Laplacian (:func:`nerfpipe.frames.sharpness`, the measure ingest uses
  to pick video frames) of a grey copy ``SHARPNESS_LONG_SIDE`` pixels on its long side, so that
  captures of any resolution compare.
- exposure: mean luminance (0 to 1) and the fractions of pixels at most ``DARK_LEVEL`` (black) and at
  least ``BRIGHT_LEVEL`` (blown white) on the same grey copy.
- neighbours: the photos a photo shares at least ``NEIGHBOUR_MIN_INLIERS`` geometrically verified
  matches with (the two-view geometries of ``colmap/database.db``).
- camera positions, viewing directions and 3D points from ``colmap/sparse/0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from nerfpipe import colmap
from nerfpipe import scene as scene_layout
from nerfpipe.errors import NerfpipeError
from nerfpipe.frames import SHARPNESS_LONG_SIDE, sharpness  # photos are measured as ingest measures video frames

MIN_REDUCTION = 2
"""Photos are read from the smallest images folder at least this many times longer than the measuring
copy (decoding less than images/ would). An area reduction by less than 2 blurs like a
half-pixel shift: a 504 px fern photo measures half as sharp as the same photo at 1008 px, while from
1008, 2016 or 4032 px the same photo measures within 25%."""
DARK_LEVEL = 8
"""Grey levels (0-255) at or under this are black: no detail for matching or for the NeRF."""
BRIGHT_LEVEL = 247
"""Grey levels at or over this are blown white (fern's sky: 3 to 5% of each photo)."""
NEIGHBOUR_MIN_INLIERS = 30
"""Two photos are neighbours with at least this many verified matches: COLMAP registers a photo only
with at least 30 inlier correspondences (mapper.abs_pose_min_num_inliers), so fewer hardly help."""


@dataclass(frozen=True)
class PhotoMeasure:
    sharpness: float
    mean_luminance: float
    dark_fraction: float
    bright_fraction: float


def measure(rgb: np.ndarray, mask: np.ndarray | None = None) -> PhotoMeasure:
    """Sharpness and exposure of an (H, W, 3) uint8 RGB image, on a copy SHARPNESS_LONG_SIDE px long.
    ``mask`` (any size, nonzero = object): exposure of the object only (a photo cut out on white is not
    over-exposed for its white background)."""
    h, w = rgb.shape[:2]
    scale = SHARPNESS_LONG_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size != (w, h):
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    exposed = grey.reshape(-1)
    if mask is not None:
        inside = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).reshape(-1) > 0
        if inside.any():
            exposed = exposed[inside]
    return PhotoMeasure(
        sharpness=sharpness(rgb),  # no further resize: the copy already has the measuring size
        mean_luminance=float(exposed.mean()) / 255.0,
        dark_fraction=float(np.mean(exposed <= DARK_LEVEL)),
        bright_fraction=float(np.mean(exposed >= BRIGHT_LEVEL)),
    )


def read_rgb(path: Path) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise NerfpipeError(f"{path} is missing: run `nerfpipe ingest` again.") from None
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise NerfpipeError(f"{path} cannot be read: run `nerfpipe ingest` again.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def measuring_folder(sizes: dict[str, Sequence[int]]) -> str:
    """The smallest images folder at least MIN_REDUCTION x SHARPNESS_LONG_SIDE long (else images/)."""
    fits = [(max(size), folder) for folder, size in sizes.items() if max(size) >= MIN_REDUCTION * SHARPNESS_LONG_SIDE]
    return min(fits)[1] if fits else scene_layout.IMAGES


@dataclass
class Geometry:
    """The registered cameras of the sparse model, by image name."""

    centres: dict[str, np.ndarray]
    forwards: dict[str, np.ndarray]
    ups: dict[str, np.ndarray]
    points_seen: dict[str, int]
    points: np.ndarray
    """(P, 3)."""
    scene_depth: float | None
    """Median over cameras of the median depth of the points each sees."""


def camera_geometry(model: colmap.SparseModel) -> Geometry:
    """Centres, viewing and up directions (COLMAP world), points seen and the scene depth of a model."""
    rot = model.w2c_cv[:, :, :3]  # (N, 3, 3) world -> camera
    t = model.w2c_cv[:, :, 3]
    centres = -np.einsum("nji,nj->ni", rot, t)  # -R^T t
    forwards = rot[:, 2, :]  # camera +z in world
    ups = -rot[:, 1, :]  # camera -y (y points down)
    n = len(model.names)
    seen = np.zeros(n, dtype=np.int64)
    depth = None
    if len(model.points):
        counts = np.array([len(r) for r in model.point_images])
        obs_point = np.repeat(np.arange(len(model.points)), counts)
        obs_cam = np.concatenate(model.point_images)
        seen = np.bincount(obs_cam, minlength=n)
        z = np.einsum("mi,mi->m", model.points[obs_point], rot[obs_cam, 2]) + t[obs_cam, 2]
        medians = [float(np.median(z[obs_cam == i])) for i in range(n) if seen[i]]
        depth = float(np.median(medians)) if medians else None
    return Geometry(
        centres=dict(zip(model.names, centres)),
        forwards=dict(zip(model.names, forwards)),
        ups=dict(zip(model.names, ups)),
        points_seen=dict(zip(model.names, (int(s) for s in seen))),
        points=model.points,
        scene_depth=depth,
    )


def neighbours_of(names: Sequence[str], inliers: dict[tuple[str, str], int],
                  min_inliers: int = NEIGHBOUR_MIN_INLIERS) -> dict[str, list[int]]:
    """{name: sorted 1-based numbers of the photos it shares >= min_inliers verified matches with}."""
    number = {name: i + 1 for i, name in enumerate(names)}
    out: dict[str, set[int]] = {name: set() for name in names}
    for (a, b), n in inliers.items():
        if n >= min_inliers and a in number and b in number:
            out[a].add(number[b])
            out[b].add(number[a])
    return {name: sorted(v) for name, v in out.items()}


def no_geometry() -> Geometry:
    """The geometry of a run that placed no camera."""
    return Geometry(centres={}, forwards={}, ups={}, points_seen={}, points=np.zeros((0, 3)), scene_depth=None)

