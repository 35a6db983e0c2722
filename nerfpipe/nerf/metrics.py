"""Image quality metrics: PSNR, SSIM (the standard 11x11 Gaussian window) and LPIPS when available locally.

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
LPIPS_ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
"""The torchvision AlexNet weights the lpips package needs, looked up in the local torch hub cache only."""


def mse_to_psnr(mse: float | Tensor) -> float:
    """PSNR in dB of colours in [0, 1] from their mean squared error."""
    mse = float(mse)
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)


def psnr(pred: Tensor, target: Tensor) -> float:
    """pred, target (..., 3) in [0, 1] -> PSNR in dB."""
    return mse_to_psnr(torch.mean((pred.float() - target.float()) ** 2))


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


class Lpips:
    """LPIPS (AlexNet) when the ``lpips`` package and its AlexNet weights are on this machine.

    Nothing is downloaded: ``available`` is False, and ``reason`` says why, when either is missing.
    """

    def __init__(self, device: torch.device | str = "cpu"):
        self.model = None
        self.reason = ""
        try:
            import lpips  # noqa: F401  (optional)
        except ImportError:
            self.reason = "the lpips package is not installed (pip install lpips, then place its AlexNet weights in the torch hub cache)"
            return
        weights = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_ALEXNET_FILE
        if not weights.exists():
            self.reason = f"the AlexNet weights {weights} are not on this machine, and nerfpipe never downloads at run time"
            return
        import lpips

        self.model = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
        self.device = device

    @property
    def available(self) -> bool:
        return self.model is not None

    def __call__(self, pred: Tensor, target: Tensor) -> float:
        """pred, target (H, W, 3) in [0, 1] -> LPIPS distance (lower is better)."""
        to = lambda t: t.permute(2, 0, 1)[None].float().to(self.device) * 2.0 - 1.0  # noqa: E731
        with torch.no_grad():
            return float(self.model(to(pred), to(target)))
