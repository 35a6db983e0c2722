"""The NeRF of Mildenhall et al. 2020, registered as model "nerf".

A coarse network evaluated at stratified samples, a fine network evaluated at those samples plus
samples drawn from the coarse weights (hierarchical sampling), volume rendering of both, and the
sum of both photometric losses. Same samples, same networks and same maths as the reference
implementation; two things are computed differently, with identical results:

- ``skip_empty``: a sample whose density after the ReLU (and the training noise) is exactly 0 has
  weight 0, so neither its colour nor any gradient through it can change the output: the colour
  branch and the backward pass run only on the other samples (:meth:`NerfMLP.evaluate`).
- the skip connection and the direction input are added as separate matrix products instead of
  concatenated, and the direction part is computed once per ray (see :mod:`nerfpipe.nerf.fields`).
``skip_empty = false`` runs the literal formulation with plain autograd instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from nerfpipe.nerf.encodings import PositionalEncoding
from nerfpipe.nerf.fields import NerfMLP
from nerfpipe.nerf.interface import LossKind, Model, RayBundle, RenderOutput, SceneBox, photometric_loss
from nerfpipe.nerf.registry import register_model
from nerfpipe.nerf.rendering import render_along_rays
from nerfpipe.nerf.samplers import sample_pdf, stratified

LR_DECAY_RATE = 0.1
"""The learning rate is multiplied by this over ``lrate_decay * 1000`` steps (exponentially)."""


@dataclass(frozen=True)
class NerfConfig:
    """The paper's model. Names in parentheses are the reference code's options."""

    netdepth: int = 8
    """Layers of the coarse network's trunk (netdepth)."""
    netwidth: int = 256
    """Width of the coarse network (netwidth)."""
    netdepth_fine: int = 8
    """Layers of the fine network's trunk (netdepth_fine)."""
    netwidth_fine: int = 256
    """Width of the fine network (netwidth_fine)."""
    skips: tuple[int, ...] = (4,)
    """Layers after which the encoded position is concatenated again."""
    multires: int = 10
    """Frequencies of the position encoding (multires): 3 + 6 * 10 = 63 inputs."""
    multires_views: int = 4
    """Frequencies of the view-direction encoding (multires_views): 3 + 6 * 4 = 27 inputs."""
    use_viewdirs: bool = True
    """Condition colour on the view direction (use_viewdirs)."""
    n_samples: int = 64
    """Stratified (coarse) samples per ray (N_samples)."""
    n_importance: int = 64
    """Extra hierarchical samples per ray for the fine network; 0 = no fine network (N_importance)."""
    perturb: bool = True
    """Jitter stratified samples and draw hierarchical samples at random while training (perturb)."""
    lindisp: bool = False
    """Space stratified samples linearly in disparity instead of depth (lindisp)."""
    raw_noise_std: float = 0.0
    """Std of Gaussian noise added to raw density while training (raw_noise_std)."""
    lrate: float = 5e-4
    """Adam learning rate at step 0 (lrate)."""
    lrate_decay: int = 250
    """The learning rate falls by 10x every lrate_decay * 1000 steps (lrate_decay)."""
    skip_empty: bool = True
    """The fast path: split matrix products, and no colour or backward work for samples of zero density
    (exact; see the module docstring). false: the literal formulation with plain autograd."""
    loss: LossKind = "mse"
    """Photometric loss, copied from the recipe's [training] loss."""

    BOUNDS: ClassVar[dict[str, str]] = {
        "netdepth": ">= 2", "netwidth": ">= 1", "netdepth_fine": ">= 2", "netwidth_fine": ">= 1", "skips": ">= 0",
        "multires": ">= 0", "multires_views": ">= 0", "n_samples": ">= 2", "n_importance": ">= 0",
        "raw_noise_std": ">= 0", "lrate": "> 0", "lrate_decay": ">= 1",
    }
    """Allowed values, checked where a recipe or an override sets them (see :mod:`nerfpipe.recipes`)."""

    def problems(self) -> dict[str, str]:
        """{key: what is wrong} for values that are each allowed but do not fit together."""
        out = {}
        if any(k >= self.netdepth - 1 for k in self.skips):
            out["skips"] = f"should index layers 0 to {self.netdepth - 2} of the {self.netdepth}-layer network"
        elif self.n_importance and any(k >= self.netdepth_fine - 1 for k in self.skips):
            out["skips"] = f"should index layers 0 to {self.netdepth_fine - 2} of the {self.netdepth_fine}-layer fine network"
        return out


