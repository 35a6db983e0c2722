"""The interface every radiance-field model honours: the rays in, the scene box, the output, the loss.

One trainer, several kinds of model, chosen by the recipe's ``model`` key. The trainer, datasets,
checkpoints, evaluation and renderer know only what is in this module and the registry:

- :class:`RayBundle` -- rays in, in the space the dataset chose (NDC or world);
- :class:`SceneBox` -- what a model needs to know of that space, set by the dataset;
- :class:`RenderOutput` -- colour, depth and opacity out, plus model-specific ``aux`` for its loss;
- :class:`Model` -- ``render``, ``loss``, ``param_groups``, ``lr_factor``, ``before_step``.

Contract details a model must honour:

- Every registered config dataclass is frozen and has a field ``loss: LossKind = "mse"``;
  ``nerfpipe.recipes`` copies the recipe's ``[training] loss`` into it, and the model's ``loss``
  uses :func:`photometric_loss` with it. PSNR is never computed by a model: the trainer computes it
  from the MSE of ``RenderOutput.rgb``.
- Checkpoints hold ``model.state_dict()`` and load with ``torch.load(weights_only=True)``:
  non-parameter state (occupancy grids, step counters) lives in registered buffers, and a model
  built from the same config and :class:`SceneBox` accepts the saved state dict.
- ``render`` works for any number of rays; callers chunk with
  :func:`nerfpipe.nerf.chunking.render_image`, whose chunk size comes from :meth:`Model.bytes_per_ray`
  and the memory free on the device.

Models register their name in :mod:`nerfpipe.nerf.registry`; :mod:`nerfpipe.nerf.chunking`
renders a whole image in chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

LossKind = Literal["mse", "smooth_l1", "l1"]
LOSS_KINDS: tuple[str, ...] = ("mse", "smooth_l1", "l1")
BoxKind = Literal["ndc", "bounded", "unbounded"]
"""How a scene box bounds its rays (not the capture's kind: that is ``cameras.scene_type.SceneKind``)."""


@dataclass
class RayBundle:
    """A batch of rays. ``directions`` are not normalised (NeRF convention: a sample at distance t
    is ``origins + t * directions``; view directions are normalised inside the model)."""

    origins: Tensor
    """(rays, 3)"""
    directions: Tensor
    """(rays, 3)"""
    near: Tensor
    """(rays, 1)"""
    far: Tensor
    """(rays, 1)"""
    viewdirs: Tensor | None = None
    """(rays, 3) unit viewing directions in world space, or None to use normalised ``directions``.
    Set for NDC rays: the paper's model conditions colour on the world direction of the ray, not on
    its direction in NDC space."""

    def __len__(self) -> int:
        return self.origins.shape[0]

    def _fields(self) -> tuple:
        return (self.origins, self.directions, self.near, self.far, self.viewdirs)

    def __getitem__(self, index) -> "RayBundle":
        """Rays selected by a slice, an index tensor or a boolean mask."""
        return RayBundle(*(None if t is None else t[index] for t in self._fields()))

    def to(self, device: torch.device | str) -> "RayBundle":
        return RayBundle(*(None if t is None else t.to(device, non_blocking=True) for t in self._fields()))

    def unit_viewdirs(self) -> Tensor:
        """(rays, 3) the viewing directions the colour is conditioned on."""
        if self.viewdirs is not None:
            return self.viewdirs
        return self.directions / torch.linalg.vector_norm(self.directions, dim=-1, keepdim=True)

    @staticmethod
    def cat(bundles: list["RayBundle"]) -> "RayBundle":
        parts = list(zip(*(b._fields() for b in bundles)))
        return RayBundle(*(None if p[0] is None else torch.cat(p) for p in parts))


@dataclass
class SceneBox:
    """What a model needs to know of the scene's space, set by the dataset."""

    kind: BoxKind
    """ndc: forward-facing, rays already in NDC (z in [0, 1] with near 0 and far 1, x and y in about
    [-1, 1]); bounded: an axis-aligned box (Blender: about [-1.5, 1.5]^3); unbounded: a 360 capture,
    space outside the unit sphere contracted (mip-NeRF 360)."""
    aabb: tuple[tuple[float, float, float], tuple[float, float, float]]
    """(min xyz, max xyz) of the region of interest, in the rays' space."""
    near: float
    """Nearest ray distance used for sampling (0 in NDC)."""
    far: float
    """Farthest ray distance used for sampling (1 in NDC)."""
    white_background: bool
    """Composite the rendered colour over white (Blender RGBA scenes) instead of black."""

    def to_dict(self) -> dict:
        return {"kind": self.kind, "aabb": [list(self.aabb[0]), list(self.aabb[1])], "near": self.near,
                "far": self.far, "white_background": self.white_background}

    @staticmethod
    def from_dict(d: dict) -> "SceneBox":
        lo, hi = d["aabb"]
        return SceneBox(d["kind"], (tuple(map(float, lo)), tuple(map(float, hi))), float(d["near"]), float(d["far"]),
                        bool(d["white_background"]))


@dataclass
class RenderOutput:
    rgb: Tensor
    """(rays, 3) in [0, 1]"""
    depth: Tensor
    """(rays,) expected distance along the ray, in the ray's parameterisation (NDC t for NDC rays)."""
    acc: Tensor
    """(rays,) accumulated opacity"""
    aux: dict[str, Tensor] = field(default_factory=dict)
    """Model-specific tensors with a leading (rays, ...) axis, e.g. 'rgb_coarse', for the model's own loss."""

    @staticmethod
    def cat(outputs: list["RenderOutput"]) -> "RenderOutput":
        keys = outputs[0].aux.keys()
        return RenderOutput(
            torch.cat([o.rgb for o in outputs]),
            torch.cat([o.depth for o in outputs]),
            torch.cat([o.acc for o in outputs]),
            {k: torch.cat([o.aux[k] for o in outputs]) for k in keys},
        )


SMOOTH_L1_BETA = 0.1
"""Below this absolute colour error smooth_l1 is quadratic (colours are in [0, 1])."""


def photometric_loss(kind: LossKind, pred: Tensor, target: Tensor) -> Tensor:
    """Mean photometric loss of (rays, 3) colours: 'mse', 'smooth_l1' (Huber, beta 0.1) or 'l1'."""
    if kind == "mse":
        return F.mse_loss(pred, target)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target, beta=SMOOTH_L1_BETA)
    if kind == "l1":
        return F.l1_loss(pred, target)
    raise ValueError(f"unknown loss {kind!r}; expected one of {LOSS_KINDS}")


