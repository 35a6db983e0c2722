"""Where the fast model puts its samples: ray intervals per scene kind, scene contraction, and an
occupancy grid that lets the field skip empty space.

Every sample is placed on a dense (rays, samples) lattice of ray parameters t; the occupancy grid
then marks which of them the field evaluates. Skipped samples get zero density, so a skipped
sample changes the render only if the field would have given it a visible weight. The grid is
built so that this cannot happen: its cells are the cells of the field's own vertex grid, a cell
is empty only if the density at all 8 of its vertices is below a threshold density, and for a
field whose density is a monotone function of a trilinearly interpolated feature (the VM
encoding is one) no point of such a cell is denser than its densest vertex.
``tests/test_fast.py`` checks that no sample the full evaluation weights is skipped.

Field coordinates are normalised to [-1, 1]^3 over the scene box: NDC and bounded scenes map
their axis-aligned box linearly; unbounded scenes first contract space (mip-NeRF 360: points
beyond the unit ball of the box-normalised space fold into radius 2), then divide by 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def stratified_t(near: Tensor, far: Tensor, n: int, perturb: bool, generator: torch.Generator | None = None) -> Tensor:
    """n sample parameters per ray, evenly spaced in [near, far] (bin centres; uniformly jittered
    within their bins when ``perturb``). near, far: (rays, 1) -> (rays, n)."""
    u = (torch.arange(n, device=near.device, dtype=near.dtype) + 0.5) / n
    u = u.expand(near.shape[0], n)
    if perturb:
        jitter = torch.rand(near.shape[0], n, device=near.device, dtype=near.dtype, generator=generator) - 0.5
        u = u + jitter / n
    return near + (far - near) * u


def disparity_t(near: Tensor, far: Tensor, n: int, perturb: bool, generator: torch.Generator | None = None) -> Tensor:
    """Like :func:`stratified_t` but evenly spaced in 1/t (for unbounded scenes): (rays, 1) -> (rays, n)."""
    s = stratified_t(torch.zeros_like(near), torch.ones_like(far), n, perturb, generator)
    return 1.0 / (s / far + (1.0 - s) / near)


def intervals(t: Tensor, near: Tensor, far: Tensor) -> Tensor:
    """Length of the ray segment each sample stands for: midpoints between neighbours, clipped to
    [near, far]. t: (rays, n) sorted; near, far: (rays, 1) -> (rays, n)."""
    mid = 0.5 * (t[:, 1:] + t[:, :-1])
    edges = torch.cat([near, mid, far], -1)
    return (edges[:, 1:] - edges[:, :-1]).clamp_min(0.0)


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


class OccupancyGrid(nn.Module):
    """Which cells of a vertex grid over [-1, 1]^3 may hold visible density.

    Cell (i, j, k) spans vertices i..i+1, j..j+1, k..k+1 of a (rx, ry, rz) vertex grid
    (``align_corners`` spacing, like the field's grids). Built from the density at every vertex:
    when the field's density is a monotone function of a trilinearly interpolated feature (as for
    :class:`~nerfpipe.nerf.grid.VMEncoding`), the largest of a cell's 8 vertex densities bounds
    the density anywhere in the cell, so a cell marked empty holds no density above the threshold.

    ``cells`` is a non-persistent buffer (derived from the parameters, never saved); None until
    the first :meth:`build` means "everything occupied".
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("cells", None, persistent=False)

    @property
    def built(self) -> bool:
        return self.cells is not None

    @torch.no_grad()
    def build(self, vertex_density: Tensor, min_density: float) -> float:
        """Mark cells whose largest vertex density exceeds ``min_density``; (rx, ry, rz) in.
        Returns the occupied fraction."""
        cell_max = F.max_pool3d(vertex_density[None, None], kernel_size=2, stride=1)[0, 0]
        self.cells = cell_max > min_density
        return float(self.cells.float().mean())

    def query(self, x: Tensor) -> Tensor:
        """(N, 3) points in [-1, 1]^3 -> (N,) bool: True where the field must be evaluated."""
        if self.cells is None:
            return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        cx, cy, cz = self.cells.shape
        i = [((x[:, k].detach() + 1.0) * (0.5 * c)).floor_().clamp_(0, c - 1).long() for k, c in enumerate((cx, cy, cz))]
        flat = (i[0] * cy + i[1]) * cz + i[2]
        return self.cells.reshape(-1)[flat]
