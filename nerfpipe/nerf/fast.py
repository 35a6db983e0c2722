"""The fast recipe's model: a TensoRF-style factorised grid field, registered as ``"fast"``.

What one ``render`` call does, for R rays:

1. place S samples per ray on a (R, S) lattice (:meth:`FastModel.lattice`): evenly in NDC t for
   forward-facing scenes, over the ray's segment inside the box for bounded ones, for unbounded
   ones half evenly up to ``unbounded_split`` and half evenly in disparity beyond (the field sees
   them after the mip-NeRF 360 contraction);
2. density: when training, read from the grids only where the occupancy grid says the cell may
   hold something (gradients flow to the planes and lines); when rendering, read the samples in
   occupied cells from a dense density volume computed once from the grids (exact, one 3D lookup
   per sample), skipping the rest by an occupancy grid built from that volume. Given an object's
   visual hull (:meth:`FastModel.use_visual_hull`: Blender scenes, objects cut out on white), both grids keep only cells
   within it, and until the first occupancy update the training's grid is the hull's cells;
3. turn densities into compositing weights, and evaluate the colour only for samples whose
   weight exceeds ``weight_threshold`` (samples behind a surface or in thin air get none);
4. composite colour, depth and opacity.

The field (:class:`GridField`) is two vector-matrix encodings (:class:`~nerfpipe.nerf.grid.VMEncoding`):
the density is the ReLU (or shifted softplus) of the sum of a density encoding's components; the
colour comes from an appearance encoding, projected to ``app_dim`` features and decoded with the
view direction by a tiny MLP (or by degree-2 spherical harmonics). Training grows the grids from
``voxels_init`` to ``voxels_final`` at fixed fractions of the step budget (coarse to fine), keeps
the occupancy grid up to date, regularises the planes with total variation, and decays the
learning rates exponentially to ``lr_final_ratio`` over the budget.

Growing a grid switches to a finer copy that exists from the start (see :class:`GridField`), so the
trainer's optimiser, built once, keeps working and the finer level starts with fresh Adam moments;
the coarser levels are emptied then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from nerfpipe.nerf.grid import VMEncoding, vm_corners
from nerfpipe.nerf.interface import LossKind, Model, RayBundle, RenderOutput, SceneBox, photometric_loss
from nerfpipe.nerf.registry import register_model
from nerfpipe.nerf.occupancy import Hull, OccupancyGrid, query_cells
from nerfpipe.nerf.rendering import distortion_loss, weights_and_transmittance
from nerfpipe.nerf.samplers import along, bin_fractions, intervals, piecewise
from nerfpipe.nerf.space import box_intersect, contract


@dataclass(frozen=True)
class FastConfig:
    """The ``[fast]`` table of a recipe."""

    loss: LossKind = "mse"
    """Photometric loss (copied from the recipe's [training] loss)."""
    voxels_init: int = 128**3
    """Grid size at the start, in voxels spread evenly over the scene box (sets each axis' resolution)."""
    voxels_final: int = 300**3
    """Grid size after the last growth step."""
    ndc_depth_aspect: float = 1.0
    """Forward-facing (NDC) scenes: each voxel this many times as long in NDC depth as it is across,
    so that the same voxel count resolves more of the image plane (1: cubic voxels)."""
    grow_at: tuple[float, ...] = (0.1, 0.2, 0.3)
    """Fractions of the step budget at which the grids grow (voxel counts evenly spaced in log);
    each growth is one more level of planes and lines, allocated from the start and emptied once grown past."""
    density_comps: tuple[int, int, int] = (16, 4, 4)
    """Density components per plane (XY x Z, XZ x Y, YZ x X); forward-facing scenes need most in XY."""
    app_comps: tuple[int, int, int] = (24, 6, 6)
    """Appearance components per plane (TensoRF uses 48, 12, 12: twice the colour cost per sample)."""
    app_dim: int = 27
    """Appearance features fed to the colour head."""
    color: Literal["mlp", "sh"] = "sh"
    """Colour head: a tiny MLP of features and view direction, or degree-2 spherical harmonics."""
    mlp_hidden: int = 64
    """Width of the colour MLP's two hidden layers."""
    init_std: float = 0.1
    """Standard deviation of the initial plane and line values."""
    density_activation: Literal["relu", "softplus"] = "relu"
    """Feature -> density: ReLU (forward-facing) or softplus(feature + density_shift) (boxes)."""
    density_shift: float = -10.0
    """Added before softplus so that the initial density is almost zero."""
    density_scale: float = 25.0
    """Multiplies the density before compositing (TensoRF's distance_scale)."""
    samples: int = 64
    """Samples per ray on the lattice before empty-space skipping."""
    occupancy_threshold: float = 1e-4
    """A grid cell is skipped when one sample step through its densest vertex is less opaque than this."""
    occupancy_start: float = 0.1
    """Fraction of the step budget before the first occupancy update (until then nothing is skipped but
    what the visual hull rules out, if the scene has one)."""
    occupancy_every: int = 32
    """Steps between occupancy updates."""
    weight_threshold: float = 1e-4
    """Samples with a smaller compositing weight get no colour evaluation."""
    segment: int = 32
    """When rendering (not training), samples marched per segment before dropping opaque rays."""
    stop_transmittance: float = 1e-4
    """When rendering, a ray stops once less than this much light gets through."""
    lr_grid: float = 0.02
    """Adam learning rate of planes and lines."""
    lr_net: float = 1e-3
    """Adam learning rate of the feature projection and colour head."""
    lr_final_ratio: float = 0.1
    """The learning rates decay exponentially to this fraction at the end of the budget."""
    tv_density: float = 0.02
    """Weight of the total variation of the density planes."""
    tv_app: float = 0.02
    """Weight of the total variation of the appearance planes."""
    tv_final_ratio: float = 1.0
    """Both total-variation weights decay exponentially to this fraction of theirs over the step
    budget, as the learning rates do (TensoRF decays them with its learning rate: 0.1)."""
    l1_density: float = 0.0
    """Weight of the mean absolute density-grid value (a sparsity prior for mostly empty boxes)."""
    unbounded_split: float = 1.0
    """Unbounded scenes: half the lattice evenly in depth up to this distance from the camera (the
    normalised world's unit sphere), half evenly in disparity beyond (:func:`nerfpipe.nerf.samplers.piecewise`);
    0 puts the whole lattice evenly in disparity from the near bound, which spends most samples just
    in front of the cameras when one SfM point is close to one of them."""
    distortion: float = 0.0
    """Weight of mip-NeRF 360's distortion loss (:func:`nerfpipe.nerf.rendering.distortion_loss`), measured
    in the lattice's own spacing along each ray (the fraction s of :meth:`FastModel.lattice`)."""

    BOUNDS: ClassVar[dict[str, str]] = {
        "voxels_init": ">= 8", "voxels_final": ">= 8", "ndc_depth_aspect": "> 0", "grow_at": "(0, 1)", "density_comps": ">= 1",
        "app_comps": ">= 1", "app_dim": ">= 1", "mlp_hidden": ">= 1", "init_std": "> 0", "density_scale": "> 0",
        "samples": ">= 2", "occupancy_threshold": "[0, 1)", "occupancy_start": "[0, 1]", "occupancy_every": ">= 1",
        "weight_threshold": "[0, 1)", "segment": ">= 1", "stop_transmittance": "[0, 1)", "lr_grid": "> 0",
        "lr_net": "> 0", "lr_final_ratio": "(0, 1]", "tv_density": ">= 0", "tv_app": ">= 0", "tv_final_ratio": "(0, 1]",
        "l1_density": ">= 0", "distortion": ">= 0", "unbounded_split": ">= 0",
    }
    """Allowed values, checked where a recipe or an override sets them (see :mod:`nerfpipe.recipes`)."""

    def problems(self) -> dict[str, str]:
        """{key: what is wrong} for values that are each allowed but do not fit together."""
        if self.voxels_final < self.voxels_init:
            return {"voxels_final": f"should be at least voxels_init ({self.voxels_init})"}
        return {}


ADAM_BETAS = (0.9, 0.99)
"""TensoRF's: a shorter second-moment memory suits grids whose cells are seen in few steps."""

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)


