"""Image quality metrics: PSNR, SSIM (the standard 11x11 Gaussian window) and LPIPS (AlexNet, v0.1).

SSIM follows Wang et al. 2004 as NeRF papers compute it (e.g. mip-NeRF's ``compute_ssim``):
Gaussian window 11x11 with sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1, 'valid' filtering (no
padding), computed per colour channel and averaged over the map and the channels.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def mse_to_psnr(mse: float | Tensor) -> float:
    """PSNR in dB of colours in [0, 1] from their mean squared error."""
    mse = float(mse)
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)


def psnr(pred: Tensor, target: Tensor) -> float:
    """pred, target (..., 3) in [0, 1] -> PSNR in dB."""
    return mse_to_psnr(torch.mean((pred.float() - target.float()) ** 2))


DEPTH_WITHIN = (0.02, 0.05)
"""Relative depth errors counted: within 2% and within 5% of the true depth."""


def depth_agreement(rendered: Tensor, true: Tensor) -> dict:
    """Rendered (P,) against true (P,) depths (> 0) of the same points; NaN rendered = the ray hit nothing
    (counted as a relative error of 1). -> ``depth_rel_error_median`` (a fraction), ``depth_within_2pct``,
    ``depth_within_5pct`` (fractions of the points) and ``depth_points``; None figures without points."""
    rel = ((rendered - true).abs() / true).nan_to_num(nan=1.0).clamp(max=1.0)
    n = int(rel.numel())
    if n == 0:
        return {"depth_rel_error_median": None, "depth_within_2pct": None, "depth_within_5pct": None, "depth_points": 0}
    two, five = DEPTH_WITHIN
    return {"depth_rel_error_median": round(float(rel.median()), 5),
            "depth_within_2pct": round(float((rel <= two).float().mean()), 5),
            "depth_within_5pct": round(float((rel <= five).float().mean()), 5),
            "depth_points": n}


def _gaussian_window(size: int, sigma: float, dtype, device) -> Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).to(dtype=dtype, device=device)


def ssim(pred: Tensor, target: Tensor, *, window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> float:
    """pred, target (H, W, 3) in [0, 1] -> mean SSIM (1 for identical images)."""
    a = pred.double().permute(2, 0, 1)[:, None]  # (3, 1, H, W)
    b = target.double().permute(2, 0, 1)[:, None]
    w = _gaussian_window(window, sigma, a.dtype, a.device)

    def blur(t: Tensor) -> Tensor:  # separable 'valid' Gaussian filter
        t = F.conv2d(t, w.view(1, 1, 1, -1))
        return F.conv2d(t, w.view(1, 1, -1, 1))

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    # clamp tiny negative variances from rounding, as the reference implementations do
    var_a, var_b = var_a.clamp(min=0), var_b.clamp(min=0)
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float((num / den).mean())


LPIPS_WEIGHTS = Path(__file__).resolve().parent / "weights" / "lpips_alex.npz"
"""LPIPS v0.1 with AlexNet, shipped in the wheel (made by :mod:`nerfpipe.nerf.weights.convert_lpips`)."""
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)
_ALEX_CONVS = ((11, 4, 2), (5, 1, 2), (3, 1, 1), (3, 1, 1), (3, 1, 1))
"""(kernel, stride, padding) of AlexNet's five convolutions; max-pooling 3/2 after the first two."""


class Lpips:
    """LPIPS (Zhang et al. 2018), AlexNet, linear layers v0.1: the distance NeRF papers report.

    The same network as the ``lpips`` package's ``LPIPS(net="alex")``: inputs scaled to [-1, 1] and
    shifted by its scaling layer, the ReLU outputs of AlexNet's five convolutions, each normalised over
    its channels, squared differences weighted by the learned 1x1 layers, averaged over the image and
    summed. The weights ship with nerfpipe (nothing is downloaded).
    """

    def __init__(self, device: torch.device | str = "cpu"):
        import numpy as np

        with np.load(LPIPS_WEIGHTS) as f:
            w = {k: torch.from_numpy(f[k]).to(device) for k in f.files}
        self.convs = [(w[f"conv{i}.weight"], w[f"conv{i}.bias"], k) for i, k in enumerate(_ALEX_CONVS)]
        self.lins = [w[f"lin{i}.weight"] for i in range(5)]
        self.shift = torch.tensor(_LPIPS_SHIFT, device=device).view(1, 3, 1, 1)
        self.scale = torch.tensor(_LPIPS_SCALE, device=device).view(1, 3, 1, 1)
        self.device = device

    def _features(self, x: Tensor) -> list[Tensor]:
        """x (1, 3, H, W) in [-1, 1] -> the five ReLU outputs, each normalised over its channels."""
        x = (x - self.shift) / self.scale
        out = []
        for i, (weight, bias, (_, stride, pad)) in enumerate(self.convs):
            x = F.relu(F.conv2d(x, weight, bias, stride=stride, padding=pad))
            out.append(x / (torch.sqrt(torch.sum(x * x, dim=1, keepdim=True)) + 1e-10))
            if i < 2:
                x = F.max_pool2d(x, kernel_size=3, stride=2)
        return out

    def __call__(self, pred: Tensor, target: Tensor) -> float:
        """pred, target (H, W, 3) in [0, 1] -> LPIPS distance (0 for identical images; lower is better)."""
        to = lambda t: t.permute(2, 0, 1)[None].float().to(self.device) * 2.0 - 1.0  # noqa: E731
        with torch.no_grad():
            fa, fb = self._features(to(pred)), self._features(to(target))
            return float(sum(F.conv2d((a - b) ** 2, lin).mean() for a, b, lin in zip(fa, fb, self.lins)))
