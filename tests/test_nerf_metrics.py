"""PSNR and SSIM by hand."""

import math

import pytest
import torch

from nerfpipe.nerf.metrics import Lpips, mse_to_psnr, psnr, ssim


def test_psnr():
    assert mse_to_psnr(0.01) == pytest.approx(20.0)
    a = torch.zeros(4, 4, 3)
    assert psnr(a + 0.1, a) == pytest.approx(20.0, abs=1e-4)
    assert psnr(a, a) == math.inf


def test_ssim_of_flat_images_by_hand():
    # two constant images a, b: variances and covariance are 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b = 0.3, 0.6
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(torch.full((20, 20, 3), a), torch.full((20, 20, 3), b)) == pytest.approx(expected, rel=1e-6)


def test_ssim_identity_noise_and_window():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(32, 40, 3, generator=g)
    assert ssim(img, img) == pytest.approx(1.0)
    noisy = (img + 0.1 * torch.randn(img.shape, generator=g)).clamp(0, 1)
    worse = (img + 0.3 * torch.randn(img.shape, generator=g)).clamp(0, 1)
    assert 0 < ssim(worse, img) < ssim(noisy, img) < 1
    # 'valid' 11x11 filtering has no padding, yet the corner pixel lies in the first window
    edge = img.clone()
    edge[0, 0] = 1 - edge[0, 0]
    assert ssim(edge, img) < 1


def test_lpips_says_why_when_unavailable():
    lp = Lpips()
    assert lp.available or lp.reason
