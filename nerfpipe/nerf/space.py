"""The fast model's space: where rays enter and leave the scene box, and the contraction of unbounded space.

Field coordinates are normalised to [-1, 1]^3 over the scene box: NDC and bounded scenes map
their axis-aligned box linearly; unbounded scenes first contract space (mip-NeRF 360: points
beyond the unit ball of the box-normalised space fold into radius 2), then divide by 2.
"""

from __future__ import annotations

import torch
from torch import Tensor


def box_intersect(origins: Tensor, directions: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """Entry and exit ray parameters of an axis-aligned box (slab method).

    origins, directions: (rays, 3); lo, hi: (3,). Returns t_in, t_out: (rays, 1); t_in >= t_out
    where the ray misses the box.
    """
    safe = torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    t0 = (lo - origins) / safe
    t1 = (hi - origins) / safe
    t_in = torch.minimum(t0, t1).amax(-1, keepdim=True)
    t_out = torch.maximum(t0, t1).amin(-1, keepdim=True)
    return t_in, t_out


def contract(x: Tensor) -> Tensor:
    """mip-NeRF 360 contraction (L2 norm): identity inside the unit ball, ``(2 - 1/|x|) x/|x|``
    outside; (..., 3) -> (..., 3) with norm < 2."""
    norm = x.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    return torch.where(norm <= 1.0, x, (2.0 - 1.0 / norm) * x / norm)
