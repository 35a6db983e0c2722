"""Volume rendering: densities and colours along rays -> pixel colour, depth, disparity, opacity.

The quadrature of the paper (eq. 3), as the reference code computes it:

- ``delta_i = (z_{i+1} - z_i) * |d|`` with the last interval "infinite" (1e10), so a ray's last
  sample absorbs what is left;
- ``alpha_i = 1 - exp(-sigma_i * delta_i)``, with ``sigma = relu(raw + noise)`` applied by the caller;
- ``T_i = prod_{j<i} (1 - alpha_j + 1e-10)`` and ``w_i = alpha_i * T_i``;
- colour ``sum w_i c_i`` (plus ``1 - sum w_i`` of white with a white background), depth
  ``sum w_i z_i``, accumulation ``sum w_i``, disparity ``1 / max(1e-10, depth / acc)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

LAST_DELTA = 1e10
"""Length given to the interval after a ray's last sample."""
TRANSMITTANCE_EPS = 1e-10
"""Added to each (1 - alpha) factor of the transmittance, as in the reference code."""
DISPARITY_EPS = 1e-10


@dataclass
class Composite:
    rgb: Tensor
    """(rays, 3)"""
    depth: Tensor
    """(rays,)"""
    acc: Tensor
    """(rays,)"""
    disparity: Tensor
    """(rays,)"""
    weights: Tensor
    """(rays, samples)"""


def deltas(z: Tensor, directions: Tensor) -> Tensor:
    """z (rays, samples), directions (rays, 3) -> interval lengths in world units (rays, samples)."""
    d = z[:, 1:] - z[:, :-1]
    d = torch.cat([d, torch.full_like(z[:, :1], LAST_DELTA)], dim=-1)
    return d * torch.linalg.vector_norm(directions, dim=-1, keepdim=True)


def alpha_from_density(sigma: Tensor, delta: Tensor) -> Tensor:
    """sigma (non-negative), delta (rays, samples) -> alpha = 1 - exp(-sigma * delta) (rays, samples)."""
    return -torch.expm1(-sigma * delta)


def weights_and_transmittance(alpha: Tensor) -> tuple[Tensor, Tensor]:
    """alpha (rays, samples) -> the weights w_i = alpha_i * T_i, T_i = prod_{j<i} (1 - alpha_j + 1e-10)
    (rays, samples), and the transmittance left after the last sample (rays, 1)."""
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + TRANSMITTANCE_EPS], dim=-1), dim=-1)
    return alpha * trans[:, :-1], trans[:, -1:]


def weights_from_alpha(alpha: Tensor) -> Tensor:
    """alpha (rays, samples) -> the compositing weights (rays, samples) of :func:`weights_and_transmittance`."""
    return weights_and_transmittance(alpha)[0]


def distortion_loss(weights: Tensor, s: Tensor, ds: Tensor) -> Tensor:
    """mip-NeRF 360's distortion loss (Barron et al. 2022, eq. 15), mean over rays.

    weights (rays, samples) of samples at s (rays, samples), sorted, each standing for an interval of
    length ds (rays, samples), s and ds as fractions of the ray's sampled extent:
    ``sum_ij w_i w_j |s_i - s_j| + 1/3 sum_i w_i^2 ds_i``. It is smallest when the weight is one
    short interval, so it pulls the weight along each ray together onto a surface and removes
    floaters. The double sum in O(samples): ``2 sum_i w_i (s_i W_{<i} - (ws)_{<i})`` from cumulative sums.
    """
    ws = weights * s
    w_before = torch.cumsum(weights, dim=-1) - weights
    ws_before = torch.cumsum(ws, dim=-1) - ws
    between = 2.0 * (ws * w_before - weights * ws_before).sum(dim=-1)
    within = (weights.square() * ds).sum(dim=-1) / 3.0
    return (between + within).mean()


def composite(weights: Tensor, rgb: Tensor, z: Tensor, *, white_background: bool) -> Composite:
    """weights (rays, samples), rgb (rays, samples, 3) in [0, 1], z (rays, samples) -> :class:`Composite`."""
    acc = weights.sum(dim=-1)
    color = torch.einsum("rs,rsc->rc", weights, rgb)
    if white_background:
        color = color + (1.0 - acc)[:, None]
    depth = (weights * z).sum(dim=-1)
    disparity = 1.0 / torch.clamp(depth / torch.clamp(acc, min=DISPARITY_EPS), min=DISPARITY_EPS)
    return Composite(color, depth, acc, disparity, weights)


def render_along_rays(sigma: Tensor, rgb: Tensor, z: Tensor, directions: Tensor, *, white_background: bool) -> Composite:
    """sigma (rays, samples) >= 0, rgb (rays, samples, 3), z (rays, samples), directions (rays, 3) -> Composite."""
    alpha = alpha_from_density(sigma, deltas(z, directions))
    return composite(weights_from_alpha(alpha), rgb, z, white_background=white_background)
