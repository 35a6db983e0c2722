"""Normalising LLFF camera poses the way the NeRF reference code does, with every transform recorded.

All poses here are OpenGL camera-to-world matrices ``c2w_gl`` (N, 3, 4): columns right, up,
backwards, centre (see :mod:`nerfpipe.cameras.conventions` for the conversion from LLFF).

The reference loader applies, in order:

1. **bd_factor rescale** -- scale the world so that the nearest bound becomes ``1 / bd_factor``
   (``scale = 1 / (min(bounds) * bd_factor)``, bd_factor 0.75), so the NDC near plane at z = -1
   lies in front of every camera;
2. **recenter** -- express everything in the frame of the average camera (:func:`average_pose`);
3. optionally **spherify** -- for 360-degree captures: move the origin to the point closest to every
   optical axis, turn the mean camera offset into +z and scale so the cameras lie at radius 1 on
   average.

Each step returns a :class:`Normalization` step (4x4 matrix and scale) so that a later stage can
map any new camera, or undo the normalisation: ``x_norm = scale * (M @ x_world)`` per step, applied
in order (:func:`apply_to_poses`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BD_FACTOR = 0.75
"""The reference code's margin: the nearest bound lands at 1 / 0.75 after rescaling."""
SPHERIFY_UP_HINT = np.array([0.1, 0.2, 0.3])
"""Any vector not parallel to the mean camera offset; the reference code's choice (it fixes the azimuth)."""


@dataclass(frozen=True)
class Normalization:
    """One step ``x -> scale * (matrix @ [x, 1])[:3]``, matrix (4, 4) rigid."""

    name: str
    matrix: np.ndarray
    scale: float

    def to_dict(self) -> dict:
        return {"name": self.name, "matrix": np.asarray(self.matrix).tolist(), "scale": float(self.scale)}

    @staticmethod
    def from_dict(d: dict) -> "Normalization":
        return Normalization(d["name"], np.asarray(d["matrix"], dtype=np.float64), float(d["scale"]))


def normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def look_at(z_axis: np.ndarray, up: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """A camera-to-world (3, 4) with backwards axis ``z_axis``, up roughly ``up``, at ``centre``."""
    z = normalize(z_axis)
    x = normalize(np.cross(up, z))
    y = normalize(np.cross(z, x))
    return np.stack([x, y, z, centre], axis=1)


def to_4x4(c2w: np.ndarray) -> np.ndarray:
    """(..., 3, 4) -> (..., 4, 4) with a [0, 0, 0, 1] bottom row."""
    c2w = np.asarray(c2w)
    bottom = np.broadcast_to(np.array([0.0, 0.0, 0.0, 1.0]), c2w.shape[:-2] + (1, 4))
    return np.concatenate([c2w[..., :3, :4], bottom], axis=-2)


def average_pose(c2w_gl: np.ndarray) -> np.ndarray:
    """(N, 3, 4) -> (3, 4): mean centre, summed backwards axes, summed up axes (the reference's ``poses_avg``)."""
    centre = c2w_gl[:, :3, 3].mean(axis=0)
    z = c2w_gl[:, :3, 2].sum(axis=0)
    up = c2w_gl[:, :3, 1].sum(axis=0)
    return look_at(z, up, centre)


def apply_to_poses(c2w_gl: np.ndarray, step: Normalization) -> np.ndarray:
    """(N, 3, 4) poses -> (N, 3, 4) in the step's frame: rotation by M, centre by scale * M."""
    out = (step.matrix @ to_4x4(c2w_gl))[:, :3, :4].copy()
    out[:, :3, 3] *= step.scale
    return out


def apply_to_points(points: np.ndarray, step: Normalization) -> np.ndarray:
    """(..., 3) world points -> (..., 3) normalised points."""
    return step.scale * (points @ step.matrix[:3, :3].T + step.matrix[:3, 3])


def undo_on_points(points: np.ndarray, steps: list[Normalization]) -> np.ndarray:
    """(..., 3) normalised points -> (..., 3) points of the input world: the inverse of applying
    :func:`apply_to_points` for each of ``steps`` in order."""
    points = np.asarray(points, dtype=np.float64)
    for step in reversed(steps):
        rot, shift = step.matrix[:3, :3], step.matrix[:3, 3]
        points = (points / step.scale - shift) @ rot  # rot is orthonormal: its inverse is its transpose
    return points


def rescale_step(bounds: np.ndarray, bd_factor: float = BD_FACTOR) -> Normalization:
    """Scale the world so that min(bounds) becomes 1 / bd_factor."""
    return Normalization("rescale", np.eye(4), float(1.0 / (bounds.min() * bd_factor)))


def recenter_step(c2w_gl: np.ndarray) -> Normalization:
    """Move the world into the frame of :func:`average_pose` (no scaling)."""
    return Normalization("recenter", np.linalg.inv(to_4x4(average_pose(c2w_gl))), 1.0)


def closest_point_to_axes(origins: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """origins, axes (N, 3) unit -> (3,) point minimising the summed squared distance to the N lines."""
    proj = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]  # (N, 3, 3) projectors off each axis
    lhs = (np.transpose(proj, (0, 2, 1)) @ proj).mean(axis=0)
    rhs = (proj @ origins[:, :, None]).mean(axis=0)
    return np.linalg.solve(lhs, rhs)[:, 0]


ESTIMATED_NEAR_FRACTION = 0.5
"""Without SfM points, near = this fraction of each camera's depth to the point the cameras look at.
fern's reference bounds (from its points) are 0.53-0.59 of that depth for near and 2.0-2.5 for far."""
ESTIMATED_FAR_MULTIPLE = 2.5
"""... and far = this multiple of it (see ESTIMATED_NEAR_FRACTION)."""
FALLBACK_DEPTH_IN_SPREADS = 10.0
"""When the optical axes meet nowhere in front of every camera (parallel or diverging axes), the
depth is this many camera spreads (RMS distance of the centres from their mean; fern: 10)."""
MAX_DEPTH_IN_SPREADS = 100.0
"""Nearly parallel axes "meet" very far away; a depth beyond this many spreads is taken as parallel."""


def estimate_bounds(c2w_gl: np.ndarray) -> np.ndarray:
    """(N, 3, 4) cameras without any scene points -> (N, 2) near, far per camera.

    Each camera's depth to :func:`closest_point_to_axes` (the point the cameras look at), times
    ESTIMATED_NEAR_FRACTION and ESTIMATED_FAR_MULTIPLE. Bounds only set the world scale (bd_factor)
    and the ray range, so a rough guess that scales with the world (a similarity of the cameras gives
    the same normalised scene) is what is needed.
    """
    c2w_gl = np.asarray(c2w_gl, dtype=np.float64)[:, :3, :4]
    centres, backward = c2w_gl[:, :, 3], c2w_gl[:, :, 2] / np.linalg.norm(c2w_gl[:, :, 2], axis=1, keepdims=True)
    depth = np.full(len(centres), np.nan)
    if len(centres) >= 2:
        try:
            with np.errstate(all="ignore"):
                target = closest_point_to_axes(centres, backward)
                depth = np.einsum("ni,ni->n", target - centres, -backward)
        except np.linalg.LinAlgError:
            pass
    spread = float(np.sqrt(((centres - centres.mean(0)) ** 2).sum(1).mean()))
    if not np.all(np.isfinite(depth) & (depth > 0) & (depth <= MAX_DEPTH_IN_SPREADS * spread)):
        depth = np.full(len(centres), FALLBACK_DEPTH_IN_SPREADS * spread if spread > 0 else 1.0)
    return np.stack([ESTIMATED_NEAR_FRACTION * depth, ESTIMATED_FAR_MULTIPLE * depth], axis=1)


def spherify_step(c2w_gl: np.ndarray) -> Normalization:
    """The reference's ``spherify_poses`` as one step: origin at the point closest to every optical
    axis, +z along the mean camera offset, scale so the mean squared camera radius is 1."""
    centre = closest_point_to_axes(c2w_gl[:, :3, 3], c2w_gl[:, :3, 2])
    up = normalize((c2w_gl[:, :3, 3] - centre).mean(axis=0))
    x = normalize(np.cross(SPHERIFY_UP_HINT, up))
    y = normalize(np.cross(up, x))
    frame = np.stack([x, y, up, centre], axis=1)  # (3, 4) c2w of the new frame
    matrix = np.linalg.inv(to_4x4(frame))
    moved = apply_to_poses(c2w_gl, Normalization("spherify", matrix, 1.0))
    radius = np.sqrt(np.mean(np.sum(moved[:, :3, 3] ** 2, axis=-1)))
    return Normalization("spherify", matrix, float(1.0 / radius))


def normalize_llff(
    c2w_gl: np.ndarray, bounds: np.ndarray, *, bd_factor: float | None = BD_FACTOR, recenter: bool = True,
    spherify: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[Normalization]]:
    """The reference loader's normalisation. c2w_gl (N, 3, 4), bounds (N, 2) ->
    (normalised c2w_gl (N, 3, 4), scaled bounds (N, 2), the steps applied in order)."""
    poses, bounds = c2w_gl.astype(np.float64), bounds.astype(np.float64)
    steps: list[Normalization] = []
    if bd_factor is not None:
        steps.append(rescale_step(bounds, bd_factor))
        poses, bounds = apply_to_poses(poses, steps[-1]), bounds * steps[-1].scale
    if recenter:
        steps.append(recenter_step(poses))
        poses = apply_to_poses(poses, steps[-1])
    if spherify:
        steps.append(spherify_step(poses))
        poses, bounds = apply_to_poses(poses, steps[-1]), bounds * steps[-1].scale
    return poses, bounds, steps
