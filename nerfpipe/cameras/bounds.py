"""Depth bounds of cameras from the sparse points they see (the ``near``/``far`` of LLFF and transforms.json),
and an object's visual hull and the box around it from its silhouettes (:func:`visual_hull`, :meth:`VisualHull.bounds`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from nerfpipe.cameras.rays import camera_pixels

NEAR_PERCENTILE = 0.1
FAR_PERCENTILE = 99.9
"""Percentiles (in %) of the point depths each camera sees, as LLFF's imgs2poses."""
MIN_VIEWS_FOR_BOUNDS = 3
"""near/far use the points seen by at least this many cameras. imgs2poses uses every point, but SfM on
a downsampled copy triangulates two-view points 4x less precisely, and the 0.1 percentile picks them
out: on fern, near is off by 12% on average with every point and by 3.5% without two-view points."""


def near_far(
    w2c_cv: np.ndarray,
    points: np.ndarray,
    point_images: list[np.ndarray],
    percentiles: tuple[float, float] = (NEAR_PERCENTILE, FAR_PERCENTILE),
    min_views: int = MIN_VIEWS_FOR_BOUNDS,
) -> np.ndarray:
    """Per-camera (near, far): percentiles of the depths of the points each camera sees.

    w2c_cv: (N, 3, 4) COLMAP world-to-camera; points: (P, 3); point_images[p]: the cameras that see
    point p. Depth is the camera-space z (distance along the viewing axis). Only points seen by at
    least ``min_views`` cameras count, unless a camera sees no such point (then all of its points do).
    Returns (N, 2).
    """
    n = w2c_cv.shape[0]
    counts = np.array([len(v) for v in point_images], dtype=np.int64)
    obs_point = np.repeat(np.arange(len(point_images)), counts)
    obs_cam = np.concatenate(point_images) if point_images else np.zeros(0, dtype=np.int64)
    obs_views = counts[obs_point]
    rot_z = w2c_cv[:, 2, :3]  # (N, 3): third row of R
    t_z = w2c_cv[:, 2, 3]  # (N,)
    depth = np.einsum("mi,mi->m", points[obs_point], rot_z[obs_cam]) + t_z[obs_cam]
    out = np.empty((n, 2))
    for i in range(n):
        mine = obs_cam == i
        z = depth[mine & (obs_views >= min_views)]
        if z.size == 0:
            z = depth[mine]
        if z.size == 0:
            raise ValueError(f"camera {i} sees no 3D point")
        out[i] = np.percentile(z, percentiles)
    return out


SILHOUETTE_CELLS = 64
"""Cells per axis of the lattice that :func:`visual_hull` carves (5 cm cells in a 3 m box)."""
SILHOUETTE_PIXELS = 200
"""Silhouettes are carved with at most this many pixels across (coarser is faster, and still holds the object)."""
SILHOUETTE_ALPHA = 0.01
"""A pixel belongs to the object's silhouette when its alpha exceeds this."""


@dataclass(frozen=True)
class VisualHull:
    """Where an object can be, by its silhouettes: the cells of a ``cells``-per-axis lattice over a box
    that every view admits (:func:`visual_hull`)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    """The lattice's box (the box carved, not the box around the hull: see :meth:`bounds`)."""
    cells: torch.Tensor
    """(n, n, n) bool, indexed x, y, z: cell (i, j, k) spans lo + (i, j, k) * size to lo + (i+1, j+1, k+1) * size."""

    def bounds(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The box around the kept cells plus one cell on each side, within the lattice's box; the
        lattice's box when no cell is kept."""
        if not bool(self.cells.any()):
            return tuple(map(float, self.lo)), tuple(map(float, self.hi))
        lo, hi = torch.tensor(self.lo, dtype=torch.float32), torch.tensor(self.hi, dtype=torch.float32)
        cell = (hi - lo) / self.cells.shape[0]
        kept = self.cells.nonzero()  # (K, 3) cell indices
        centres = lo + cell * (kept.float() + 0.5)
        new_lo = torch.maximum(centres.min(0).values - cell, lo)
        new_hi = torch.minimum(centres.max(0).values + cell, hi)
        return tuple(new_lo.tolist()), tuple(new_hi.tolist())


def visual_hull(
    alpha: torch.Tensor,
    c2w_gl: torch.Tensor,
    focal: float,
    box: tuple[tuple[float, float, float], tuple[float, float, float]],
    cells: int = SILHOUETTE_CELLS,
) -> VisualHull:
    """An object's visual hull: the cells of a lattice over ``box`` that every view's silhouette admits.

    alpha: (N, H, W) opacity of each training view; c2w_gl: (N, 3, 4) OpenGL camera-to-world; focal
    in pixels of these images. A lattice of ``cells``^3 cells over ``box`` is carved view by view: a
    cell goes when its centre projects into a view's image, in front of the camera, further than the
    cell's own projected half-diagonal from every pixel of the silhouette (alpha above
    :data:`SILHOUETTE_ALPHA`). That keeps every cell that holds a piece of the object, however thin;
    views that do not see a cell do not carve it."""
    lo = torch.tensor(box[0], dtype=torch.float32)
    hi = torch.tensor(box[1], dtype=torch.float32)
    cell = (hi - lo) / cells
    axes = [lo[i] + cell[i] * (torch.arange(cells, dtype=torch.float32) + 0.5) for i in range(3)]
    centres = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)  # (cells^3, 3)
    index = torch.arange(centres.shape[0])  # of the cells still kept, in the flattened lattice
    half_diagonal = float(cell.norm()) / 2.0
    height, width = alpha.shape[1:]
    # Silhouettes at most SILHOUETTE_PIXELS wide: a coarse pixel is in when any of its pixels is.
    shrink = max(1, math.ceil(max(height, width) / SILHOUETTE_PIXELS))
    inside = (alpha > SILHOUETTE_ALPHA).float()[:, None]  # (N, 1, H, W)
    inside = torch.nn.functional.max_pool2d(inside, shrink, stride=shrink, ceil_mode=True)
    for a, pose in zip(inside, c2w_gl.float()):  # carve the cells still kept (a few views leave a fraction)
        rot, origin = pose[:, :3], pose[:, 3]
        x, y, depth = camera_pixels((centres - origin) @ rot, height, width, focal)  # R^T (p - o): camera axes
        front = depth > 1e-6
        if not bool(front.any()):
            continue
        radius = math.ceil(half_diagonal * focal / float(depth[front].min()) / shrink)  # in coarse pixels
        radius = min(radius, a.shape[-1])
        for kernel in ((2 * radius + 1, 1), (1, 2 * radius + 1)):  # a square dilation in two passes
            a = torch.nn.functional.max_pool2d(a, kernel, stride=1, padding=(kernel[0] // 2, kernel[1] // 2))
        admitted = a[0] > 0
        seen = front & (x >= 0) & (x < width) & (y >= 0) & (y < height)
        keep = ~seen
        keep[seen] = admitted[y[seen].long() // shrink, x[seen].long() // shrink]
        centres, index = centres[keep], index[keep]
    kept = torch.zeros(cells**3, dtype=torch.bool)
    kept[index] = True
    return VisualHull(tuple(map(float, box[0])), tuple(map(float, box[1])), kept.view(cells, cells, cells))