def sh_basis(dirs: Tensor) -> Tensor:
    """Real spherical harmonics up to degree 2 of unit directions: (N, 3) -> (N, 9)."""
    x, y, z = dirs.unbind(-1)
    return torch.stack(
        [
            torch.full_like(x, SH_C0),
            -SH_C1 * y,
            SH_C1 * z,
            -SH_C1 * x,
            SH_C2[0] * x * y,
            SH_C2[1] * y * z,
            SH_C2[2] * (2 * z * z - x * x - y * y),
            SH_C2[3] * x * z,
            SH_C2[4] * (x * x - y * y),
        ],
        -1,
    )


def resolution_for(voxels: int, lo: Tensor, hi: Tensor, depth_aspect: float = 1.0) -> tuple[int, int, int]:
    """Per-axis vertex counts that spread ``voxels`` evenly over the box [lo, hi], each voxel
    ``depth_aspect`` times as long along z as it is along x and y (1: cubic voxels)."""
    size = hi - lo
    voxel = float((size.prod() / (voxels * depth_aspect)) ** (1.0 / 3.0))
    steps = (voxel, voxel, voxel * depth_aspect)
    return tuple(max(2, int(s / v)) for s, v in zip(size.tolist(), steps))


class GridField(nn.Module):
    """Density and colour from two VM encodings: ``sigma(x)`` and ``color(x, sh)``, x in [-1, 1]^3.

    The encodings exist at every resolution of the growth schedule from the start (a few times
    the memory of the finest alone); ``level`` (a buffer) names the one in use, and
    :meth:`grow_to` fills the next ones by resampling, then empties the coarser ones (their tensors
    become (0, comps): the finer copies hold all they had; fern's final grid was half of a
    checkpoint's weights before). Parameters are never replaced, so an optimiser built once keeps
    working: levels not in use get no gradient and Adam skips them. A state dict with emptied levels
    loads into a new field, whose levels are emptied to match.
    """

    def __init__(self, cfg: FastConfig, resolutions: list[tuple[int, int, int]]):
        super().__init__()
        self.cfg = cfg
        std = [cfg.init_std] + [0.0] * (len(resolutions) - 1)  # finer levels are filled when reached
        self.density_levels = nn.ModuleList(VMEncoding(r, cfg.density_comps, s) for r, s in zip(resolutions, std))
        self.app_levels = nn.ModuleList(VMEncoding(r, cfg.app_comps, s) for r, s in zip(resolutions, std))
        self.register_buffer("level", torch.zeros((), dtype=torch.int64))
        self._register_load_state_dict_pre_hook(self._empty_levels_emptied_in)
        app_dim = sum(cfg.app_comps)
        if cfg.color == "sh":
            self.basis = nn.Linear(app_dim, 27, bias=False)
            self.head = None
        else:
            self.basis = nn.Linear(app_dim, cfg.app_dim, bias=False)
            self.head = nn.Sequential(
                nn.Linear(cfg.app_dim + 9, cfg.mlp_hidden),
                nn.ReLU(inplace=True),
                nn.Linear(cfg.mlp_hidden, cfg.mlp_hidden),
                nn.ReLU(inplace=True),
                nn.Linear(cfg.mlp_hidden, 3),
            )

    @property
    def density(self) -> VMEncoding:
        return self.density_levels[int(self.level)]

    @property
    def appearance(self) -> VMEncoding:
        return self.app_levels[int(self.level)]

    @torch.no_grad()
    def grow_to(self, level: int) -> None:
        """Switch to ``level``, each finer level set to the previous one resampled."""
        for k in range(int(self.level) + 1, level + 1):
            self.density_levels[k].copy_resampled(self.density_levels[k - 1])
            self.app_levels[k].copy_resampled(self.app_levels[k - 1])
        self.level.fill_(max(level, int(self.level)))
        for encoding in (*self.density_levels[: int(self.level)], *self.app_levels[: int(self.level)]):
            for p in encoding.parameters():
                p.data = p.data.new_empty((0, p.shape[1]))

    def _empty_levels_emptied_in(self, state_dict: dict, prefix: str, *args) -> None:
        """Before loading a state dict: the levels it holds emptied are emptied here too."""
        for name, p in self.named_parameters():
            saved = state_dict.get(prefix + name)
            if isinstance(saved, Tensor) and saved.numel() == 0 and p.numel() > 0 and "_levels." in name:
                p.data = p.data.new_empty(saved.shape)

    @property
    def resolution(self) -> tuple[int, int, int]:
        return self.density.resolution

    def activation(self, feature: Tensor) -> Tensor:
        """Density feature -> density (monotone, so the densest vertex of a cell bounds the cell)."""
        if self.cfg.density_activation == "relu":
            return torch.relu(feature)
        return torch.nn.functional.softplus(feature + self.cfg.density_shift)

    def sigma(self, x: Tensor) -> Tensor:
        """(N, 3) in [-1, 1]^3 -> (N,) density (before ``density_scale``)."""
        return self.activation(self.density.sum(vm_corners(x, self.resolution)))

    def feature_above(self, density: float) -> float:
        """The density feature above which :meth:`activation` exceeds ``density`` (> 0): the occupancy
        grids threshold the feature volume itself, without a second volume-sized tensor of densities
        (on 2 CPU cores, lego's final grid of 27 M vertices: 40-220 ms an update, every 32 steps)."""
        if self.cfg.density_activation == "relu":
            return density
        if density <= 0.0:  # softplus is positive everywhere
            return -math.inf
        return math.log(math.expm1(density)) - self.cfg.density_shift

    def density_volume(self) -> Tensor:
        """(1, 1, rz, ry, rx) density feature at every vertex, laid out for ``grid_sample``: its
        trilinear interpolation equals the encoding's value anywhere (see ``VMEncoding.dense_sum``)."""
        return self.density.dense_sum().permute(2, 1, 0).contiguous()[None, None]

    def sigma_from_volume(self, volume: Tensor, x: Tensor) -> Tensor:
        """(N, 3) in [-1, 1]^3 -> (N,) density read from :meth:`density_volume` (one 3D lookup
        instead of six plane and line lookups: 5x faster when rendering)."""
        grid = x.view(1, -1, 1, 1, 3)
        feature = torch.nn.functional.grid_sample(volume, grid, align_corners=True, padding_mode="border")
        return self.activation(feature.view(-1))

    def color(self, x: Tensor, sh: Tensor) -> Tensor:
        """(N, 3) points in [-1, 1]^3 and (N, 9) :func:`sh_basis` of their view directions -> (N, 3)
        colour in [0, 1]."""
        products = self.appearance.products(vm_corners(x, self.resolution))
        blocks = torch.split(self.basis.weight, self.appearance.comps, dim=1)  # basis(cat(products)) without the cat
        features = products[0] @ blocks[0].t()
        for p, b in zip(products[1:], blocks[1:]):  # one fused multiply-add each: 4x faster than sum() on a CPU
            features = torch.addmm(features, p, b.t())
        if self.head is None:
            return torch.sigmoid(torch.bmm(features.view(-1, 3, 9), sh[:, :, None]).view(-1, 3))  # 2x a broadcast product's speed
        return torch.sigmoid(self.head(torch.cat([features, sh], -1)))

    def grid_parameters(self) -> list[nn.Parameter]:
        """Planes and lines of every level."""
        return list(self.density_levels.parameters()) + list(self.app_levels.parameters())

    def net_parameters(self) -> list[nn.Parameter]:
        """Feature projection and colour head."""
        return list(self.basis.parameters()) + (list(self.head.parameters()) if self.head is not None else [])


