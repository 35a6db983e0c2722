"""Where along each ray to evaluate the field, for both models: stratified, bin-centre and hierarchical (inverse-CDF) samples.

Each takes the rays' per-ray ``near``/``far`` and returns sample distances ``z`` (rays, samples),
sorted along each ray, spaced evenly in depth or in disparity (:func:`along`). The paper's model
uses :func:`stratified` (end points included, the reference code's placement) and
:func:`sample_pdf`; the fast model :func:`bin_fractions` placed by :func:`along` or :func:`piecewise`,
and :func:`intervals` (the segment each sample stands for). Randomness comes from the torch generator passed in (global RNG if None).
"""

from __future__ import annotations

import torch
from torch import Tensor

PDF_WEIGHT_FLOOR = 1e-5
"""Added to every coarse weight before normalising, so that empty rays still sample their whole extent."""
CDF_STEP_FLOOR = 1e-5
"""CDF steps smaller than this are treated as 1 when inverting (avoids dividing by zero on flat parts)."""


def along(near: Tensor, far: Tensor, s: Tensor, lindisp: bool) -> Tensor:
    """Fractions s in [0, 1] (rays, n) or (n,) of the way from near to far (rays, 1), evenly in depth or,
    with ``lindisp``, evenly in disparity 1/z -> z (rays, n)."""
    if lindisp:
        return 1.0 / (s / far + (1.0 - s) / near)
    return near + (far - near) * s


def stratified(
    near: Tensor,
    far: Tensor,
    n_samples: int,
    *,
    perturb: bool,
    lindisp: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """near, far (rays, 1) -> z (rays, n_samples).

    Evenly spaced in depth (or in disparity when ``lindisp``), from near to far inclusive; with
    ``perturb`` each sample moves uniformly within its bin, bounded by the midpoints to its neighbours.
    """
    z = along(near, far, torch.linspace(0.0, 1.0, n_samples, device=near.device, dtype=near.dtype), lindisp)
    if perturb:
        mids = 0.5 * (z[:, 1:] + z[:, :-1])
        upper = torch.cat([mids, z[:, -1:]], dim=-1)
        lower = torch.cat([z[:, :1], mids], dim=-1)
        u = torch.rand(z.shape, device=z.device, dtype=z.dtype, generator=generator)
        z = lower + (upper - lower) * u
    return z


def piecewise(near: Tensor, far: Tensor, s: Tensor, split: float) -> Tensor:
    """Fractions s (rays, n) -> z (rays, n): the first half evenly in depth from near to ``split``, the
    second half evenly in disparity from ``split`` to far (nerfacto's uniform-then-lindisp sampler: dense
    where the cameras look, sparse far away); rays that end before ``split`` are even in depth throughout,
    rays that start beyond it even in disparity throughout."""
    split_t = torch.clamp(torch.full_like(near, split), min=near, max=far)
    inner = near + (split_t - near) * (2.0 * s)
    outer = 1.0 / ((2.0 * s - 1.0) / far + (2.0 - 2.0 * s) / split_t)
    z = torch.where(s < 0.5, inner, outer)
    z = torch.where(split_t <= near, along(near, far, s, True), z)
    return torch.where(split_t >= far, along(near, far, s, False), z)


def bin_fractions(near: Tensor, n: int, *, perturb: bool, generator: torch.Generator | None = None) -> Tensor:
    """(rays, n) fractions in (0, 1): the centres of n equal bins, each moved uniformly within its bin when
    ``perturb``; rays, device and dtype from ``near`` (rays, 1)."""
    s = (torch.arange(n, device=near.device, dtype=near.dtype) + 0.5) / n
    s = s.expand(near.shape[0], n)
    if perturb:
        s = s + (torch.rand(near.shape[0], n, device=near.device, dtype=near.dtype, generator=generator) - 0.5) / n
    return s


def intervals(t: Tensor, near: Tensor, far: Tensor) -> Tensor:
    """Length of the ray segment each sample stands for: midpoints between neighbours, clipped to
    [near, far]. t: (rays, n) sorted; near, far: (rays, 1) -> (rays, n)."""
    mid = 0.5 * (t[:, 1:] + t[:, :-1])
    edges = torch.cat([near, mid, far], -1)
    return (edges[:, 1:] - edges[:, :-1]).clamp_min(0.0)


def sample_pdf(
    bins: Tensor,
    weights: Tensor,
    n_samples: int,
    *,
    deterministic: bool,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Inverse-transform sampling of the piecewise-constant PDF given by ``weights`` over ``bins``.

    bins (rays, B + 1) bin edges, weights (rays, B) -> samples (rays, n_samples), not sorted when
    random. ``deterministic`` uses evenly spaced CDF values in [0, 1] instead of uniform random ones.
    """
    weights = weights + PDF_WEIGHT_FLOOR
    pdf = weights / weights.sum(dim=-1, keepdim=True)
    cdf = torch.cumsum(pdf, dim=-1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], dim=-1)  # (rays, B + 1)
    rays = bins.shape[0]
    if deterministic:
        u = torch.linspace(0.0, 1.0, n_samples, device=bins.device, dtype=bins.dtype).expand(rays, n_samples)
    else:
        u = torch.rand((rays, n_samples), device=bins.device, dtype=bins.dtype, generator=generator)
    u = u.contiguous()
    idx = torch.searchsorted(cdf.contiguous(), u, right=True)
    below = (idx - 1).clamp(min=0)
    above = idx.clamp(max=cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, below), cdf.gather(-1, above)
    bin_lo, bin_hi = bins.gather(-1, below), bins.gather(-1, above)
    step = cdf_hi - cdf_lo
    step = torch.where(step < CDF_STEP_FLOOR, torch.ones_like(step), step)
    t = (u - cdf_lo) / step
    return bin_lo + t * (bin_hi - bin_lo)
