"""Input encodings for coordinate MLPs.

The paper's positional encoding (Mildenhall et al. 2020, eq. 4, as the reference code implements it):
``gamma(x) = [x, sin(2^0 x), cos(2^0 x), ..., sin(2^(L-1) x), cos(2^(L-1) x)]`` applied to each of
the 3 coordinates, with frequencies ``2^k`` (no factor pi, as in the reference code). L = 10 for
positions (3 + 3*2*10 = 63 dims) and L = 4 for view directions (3 + 3*2*4 = 27 dims).
"""

from __future__ import annotations

import torch
from torch import Tensor


class PositionalEncoding(torch.nn.Module):
    """x (*batch, d) -> (*batch, d * (include_input + 2 * n_freqs)), ordered [x, sin f0 x, cos f0 x, sin f1 x, ...]."""

    def __init__(self, n_freqs: int, in_dims: int = 3, include_input: bool = True):
        super().__init__()
        self.n_freqs = n_freqs
        self.in_dims = in_dims
        self.include_input = include_input
        freqs = 2.0 ** torch.arange(n_freqs, dtype=torch.float32)
        self.register_buffer("freqs", freqs, persistent=False)

    @property
    def out_dims(self) -> int:
        return self.in_dims * (int(self.include_input) + 2 * self.n_freqs)

    def forward(self, x: Tensor) -> Tensor:
        """x (*batch, in_dims) -> (*batch, out_dims)."""
        batch = x.shape[:-1]
        scaled = x[..., None, :] * self.freqs[:, None]  # (*batch, freqs, d)
        waves = torch.stack([torch.sin(scaled), torch.cos(scaled)], dim=-2)  # (*batch, freqs, 2, d)
        waves = waves.reshape(*batch, 2 * self.n_freqs * self.in_dims)
        if self.include_input:
            return torch.cat([x, waves], dim=-1)
        return waves
