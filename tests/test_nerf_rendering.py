"""Volume rendering, sampling and encoding: numbers you can check by hand."""

import math

import pytest
import torch

from nerfpipe.nerf.encodings import PositionalEncoding
from nerfpipe.nerf.rendering import (alpha_from_density, composite, deltas, distortion_loss, render_along_rays,
                                     weights_from_alpha)
from nerfpipe.nerf.samplers import sample_pdf, stratified


def test_constant_slab_transmits_exp_minus_sigma_d():
    # A ray with |d| = 2 crossing a slab of density 0.7 between z = 1 and z = 2 (world length 2).
    sigma_value = 0.7
    z = (torch.arange(301, dtype=torch.float64) * 0.01)[None]  # samples every 0.01 from 0 to 3
    d = torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64)
    sigma = torch.zeros_like(z)
    sigma[0, 100:200] = sigma_value  # the 100 intervals that start at z = 1.00 .. 1.99
    alpha = alpha_from_density(sigma, deltas(z, d))
    w = weights_from_alpha(alpha)
    # light that gets past the slab = e^(-sigma * length), length = 1 (in z) * |d| = 2
    absorbed = float(w[0, :200].sum())
    assert absorbed == pytest.approx(1.0 - math.exp(-sigma_value * 2.0), abs=1e-5)


def test_weights_by_hand_and_sum_to_accumulation():
    # alphas 0.5, 0.5, 1: T = 1, 0.5, 0.25 -> w = 0.5, 0.25, 0.25; acc = 1
    alpha = torch.tensor([[0.5, 0.5, 1.0], [0.0, 0.2, 0.0]])
    w = weights_from_alpha(alpha)
    assert torch.allclose(w[0], torch.tensor([0.5, 0.25, 0.25]), atol=1e-6)
    assert torch.allclose(w[1], torch.tensor([0.0, 0.2, 0.0]), atol=1e-6)
    rgb = torch.rand(2, 3, 3)
    z = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    out = composite(w, rgb, z, white_background=False)
    assert torch.allclose(out.acc, w.sum(-1))
    assert out.depth[0].item() == pytest.approx(0.5 * 1 + 0.25 * 2 + 0.25 * 3)
    assert out.disparity[0].item() == pytest.approx(1.0 / 1.75)
    # white background: colour + (1 - acc); ray 2 has acc 0.2 of colour at z = 2
    white = composite(w, rgb, z, white_background=True)
    assert torch.allclose(white.rgb[1], 0.2 * rgb[1, 1] + 0.8, atol=1e-6)


def test_last_sample_absorbs_what_is_left():
    z = torch.tensor([[2.0, 4.0, 6.0]])
    sigma = torch.tensor([[0.0, 0.0, 1e-3]])
    out = render_along_rays(sigma, torch.ones(1, 3, 3), z, torch.tensor([[0.0, 0.0, -1.0]]), white_background=False)
    assert out.acc.item() == pytest.approx(1.0)  # the last interval is 1e10 long


def test_stratified_samples_stay_in_their_bins():
    near, far = torch.full((4, 1), 2.0), torch.full((4, 1), 6.0)
    z0 = stratified(near, far, 5, perturb=False)
    assert torch.allclose(z0[0], torch.tensor([2.0, 3.0, 4.0, 5.0, 6.0]))
    torch.manual_seed(0)
    z = stratified(near, far, 5, perturb=True)
    mids = torch.tensor([2.0, 2.5, 3.5, 4.5, 5.5, 6.0])
    assert torch.all(z >= mids[:-1]) and torch.all(z <= mids[1:])
    assert not torch.equal(z, z0)
    lin = stratified(torch.ones(1, 1), torch.full((1, 1), 4.0), 3, perturb=False, lindisp=True)
    assert torch.allclose(1.0 / lin[0], torch.tensor([1.0, 0.625, 0.25]))  # evenly spaced in disparity


def test_hierarchical_samples_concentrate_where_the_weights_are():
    bins = torch.linspace(0.0, 1.0, 11)[None].repeat(2, 1)  # 10 bins of width 0.1
    weights = torch.zeros(2, 10)
    weights[0, 7] = 1.0  # all mass in [0.7, 0.8)
    weights[1, 2] = weights[1, 5] = 0.5
    torch.manual_seed(0)
    s = sample_pdf(bins, weights, 1000, deterministic=False)
    in_bin = ((s[0] >= 0.7) & (s[0] <= 0.8)).float().mean().item()
    assert in_bin > 0.99  # the floor of 1e-5 per bin leaves ~1e-4 elsewhere
    halves = [((s[1] >= a) & (s[1] <= a + 0.1)).float().mean().item() for a in (0.2, 0.5)]
    assert halves[0] == pytest.approx(0.5, abs=0.05) and halves[1] == pytest.approx(0.5, abs=0.05)
    det = sample_pdf(bins[:1], weights[:1], 5, deterministic=True)
    # evenly spaced CDF values 0 .. 1: the ends map to the ends of the range, the rest into the bin
    assert torch.allclose(det[0], torch.tensor([0.0, 0.725, 0.75, 0.775, 1.0]), atol=1e-3)


def test_encoding_dimensions_and_values():
    pos, views = PositionalEncoding(10), PositionalEncoding(4)
    assert pos.out_dims == 63 and views.out_dims == 27
    x = torch.tensor([[0.5, -1.0, 2.0]])
    y = pos(x)
    assert y.shape == (1, 63)
    assert torch.equal(y[0, :3], x[0])
    # frequency 2^3 = 8: sin at [3 + 6*3, +3), cos right after
    assert torch.allclose(y[0, 21:24], torch.sin(8 * x[0]))
    assert torch.allclose(y[0, 24:27], torch.cos(8 * x[0]))
    assert views(torch.zeros(5, 7, 3)).shape == (5, 7, 27)


def test_distortion_loss_matches_the_double_sum_values_and_gradients():
    """mip-NeRF 360's eq. 15 written out pair by pair (the reference) against the O(samples) form."""
    g = torch.Generator().manual_seed(0)
    s = torch.sort(torch.rand(5, 9, generator=g, dtype=torch.float64), dim=-1).values
    ds = torch.rand(5, 9, generator=g, dtype=torch.float64) * 0.1
    w_fast = torch.rand(5, 9, generator=g, dtype=torch.float64).requires_grad_()
    w_slow = w_fast.detach().clone().requires_grad_()
    fast = distortion_loss(w_fast, s, ds)
    rows = []
    for r in range(5):
        pairs = sum(w_slow[r, i] * w_slow[r, j] * abs(s[r, i] - s[r, j]) for i in range(9) for j in range(9))
        rows.append(pairs + sum(w_slow[r, i] ** 2 * ds[r, i] for i in range(9)) / 3)
    slow = torch.stack(rows).mean()
    fast.backward()
    slow.backward()
    assert torch.allclose(fast, slow, atol=1e-12)
    assert torch.allclose(w_fast.grad, w_slow.grad, atol=1e-12)
    # all the weight in one short interval costs less than the same weight spread along the ray
    one = torch.zeros(1, 9, dtype=torch.float64)
    one[0, 4] = 1.0
    spread = torch.full((1, 9), 1 / 9, dtype=torch.float64)
    assert distortion_loss(one, s[:1], ds[:1]) < distortion_loss(spread, s[:1], ds[:1])