class NerfModel(Model):
    def __init__(self, config: NerfConfig, box: SceneBox):
        super().__init__()
        self.config = config
        self.box = box
        self.pos_enc = PositionalEncoding(config.multires)
        self.dir_enc = PositionalEncoding(config.multires_views)
        dims = dict(pos_dims=self.pos_enc.out_dims, dir_dims=self.dir_enc.out_dims, skips=config.skips,
                    use_viewdirs=config.use_viewdirs)
        self.coarse = NerfMLP(config.netdepth, config.netwidth, **dims)
        self.fine = NerfMLP(config.netdepth_fine, config.netwidth_fine, **dims) if config.n_importance > 0 else None

    def render(self, rays: RayBundle, *, train: bool, generator: torch.Generator | None = None) -> RenderOutput:
        c = self.config
        perturb = train and c.perturb
        noise_std = c.raw_noise_std if train else 0.0
        d_enc = self.dir_enc(rays.unit_viewdirs()) if c.use_viewdirs else None  # (rays, 27)
        z = stratified(rays.near, rays.far, c.n_samples, perturb=perturb, lindisp=c.lindisp, generator=generator)
        sigma, rgb = self._evaluate(self.coarse, rays, z, d_enc, noise_std, generator)
        coarse = render_along_rays(sigma, rgb, z, rays.directions, white_background=self.box.white_background)
        if self.fine is None:
            return RenderOutput(coarse.rgb, coarse.depth, coarse.acc, {"disparity": coarse.disparity})
        mids = 0.5 * (z[:, 1:] + z[:, :-1])
        z_fine = sample_pdf(mids, coarse.weights[:, 1:-1].detach(), c.n_importance, deterministic=not perturb,
                            generator=generator)
        z_all, _ = torch.sort(torch.cat([z, z_fine.detach()], dim=-1), dim=-1)
        sigma, rgb = self._evaluate(self.fine, rays, z_all, d_enc, noise_std, generator)
        fine = render_along_rays(sigma, rgb, z_all, rays.directions, white_background=self.box.white_background)
        aux = {"rgb_coarse": coarse.rgb, "disparity": fine.disparity, "acc_coarse": coarse.acc}
        return RenderOutput(fine.rgb, fine.depth, fine.acc, aux)

    @torch.no_grad()
    def field_at(self, points: Tensor, viewdirs: Tensor) -> tuple[Tensor, Tensor]:
        """The fine network (the coarse one without it), as rendering reads it (no noise)."""
        field = self.fine if self.fine is not None else self.coarse
        raw, rgb_raw = field(self.pos_enc(points), self.dir_enc(viewdirs) if self.config.use_viewdirs else None)
        return torch.relu(raw), torch.sigmoid(rgb_raw)

    def _evaluate(self, field: NerfMLP, rays: RayBundle, z: Tensor, d_enc: Tensor | None, noise_std: float,
                  generator: torch.Generator | None = None):
        """The field at samples z (rays, samples) -> sigma = relu(raw + noise) (rays, samples), rgb (rays, samples, 3)."""
        n_rays, n_samples = z.shape
        pts = rays.origins[:, None, :] + rays.directions[:, None, :] * z[..., None]  # (rays, samples, 3)
        x = self.pos_enc(pts.reshape(-1, 3))  # (points, 63)
        noise = (torch.randn(x.shape[0], device=x.device, dtype=x.dtype, generator=generator) * noise_std
                 if noise_std > 0 else None)
        if not self.config.skip_empty:  # the literal formulation, plain autograd over every sample
            d = None if d_enc is None else d_enc.repeat_interleave(n_samples, 0)
            raw, rgb_raw = field(x, d)
            sigma = torch.relu(raw if noise is None else raw + noise)
            return sigma.view(n_rays, n_samples), torch.sigmoid(rgb_raw).view(n_rays, n_samples, 3)
        dir_term = field.direction_term(d_enc) if d_enc is not None else None  # (rays, width / 2)
        sigma, rgb = field.evaluate(x, dir_term, n_samples, noise)
        return sigma.view(n_rays, n_samples), rgb.view(n_rays, n_samples, 3)

    def loss(self, out: RenderOutput, target: Tensor, step: int) -> tuple[Tensor, dict[str, float]]:
        kind = self.config.loss
        fine = photometric_loss(kind, out.rgb, target)
        if "rgb_coarse" not in out.aux:
            return fine, {"loss": fine.item()}
        coarse = photometric_loss(kind, out.aux["rgb_coarse"], target)
        total = fine + coarse
        return total, {"loss": total.item(), "loss_fine": fine.item(), "loss_coarse": coarse.item()}

    def param_groups(self, step_budget: int) -> list[dict]:
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": self.config.lrate}]

    def lr_factor(self, step: int, total_steps: int) -> float:
        return LR_DECAY_RATE ** (step / (self.config.lrate_decay * 1000))

    def bytes_per_ray(self, train: bool) -> int:
        c = self.config
        width = max(c.netwidth, c.netwidth_fine)
        samples = c.n_samples + c.n_importance
        # live per sample without autograd: encoding, two trunk activations, the kept features
        per_sample = (self.pos_enc.out_dims + 3 * width + 16) * 4
        if train:  # autograd keeps every layer's output
            per_sample = (self.pos_enc.out_dims + (c.netdepth + 4) * width + 32) * 4
        return samples * per_sample


def build(config: NerfConfig, box: SceneBox) -> NerfModel:
    return NerfModel(config, box)


register_model("nerf", NerfConfig, build)