class FastModel(Model):
    """Factorised-grid radiance field with occupancy-grid sampling; see the module docstring."""

    CPU_CHUNK: ClassVar[int] = 16384
    """Its per-call work (occupancy gathers, index bookkeeping, a few dozen small operations a segment)
    still weighs at a few thousand rays: 2026-12-07, in alternation, one held-out frame of the fern
    example (496x368) took 1.0 s in chunks of 4096 rays, 0.8 in 8192, 0.76 in 16384 and 0.9 in 32768;
    lego (400x400, 256 samples) 2.2, 1.95, 1.65 and 1.8 s, peak memory unchanged (1.64 GB)."""

    def __init__(self, cfg: FastConfig, box: SceneBox):
        super().__init__()
        self.cfg = cfg
        self.box = box
        self.register_buffer("aabb", torch.tensor(box.aabb, dtype=torch.float32))
        lo, hi = self.field_box()
        levels = len(cfg.grow_at) + 1
        voxels = [cfg.voxels_init * (cfg.voxels_final / cfg.voxels_init) ** (k / max(1, levels - 1)) for k in range(levels)]
        aspect = cfg.ndc_depth_aspect if box.kind == "ndc" else 1.0
        self.field = GridField(cfg, [resolution_for(round(v), lo, hi, aspect) for v in voxels])
        self.occupancy = OccupancyGrid()
        self.hull = Hull()
        self._occupancy_version: tuple = ()
        """The density parameters' version when the occupancy grid was last built from them; () until then."""
        self._volume_cache: tuple[tuple, tuple[Tensor, OccupancyGrid]] | None = None
        self.step_budget = 0

    # -- space -------------------------------------------------------------------------------
    def field_box(self) -> tuple[Tensor, Tensor]:
        """The box the grids cover, in the space they are indexed in (contracted for unbounded)."""
        if self.box.kind == "unbounded":
            return -2.0 * torch.ones(3), 2.0 * torch.ones(3)
        return self.aabb[0].cpu(), self.aabb[1].cpu()

    def place_samples(self, rays: RayBundle, train: bool,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """t (rays, S) sample parameters, dt (rays, S) their ray-parameter intervals, and
        valid (rays, S) bool: the sample lies inside the box."""
        return self.lattice(rays, train, generator)[1:]

    def lattice(self, rays: RayBundle, train: bool,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`place_samples` with, first, s (rays, S): where each sample lies as a fraction of the
        lattice (the normalised distance the distortion loss measures in)."""
        near, far = rays.near, rays.far
        s = bin_fractions(near, self.cfg.samples, perturb=train, generator=generator)
        if self.box.kind == "unbounded":  # contracted space holds every point
            split = self.cfg.unbounded_split
            t = piecewise(near, far, s, split) if split > 0 else along(near.clamp_min(1e-3), far, s, True)
            return s, t, intervals(t, near, far), torch.ones_like(t, dtype=torch.bool)
        t_in, t_out = box_intersect(rays.origins, rays.directions, self.aabb[0], self.aabb[1])
        if self.box.kind == "bounded":  # spend every sample inside the box
            near = torch.maximum(near, t_in)
            far = torch.maximum(torch.minimum(far, t_out), near)
        t = along(near, far, s, False)
        return s, t, intervals(t, near, far), (t >= t_in) & (t <= t_out)

    # -- rendering ---------------------------------------------------------------------------
    def render(self, rays: RayBundle, *, train: bool, generator: torch.Generator | None = None) -> RenderOutput:
        """(rays,) in, RenderOutput out; see the module docstring for the four steps.

        train=False reads the density from a dense volume computed once from the grids (exact,
        one lookup instead of six) where its own occupancy grid says a cell can be seen, and
        marches the lattice in depth segments of ``segment`` samples, dropping rays whose
        transmittance fell below ``stop_transmittance`` (their later samples weigh less still)."""
        s, t, dt, valid = self.lattice(rays, train, generator)
        aux: dict[str, Tensor] = {}
        if train:
            rgb, depth, acc, weights, _ = self._segment(rays, t, dt, valid, None, self._occupied_sigma)
            if self.cfg.distortion > 0:
                aux = {"weights": weights, "s": s, "ds": intervals(s, torch.zeros_like(rays.near), torch.ones_like(rays.far))}
        else:
            volume, occupied = self._density_volume()
            sigma = lambda x, keep: self._volume_sigma(volume, occupied, x, keep)  # noqa: E731
            rgb, depth, acc = self._march(rays, t, dt, valid, sigma)
        if self.box.white_background:
            rgb = rgb + (1.0 - acc[:, None])
        return RenderOutput(rgb=rgb, depth=depth, acc=acc, aux=aux)

    def _occupied_sigma(self, x: Tensor, keep: Tensor) -> Tensor:
        """(N,) density at (N, 3) field points from the grids, where the training's occupancy grid allows."""
        return self._sigma_where(self.occupancy, self.field.sigma, x, keep)

    def _volume_sigma(self, volume: Tensor, occupied: OccupancyGrid, x: Tensor, keep: Tensor) -> Tensor:
        """(N,) density read from the dense volume, where the rendering's own occupancy grid allows."""
        return self._sigma_where(occupied, lambda p: self.field.sigma_from_volume(volume, p), x, keep)

    @staticmethod
    def _sigma_where(grid: OccupancyGrid, density, x: Tensor, keep: Tensor) -> Tensor:
        """(N,) ``density`` at (N, 3) field points, evaluated only where ``keep`` is True and ``grid``
        says occupied (everywhere kept if it is not built yet); zero elsewhere (below the occupancy
        threshold by construction)."""
        if grid.built:  # one gather of the occupied samples (of a million lattice points, a fifth on lego)
            idx = (grid.query(x) & keep).nonzero().squeeze(-1)
            points = x[idx]
        else:
            idx = keep.nonzero().squeeze(-1)
            points = x if idx.numel() == x.shape[0] else x[idx]  # every sample kept (NDC, unbounded): no copy
        sigma = x.new_zeros(x.shape[0])
        if idx.numel():
            sigma = sigma.index_put((idx,), density(points))
        return sigma

    def _density_volume(self) -> tuple[Tensor, OccupancyGrid]:
        """The dense density volume for rendering and an occupancy grid built from it (the training's
        grid is left to its schedule), recomputed when the density parameters change."""
        version = self._density_version()
        if self._volume_cache is None or self._volume_cache[0] != version:
            self._volume_cache = None  # free the old one first
            volume = self.field.density_volume()
            occupied = OccupancyGrid().to(volume.device)
            vertices = volume[0, 0].permute(2, 1, 0)
            occupied.build(vertices, self.field.feature_above(self._min_density()), self._hull_cells(vertices.shape))
            self._volume_cache = (version, (volume, occupied))
        return self._volume_cache[1]

    def _march(self, rays: RayBundle, t: Tensor, dt: Tensor, valid: Tensor, sigma_fn) -> tuple[Tensor, Tensor, Tensor]:
        """Segment by segment along the rays, only rays still visible: (rgb (R, 3), depth (R,), acc (R,))."""
        n_rays = len(rays)
        rgb, depth, acc = t.new_zeros(n_rays, 3), t.new_zeros(n_rays), t.new_zeros(n_rays)
        trans = t.new_ones(n_rays, 1)
        alive = None  # None: every ray (no gathering while all are visible)
        for start in range(0, t.shape[1], self.cfg.segment):
            part = slice(start, start + self.cfg.segment)
            if alive is None:
                c, d, a, _, trans = self._segment(rays, t[:, part], dt[:, part], valid[:, part], trans, sigma_fn)
                rgb += c
                depth += d
                acc += a
                visible = trans[:, 0] > self.cfg.stop_transmittance
                if not bool(visible.all()):
                    alive = visible.nonzero().squeeze(-1)
            else:
                c, d, a, _, trans_out = self._segment(
                    rays[alive], t[alive, part], dt[alive, part], valid[alive, part], trans[alive], sigma_fn
                )
                rgb[alive] += c
                depth[alive] += d
                acc[alive] += a
                trans[alive] = trans_out
                alive = alive[trans_out[:, 0] > self.cfg.stop_transmittance]
            if alive is not None and alive.numel() == 0:
                break
        return rgb, depth, acc

    @torch.no_grad()
    def field_at(self, points: Tensor, viewdirs: Tensor) -> tuple[Tensor, Tensor]:
        x = self.to_field(points)
        inside = torch.ones_like(x[:, 0], dtype=torch.bool) if self.box.kind == "unbounded" else (x.abs() <= 1.0).all(-1)
        if self.hull.present:  # nothing outside the hull, as in rendering
            inside &= query_cells(self._hull_cells(self.field.density.resolution), x)
        sigma = self.cfg.density_scale * self.field.sigma(x) * inside
        return sigma, self.field.color(x, sh_basis(viewdirs))

    def to_field(self, points: Tensor) -> Tensor:
        """(..., 3) points in the rays' space -> field coordinates: the box mapped onto [-1, 1]^3, then
        for unbounded space contracted (mip-NeRF 360) and halved into [-1, 1]^3."""
        lo, hi = self.aabb[0], self.aabb[1]
        x = (points - (lo + hi) / 2) / ((hi - lo) / 2)
        return contract(x) / 2.0 if self.box.kind == "unbounded" else x

    def field_points(self, rays: RayBundle, t: Tensor) -> Tensor:
        """(R*s, 3) field coordinates of the samples at t (R, s) along ``rays``."""
        if self.box.kind == "unbounded":
            pts = rays.origins[:, None, :] + t[..., None] * rays.directions[:, None, :]
            return self.to_field(pts).reshape(-1, 3)
        lo, hi = self.aabb[0], self.aabb[1]
        centre, half = (lo + hi) / 2, (hi - lo) / 2
        o, d = (rays.origins - centre) / half, rays.directions / half  # the box is mapped linearly: map the rays once
        return torch.addcmul(o[:, None, :], t[..., None], d[:, None, :]).reshape(-1, 3)

    def _segment(
        self, rays: RayBundle, t: Tensor, dt: Tensor, valid: Tensor, trans: Tensor | None, sigma_fn
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Composite one run of samples. t, dt, valid: (R, s); trans: (R, 1) transmittance before
        the first sample (None: 1); sigma_fn(x (N, 3), keep (N,)) -> (N,) density. Returns rgb
        (R, 3), depth (R,), acc (R,) of this run, weights (R, s) and the transmittance after it (R, 1)."""
        n_rays, n = t.shape
        x = self.field_points(rays, t)
        sigma = sigma_fn(x, valid.reshape(-1)).view(n_rays, n)
        delta = dt * torch.linalg.vector_norm(rays.directions, dim=-1, keepdim=True)  # (R, s) distances
        alpha = 1.0 - torch.exp(-self.cfg.density_scale * sigma * delta)
        weights, trans_out = weights_and_transmittance(alpha)
        if trans is not None:
            weights, trans_out = weights * trans, trans_out * trans

        shade = (weights.detach().reshape(-1) > self.cfg.weight_threshold).nonzero().squeeze(-1)
        rgb = x.new_zeros(n_rays, 3)
        if shade.numel():  # sum w * colour over the shaded samples only (the others' colour counts as 0)
            ray_of = torch.div(shade, n, rounding_mode="floor")
            sh = sh_basis(rays.unit_viewdirs())  # (R, 9): per ray, not per sample
            colour = self.field.color(x[shade], sh[ray_of])
            rgb = rgb.index_add(0, ray_of, weights.reshape(-1)[shade, None] * colour)
        return rgb, (weights * t).sum(1), weights.sum(1), weights, trans_out

    @torch.no_grad()
    def sample_weights(self, rays: RayBundle, use_occupancy: bool = True) -> tuple[Tensor, Tensor]:
        """Training lattice without jitter: t (R, S) and the compositing weights (R, S) of every
        sample, the density read from the grids with or without occupancy skipping (after
        refreshing the occupancy grid): for checking what skipping drops."""
        t, dt, valid = self.place_samples(rays, False)
        if use_occupancy:
            self.refresh_occupancy()
            sigma_fn = self._occupied_sigma
        else:
            sigma_fn = lambda x, keep: self.field.sigma(x) * keep  # noqa: E731
        _, _, _, weights, _ = self._segment(rays, t, dt, valid, None, sigma_fn)
        return t, weights

    def bytes_per_ray(self, train: bool) -> int:
        return self.cfg.samples * (800 if train else 300)

    # -- training ----------------------------------------------------------------------------
    def loss(self, out: RenderOutput, target: Tensor, step: int) -> tuple[Tensor, dict[str, float]]:
        photometric = photometric_loss(self.cfg.loss, out.rgb, target)
        total = photometric
        stats = {"photometric": float(photometric.detach())}
        if self.cfg.l1_density > 0:
            total = total + self.cfg.l1_density * self.field.density.l1()
        if self.cfg.distortion > 0 and "weights" in out.aux:
            dist = distortion_loss(out.aux["weights"], out.aux["s"], out.aux["ds"])
            total = total + self.cfg.distortion * dist
            stats["distortion"] = float(dist.detach())
        stats["loss"] = float(total.detach())
        return total, stats

    @torch.no_grad()
    def gradient_terms(self, step: int) -> dict[str, float]:
        """The total variation of the density and appearance planes, weighted by ``tv_density`` and
        ``tv_app`` (decaying to ``tv_final_ratio`` of them over the budget), its gradient added in
        place (:meth:`~nerfpipe.nerf.grid.VMEncoding.add_tv_gradient`)."""
        decay = self.cfg.tv_final_ratio ** (min(step, self.step_budget) / max(1, self.step_budget))
        tv = None
        for encoding, weight in ((self.field.density, self.cfg.tv_density), (self.field.appearance, self.cfg.tv_app)):
            if weight > 0:
                term = decay * weight * encoding.add_tv_gradient(decay * weight)
                tv = term if tv is None else tv + term
        return {} if tv is None else {"tv": float(tv)}

    def param_groups(self, step_budget: int) -> list[dict]:
        self.step_budget = int(step_budget)
        return [
            {"params": self.field.grid_parameters(), "lr": self.cfg.lr_grid, "betas": ADAM_BETAS, "name": "grid"},
            {"params": self.field.net_parameters(), "lr": self.cfg.lr_net, "betas": ADAM_BETAS, "name": "net"},
        ]

    def lr_factor(self, step: int, total_steps: int) -> float:
        return self.cfg.lr_final_ratio ** (min(step, total_steps) / max(1, total_steps))

    def level_at(self, step: int) -> int:
        """Grid level scheduled for ``step`` of the budget: how many ``grow_at`` fractions have passed."""
        return sum(step >= round(f * self.step_budget) for f in self.cfg.grow_at)

    @torch.no_grad()
    def before_step(self, step: int) -> bool:
        if self.step_budget <= 0:
            return False
        level = self.level_at(step)
        grown = level > int(self.field.level)
        if grown:
            self.field.grow_to(level)
            if self._occupancy_version:
                self.update_occupancy()
        first = round(self.cfg.occupancy_start * self.step_budget)
        if step >= first:
            if (step - first) % self.cfg.occupancy_every == 0 or not self._occupancy_version:
                self.update_occupancy()  # on schedule, or at once after a resume (the grid is not saved)
        elif self.hull.present:  # before the field knows where it is empty, skip what the silhouettes rule out
            cells = self._hull_cells(self.field.density.resolution)
            if not self.occupancy.built or self.occupancy.cells.shape != cells.shape:
                self.occupancy.fill(cells)
        return grown

    def _density_version(self) -> tuple:
        """Changes whenever a density parameter is written (the optimiser's in-place updates bump
        each tensor's version counter; loading a state dict or growing does too)."""
        return (int(self.field.level),) + tuple((p.data_ptr(), p._version) for p in self.field.density.parameters())

    @torch.no_grad()
    def refresh_occupancy(self) -> None:
        """Rebuild the occupancy grid if the density parameters changed since it was built."""
        if self._occupancy_version != self._density_version():
            self.update_occupancy()

    @torch.no_grad()
    def update_occupancy(self) -> float:
        """Rebuild the occupancy grid from the density at every grid vertex; returns the occupied fraction.

        A cell is empty when the opacity of one step of ``2 * box diagonal / samples`` (longer
        than any lattice step of a ray inside the box, jittered or not) through its densest vertex
        is below ``occupancy_threshold``; the density anywhere in a cell is at most that of its
        densest vertex (see :class:`~nerfpipe.nerf.occupancy.OccupancyGrid`)."""
        vertices = self.field.density.dense_sum()
        fraction = self.occupancy.build(vertices, self.field.feature_above(self._min_density()), self._hull_cells(vertices.shape))
        self._occupancy_version = self._density_version()
        return fraction

    def use_visual_hull(self, cells: Tensor, lo: tuple[float, ...], hi: tuple[float, ...]) -> None:
        """Never sample outside the hull (bounded boxes only): before the first occupancy update, the
        occupancy grid is the hull's cells; afterwards, and in rendering, the occupied cells within it."""
        if self.box.kind == "bounded":
            self.hull.set(cells, lo, hi)

    def _hull_cells(self, resolution) -> Tensor | None:
        """(rx - 1, ry - 1, rz - 1) bool: the cells of a vertex grid of ``resolution`` over the box that
        the hull allows; None without a hull."""
        if not self.hull.present:
            return None
        return self.hull.on_grid(tuple(int(r) for r in resolution), self.aabb[0], self.aabb[1])

    def _min_density(self) -> float:
        """Density below which one step of ``2 * box diagonal / samples`` is less opaque than
        ``occupancy_threshold`` (see :meth:`update_occupancy`)."""
        lo, hi = self.aabb[0], self.aabb[1]
        span = max(float((hi - lo).norm()), self.box.far - self.box.near)
        dist = 2.0 * span / self.cfg.samples
        return -math.log1p(-self.cfg.occupancy_threshold) / (self.cfg.density_scale * dist)


def build(cfg: FastConfig, box: SceneBox) -> FastModel:
    return FastModel(cfg, box)


register_model("fast", FastConfig, build)
