"""Where along each ray to evaluate the field: stratified samples and hierarchical (inverse-CDF) samples.

Both take the rays' per-ray ``near``/``far`` and return sample distances ``z`` (rays, samples),
sorted along each ray. Randomness comes from the torch generator passed in (global RNG if None).
"""

from __future__ import annotations

import torch
from torch import Tensor

PDF_WEIGHT_FLOOR = 1e-5
"""Added to every coarse weight before normalising, so that empty rays still sample their whole extent."""
CDF_STEP_FLOOR = 1e-5
"""CDF steps smaller than this are treated as 1 when inverting (avoids dividing by zero on flat parts)."""


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
    t = torch.linspace(0.0, 1.0, n_samples, device=near.device, dtype=near.dtype)
    if lindisp:
        z = 1.0 / (1.0 / near * (1.0 - t) + 1.0 / far * t)
    else:
        z = near * (1.0 - t) + far * t
    if perturb:
        mids = 0.5 * (z[:, 1:] + z[:, :-1])
        upper = torch.cat([mids, z[:, -1:]], dim=-1)
        lower = torch.cat([z[:, :1], mids], dim=-1)
        u = torch.rand(z.shape, device=z.device, dtype=z.dtype, generator=generator)
        z = lower + (upper - lower) * u
    return z


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
