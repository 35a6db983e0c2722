"""Rays from pinhole cameras, and the NDC warp for forward-facing scenes.

Pixel convention: the reference code shoots the ray of pixel (i, j) through image-plane point
``((i - W/2) / f, -(j - H/2) / f, -1)`` in OpenGL camera axes, i.e. through the pixel's top-left
corner rather than its centre. :data:`PIXEL_OFFSET` = 0.0 keeps that convention so that models
trained here match the reference; 0.5 would shoot through pixel centres.
"""

from __future__ import annotations

import torch
from torch import Tensor

PIXEL_OFFSET = 0.0
"""Added to integer pixel indices before projecting (0.0: the reference code's convention)."""
NDC_NEAR = 1.0
"""Depth of the NDC near plane in the normalised world (the reference code's ``near=1.``)."""


def camera_directions(x: Tensor, y: Tensor, height: int, width: int, focal: float, offset: float = PIXEL_OFFSET) -> Tensor:
    """Pixel indices x (column), y (row), same shape (*batch) -> (*batch, 3) directions in OpenGL camera axes (z = -1)."""
    return torch.stack(
        [(x + offset - width * 0.5) / focal, -(y + offset - height * 0.5) / focal, -torch.ones_like(x)], dim=-1
    )


def camera_pixels(points_cam: Tensor, height: int, width: int, focal: float,
                  offset: float = PIXEL_OFFSET) -> tuple[Tensor, Tensor, Tensor]:
    """(*batch, 3) points in OpenGL camera axes -> pixel x (column), y (row) and depth -z (*batch): the
    inverse of :func:`camera_directions` (the ray of pixel (x, y) reaches the point at t = depth)."""
    depth = -points_cam[..., 2]
    x = points_cam[..., 0] / depth * focal + width * 0.5 - offset
    y = -points_cam[..., 1] / depth * focal + height * 0.5 - offset
    return x, y, depth


def world_rays(dirs_cam: Tensor, c2w_gl: Tensor) -> tuple[Tensor, Tensor]:
    """dirs_cam (*batch, 3), c2w_gl (3, 4) or (*batch, 3, 4) -> origins, directions (*batch, 3); directions not normalised."""
    if c2w_gl.dim() == 2:
        directions = dirs_cam @ c2w_gl[:3, :3].T
        origins = c2w_gl[:3, 3].expand_as(directions)
    else:
        directions = torch.einsum("...ij,...j->...i", c2w_gl[..., :3, :3], dirs_cam)
        origins = c2w_gl[..., :3, 3].expand_as(directions)
    return origins, directions


def get_rays(height: int, width: int, focal: float, c2w_gl: Tensor, offset: float = PIXEL_OFFSET) -> tuple[Tensor, Tensor]:
    """Every pixel's ray: c2w_gl (3, 4) -> origins, directions (H, W, 3)."""
    y, x = torch.meshgrid(
        torch.arange(height, dtype=c2w_gl.dtype, device=c2w_gl.device),
        torch.arange(width, dtype=c2w_gl.dtype, device=c2w_gl.device),
        indexing="ij",
    )
    return world_rays(camera_directions(x, y, height, width, focal, offset), c2w_gl)


def ndc_rays(height: int, width: int, focal: float, near: float, origins: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
    """World rays (*batch, 3) of a forward-facing capture (cameras looking down -z) -> NDC rays (*batch, 3).

    Paper appendix C: origins are first moved along the ray onto the plane z = -near, then
    ``o' = (-f/(W/2) o_x/o_z, -f/(H/2) o_y/o_z, 1 + 2 near/o_z)`` and
    ``d' = (-f/(W/2) (d_x/d_z - o_x/o_z), -f/(H/2) (d_y/d_z - o_y/o_z), -2 near/o_z)``, so that
    t in [0, 1] along (o', d') spans depth near .. infinity.
    """
    t = -(near + origins[..., 2]) / directions[..., 2]
    origins = origins + t[..., None] * directions
    ox_oz = origins[..., 0] / origins[..., 2]
    oy_oz = origins[..., 1] / origins[..., 2]
    sx = -1.0 / (width / (2.0 * focal))
    sy = -1.0 / (height / (2.0 * focal))
    o = torch.stack([sx * ox_oz, sy * oy_oz, 1.0 + 2.0 * near / origins[..., 2]], dim=-1)
    d = torch.stack(
        [
            sx * (directions[..., 0] / directions[..., 2] - ox_oz),
            sy * (directions[..., 1] / directions[..., 2] - oy_oz),
            -2.0 * near / origins[..., 2],
        ],
        dim=-1,
    )
    return o, d


def ndc_point(height: int, width: int, focal: float, near: float, points: Tensor) -> Tensor:
    """(*batch, 3) world points in front of the cameras (z < 0) -> (*batch, 3) NDC points: the map of
    :func:`ndc_rays`, ``(-f/(W/2) x/z, -f/(H/2) y/z, 1 + 2 near/z)``."""
    x, y, z = points.unbind(-1)
    return torch.stack([-2.0 * focal / width * x / z, -2.0 * focal / height * y / z, 1.0 + 2.0 * near / z], dim=-1)


def world_point(height: int, width: int, focal: float, near: float, points: Tensor) -> Tensor:
    """(*batch, 3) NDC points with z < 1 -> (*batch, 3) world points: the inverse of :func:`ndc_point`
    (a depth or a mesh vertex found in NDC back in the normalised world)."""
    xn, yn, zn = points.unbind(-1)
    z = 2.0 * near / (zn - 1.0)
    return torch.stack([-xn * z * width / (2.0 * focal), -yn * z * height / (2.0 * focal), z], dim=-1)
