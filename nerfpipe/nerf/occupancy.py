"""The fast model's occupancy grid: which cells of space may hold visible density, so that the field skips the rest.

Every sample is placed on a dense (rays, samples) lattice of ray parameters t
(:meth:`nerfpipe.nerf.fast.FastModel.lattice`); the occupancy grid then marks which of them the
field evaluates. Skipped samples get zero density, so a skipped
sample changes the render only if the field would have given it a visible weight. The grid is
built so that this cannot happen: its cells are the cells of the field's own vertex grid, a cell
is empty only if the density at all 8 of its vertices is below a threshold density, and for a
field whose density is a monotone function of a trilinearly interpolated feature (the VM
encoding is one) no point of such a cell is denser than its densest vertex.
``tests/test_fast.py`` checks that no sample the full evaluation weights is skipped.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


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
    def build(self, vertex_density: Tensor, min_density: float, within: Tensor | None = None) -> float:
        """Mark cells whose largest vertex density exceeds ``min_density``; (rx, ry, rz) in (or any
        monotone increasing function of the density, with ``min_density`` mapped by it: the fast model
        passes the density feature), and, given ``within`` (rx - 1, ry - 1, rz - 1) bool, only cells it
        allows (:meth:`Hull.on_grid`). Returns the occupied fraction.

        A cell's largest vertex exceeds the threshold when any of its 8 vertices does: the vertices
        are thresholded once and the cells OR-ed from them along each axis in turn. On 2 CPU cores,
        the example's final grid (27 M vertices): 0.53 s with a float max-pool, 0.05 s this way
        (the training rebuilds it every 32 steps: 15 ms a step saved)."""
        above = vertex_density > min_density
        above = above[1:] | above[:-1]
        above = above[:, 1:] | above[:, :-1]
        self.cells = (above[:, :, 1:] | above[:, :, :-1]).contiguous()  # a permuted input keeps its strides
        if within is not None:
            self.cells &= within
        return float(self.cells.count_nonzero()) / self.cells.numel()

    @torch.no_grad()
    def fill(self, cells: Tensor) -> float:
        """Mark exactly ``cells`` (cx, cy, cz) bool occupied; returns the occupied fraction."""
        self.cells = cells.clone()
        return float(self.cells.count_nonzero()) / self.cells.numel()

    def query(self, x: Tensor) -> Tensor:
        """(N, 3) points in [-1, 1]^3 -> (N,) bool: True where the field must be evaluated."""
        if self.cells is None:
            return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        return query_cells(self.cells, x)


def query_cells(cells: Tensor, x: Tensor) -> Tensor:
    """(N, 3) points in [-1, 1]^3 -> (N,) bool: the (cx, cy, cz) ``cells`` (spread evenly over [-1, 1]^3)
    that hold them; points outside fall in the nearest border cell."""
    cx, cy, cz = cells.shape
    i = [((x[:, k].detach() + 1.0) * (0.5 * c)).floor_().clamp_(0, c - 1).long() for k, c in enumerate((cx, cy, cz))]
    flat = (i[0] * cy + i[1]) * cz + i[2]
    return cells.reshape(-1)[flat]


def _any_in_ranges(mask: Tensor, dim: int, first: Tensor, last: Tensor) -> Tensor:
    """Along ``dim`` of a bool ``mask``, whether any entry from ``first[i]`` to ``last[i]`` (inclusive)
    is set, for each i: the result has len(first) entries along ``dim``."""
    counts = torch.cumsum(mask.to(torch.int32), dim)
    counts = torch.cat([torch.zeros_like(counts.narrow(dim, 0, 1)), counts], dim)
    return (counts.index_select(dim, last + 1) - counts.index_select(dim, first)) > 0


class Hull(nn.Module):
    """Where the field may hold density at all: the cells of an object's visual hull
    (:func:`nerfpipe.cameras.bounds.visual_hull`), a lattice over its own box in the rays' space.
    Outside it the silhouettes see nothing, so the fast model never samples there, training or
    rendering; its occupancy grids are cut to it (:meth:`on_grid`).

    Both buffers are saved with the model, so a run renders with the hull it trained with. Absent
    (``cells`` empty), it allows everything: the hull of a scene without silhouettes, and of a
    checkpoint saved before hulls were (its missing buffers load as absent)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("cells", torch.zeros(0, 0, 0, dtype=torch.bool))
        self.register_buffer("box", torch.zeros(2, 3))
        self._cache: tuple[tuple, Tensor] | None = None  # (key, cells) of the last on_grid

    @property
    def present(self) -> bool:
        return self.cells.numel() > 0

    def set(self, cells: Tensor, lo: tuple[float, ...], hi: tuple[float, ...]) -> None:
        """cells: (n, n, n) bool over the box lo..hi, indexed x, y, z."""
        self.cells = cells.to(dtype=torch.bool, device=self.cells.device).clone()
        self.box = torch.tensor([lo, hi], dtype=torch.float32, device=self.box.device)
        self._cache = None

    @torch.no_grad()
    def on_grid(self, resolution: tuple[int, int, int], lo: Tensor, hi: Tensor) -> Tensor:
        """(rx - 1, ry - 1, rz - 1) bool: which cells of a vertex grid of ``resolution`` spread over the
        box lo..hi (3,) (``align_corners`` spacing, as :class:`OccupancyGrid`) overlap a kept hull cell.
        Conservative: a cell that shares any volume with a kept hull cell is kept."""
        key = (tuple(resolution), tuple(lo.tolist()), tuple(hi.tolist()), str(self.cells.device))
        if self._cache is None or self._cache[0] != key:
            out = self.cells
            n = torch.tensor(self.cells.shape, dtype=torch.float64)
            h_lo, h_hi = self.box[0].double().cpu(), self.box[1].double().cpu()
            for axis, r in enumerate(resolution):  # the hull cells each grid cell overlaps, axis by axis
                edges = torch.linspace(float(lo[axis]), float(hi[axis]), int(r), dtype=torch.float64)
                at = (edges - h_lo[axis]) / (h_hi[axis] - h_lo[axis]) * n[axis]  # in hull cells
                top = int(n[axis]) - 1
                first = (at[:-1] - 1e-6).floor().clamp(0, top).long()
                last = ((at[1:] + 1e-6).ceil() - 1).clamp(0, top).long()
                out = _any_in_ranges(out, axis, first.to(out.device), last.to(out.device))
            self._cache = (key, out.contiguous())
        return self._cache[1]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # The saved hull replaces this one whatever its shape; a checkpoint without one loads as absent.
        cells, box = state_dict.get(prefix + "cells"), state_dict.get(prefix + "box")
        if cells is None or box is None:
            self.cells = torch.zeros(0, 0, 0, dtype=torch.bool, device=self.cells.device)
        else:
            self.cells = cells.to(dtype=torch.bool, device=self.cells.device).clone()
            self.box = box.to(dtype=torch.float32, device=self.box.device).clone()
        self._cache = None
