"""Geometry read out of a trained field: a mesh by marching cubes over its density, and points from its rendered depth.

Both work in the rays' space of the model (the normalised world, or NDC for a forward-facing scene);
the caller maps the results to the input world (:func:`nerfpipe.cameras.rays.world_point`,
:func:`nerfpipe.cameras.normalize.undo_on_points`).

- :func:`density_grid` evaluates :meth:`Model.field_at` on a regular lattice over a box, one slab of
  the lattice at a time (memory stays at one slab's points).
- :func:`points_level` puts the surface at :data:`POINTS_LEVEL` of the field's median density at
  the SfM points (they lie on surfaces; the densest lattice point within one cell of each is taken,
  the field's surface need not pass through the point exactly). Without points (a Blender scene),
  :func:`surface_level`: where the field is :data:`MESH_OPACITY` opaque over 1/:data:`MESH_SCALE` of
  the box's mean edge. One fixed level does not fit all fields, measured after 4 CPU minutes: the
  head on white is a solid head at a quarter of that level and a few scraps at it, the fox a surface
  at it and floaters filling the view at a quarter of it; the points' level lands at 0.26 and 0.77 of
  it there (fern 0.67), and both look right.
- :func:`extract_mesh` runs scikit-image's marching cubes (Lewiner) at that level and colours each vertex with the field's colour seen from the
  direction the caller gives (the nearest training camera's).
- :func:`depth_points` keeps the rays of a rendered view whose opacity is at least
  :data:`POINT_OPACITY` and places a point at the depth of what they hit (depth / opacity).

What a NeRF mesh is good for: a shape to look at, measure roughly or start a clean-up from. Thin or
shiny parts, glass and the sky have no clear density level, and a forward-facing scene gives only the
side the photos saw.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from nerfpipe.nerf.chunking import model_device
from nerfpipe.nerf.interface import Model, RayBundle, RenderOutput

MESH_OPACITY = 0.5
"""The surface: where the field is this opaque over ..."""
MESH_SCALE = 64
"""... 1/MESH_SCALE of the box's mean edge (one lattice cell of 256 was far too strict: the fields spread
a surface over several cells)."""
POINTS_LEVEL = 0.5
"""The surface's density: this fraction of the field's median density at the SfM points."""
POINT_OPACITY = 0.9
"""A rendered ray gives a point when it is at least this opaque (it hit something)."""
POINTS_PER_CHUNK = 1 << 18
"""Lattice points per call of the field."""


@dataclass
class Mesh:
    vertices: np.ndarray
    """(V, 3) float64, in the space of the box it was extracted in"""
    faces: np.ndarray
    """(F, 3) int32 vertex indices, counter-clockwise seen from outside (from low density)"""
    colors: np.ndarray
    """(V, 3) uint8"""


def lattice_axes(lo, hi, resolution: int) -> list[np.ndarray]:
    """Three axes of ``resolution`` points each from ``lo`` to ``hi`` (both included)."""
    return [np.linspace(float(a), float(b), resolution) for a, b in zip(lo, hi)]


@torch.no_grad()
def density_grid(model: Model, lo, hi, resolution: int, on_slab: Callable[[int], None] | None = None) -> np.ndarray:
    """(R, R, R) float32 density at the lattice points, indexed [x, y, z]; ``on_slab(1)`` after each x-slab."""
    device = model_device(model)
    xs, ys, zs = (torch.from_numpy(a).float() for a in lattice_axes(lo, hi, resolution))
    yy, zz = torch.meshgrid(ys, zs, indexing="ij")
    plane = torch.stack([yy.reshape(-1), zz.reshape(-1)], -1)  # (R*R, 2)
    out = np.empty((resolution, resolution, resolution), dtype=np.float32)
    look = torch.tensor([[0.0, 0.0, -1.0]], device=device)  # density does not depend on the direction
    for i, x in enumerate(xs):
        pts = torch.cat([torch.full((len(plane), 1), float(x)), plane], -1).to(device)
        sigma = [model.field_at(chunk, look.expand(len(chunk), 3))[0] for chunk in pts.split(POINTS_PER_CHUNK)]
        out[i] = torch.cat(sigma).view(resolution, resolution).float().cpu().numpy()
        if on_slab is not None:
            on_slab(1)
    return out


def surface_level(lo, hi) -> float:
    """The density of the surface in the box (lo, hi); see :data:`MESH_SCALE`."""
    edge = float(np.mean([b - a for a, b in zip(lo, hi)]))
    return -math.log1p(-MESH_OPACITY) * MESH_SCALE / edge


def points_level(grid: np.ndarray, lo, hi, points: np.ndarray) -> float | None:
    """:data:`POINTS_LEVEL` x the median, over the (P, 3) points inside the box, of the densest lattice
    point within one cell; None when no point lies inside."""
    from scipy.ndimage import maximum_filter

    res = np.array(grid.shape)
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    idx = np.round((np.asarray(points, dtype=np.float64) - lo) / (hi - lo) * (res - 1)).astype(np.int64)
    idx = idx[((idx >= 0) & (idx < res)).all(1)]
    if len(idx) == 0:
        return None
    return POINTS_LEVEL * float(np.median(maximum_filter(grid, size=3)[tuple(idx.T)]))


@torch.no_grad()
def extract_mesh(model: Model, grid: np.ndarray, lo, hi, level: float,
                 view_from: Callable[[np.ndarray], np.ndarray]) -> Mesh | None:
    """The surface at ``level`` of the density ``grid`` (:func:`density_grid` over the box (lo, hi)), or
    None when the density never reaches it. ``view_from`` (V, 3) vertices -> (V, 3) unit world
    directions to colour them from."""
    from skimage.measure import marching_cubes

    if not (grid.min() < level < grid.max()):
        return None
    spacing = tuple((float(b) - float(a)) / (n - 1) for a, b, n in zip(lo, hi, grid.shape))
    verts, faces, _normals, _ = marching_cubes(grid, level=level, spacing=spacing, gradient_direction="ascent")
    verts = verts.astype(np.float64) + np.asarray(lo, dtype=np.float64)
    device = model_device(model)
    dirs = torch.from_numpy(np.asarray(view_from(verts), dtype=np.float32))
    pts = torch.from_numpy(verts.astype(np.float32))
    colors = [model.field_at(p.to(device), d.to(device))[1].cpu()
              for p, d in zip(pts.split(POINTS_PER_CHUNK), dirs.split(POINTS_PER_CHUNK))]
    rgb = (torch.cat(colors).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    return Mesh(verts, faces.astype(np.int32), rgb)


def depth_points(rays: RayBundle, out: RenderOutput, min_opacity: float = POINT_OPACITY) -> tuple[Tensor, Tensor]:
    """(P, 3) points in the rays' space where rendered rays hit something, and the (P,) indices of those rays."""
    keep = (out.acc >= min_opacity).nonzero().squeeze(-1)
    t = (out.depth[keep] / out.acc[keep])[:, None]
    return rays.origins[keep] + t * rays.directions[keep], keep