class Model(torch.nn.Module):
    """A radiance field with its sampler and renderer: rays in, colours out."""

    CPU_CHUNK: ClassVar[int] = 4096
    """Most rays per rendering call on a CPU (memory permitting): the paper's NeRF gains nothing beyond
    it (2026-12-07, 16,384 rays in alternation: 42-50 s in chunks of 4,096, 53-57 s in chunks of 8,192,
    and 4.8 GB of peak memory)."""

    def render(self, rays: RayBundle, *, train: bool, generator: torch.Generator | None = None) -> RenderOutput:
        """Render ``rays``. train=True: perturbation and noise on, drawn from ``generator`` (on the rays'
        device; None: the global RNG); train=False: deterministic."""
        raise NotImplementedError

    def loss(self, out: RenderOutput, target: Tensor, step: int) -> tuple[Tensor, dict[str, float]]:
        """Total loss for target (rays, 3), including coarse, proposal or regulariser terms (but those of
        :meth:`gradient_terms`); (loss, stats)."""
        raise NotImplementedError

    def gradient_terms(self, step: int) -> dict[str, float]:
        """Loss terms whose gradient the model adds into its parameters' ``.grad`` itself, called after the
        backward pass of :meth:`loss` and before the optimiser's step: dense regularisers over whole
        tables, which autograd would give a gradient tensor of their own and then add to the rest.
        Returns their weighted values by name (the trainer adds them to the logged 'loss'). Default: none."""
        return {}

    def param_groups(self, step_budget: int) -> list[dict]:
        """Adam parameter groups, each with its base 'lr' (and any other Adam option)."""
        raise NotImplementedError

    def lr_factor(self, step: int, total_steps: int) -> float:
        """Multiplier on every group's base lr at ``step`` of ``total_steps``."""
        return 1.0

    def before_step(self, step: int) -> bool:
        """Called before each optimisation step (occupancy updates, grid growth). Returns True when it
        rewrote weights wholesale (a grid's growth), so that an average of the weights before no longer
        applies (:class:`nerfpipe.nerf.trainer.WeightAverage`). Default: nothing, False."""
        return False

    def use_visual_hull(self, cells: Tensor, lo: tuple[float, ...], hi: tuple[float, ...]) -> None:
        """Where the object can be, by its silhouettes: (n, n, n) bool ``cells`` of a lattice over the box
        lo..hi in the rays' space (:class:`nerfpipe.cameras.bounds.VisualHull`), given before training.
        A model that skips empty space may skip the rest and save it with its weights. Default: ignored."""

    def bytes_per_ray(self, train: bool) -> int:
        """Rough peak memory of rendering one ray, used to pick chunk sizes. Override when known."""
        return 256 * 1024

    def field_at(self, points: Tensor, viewdirs: Tensor) -> tuple[Tensor, Tensor]:
        """The field itself, for exports (a mesh): (N, 3) points in the rays' space (NDC for NDC rays)
        and (N, 3) unit viewing directions in the world -> (N,) density per unit of distance in that
        space (0 outside the region the model covers) and (N, 3) colour in [0, 1]."""
        raise NotImplementedError(f"{type(self).__name__} cannot be read at points")
