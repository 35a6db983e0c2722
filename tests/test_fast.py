"""The fast recipe's grid model: lookups against slow references, occupancy skipping that drops
nothing visible, rendering paths that agree, grid growth under one optimiser, a short real
training, and the recipe."""

import dataclasses
import io
import itertools
import json
import math

import pytest
from conftest import published_fern
import torch
import torch.nn.functional as F

from nerfpipe.errors import NerfpipeError
from nerfpipe.nerf.fast import FastConfig, FastModel, resolution_for, sh_basis
from nerfpipe.nerf.rendering import weights_and_transmittance, weights_from_alpha
from nerfpipe.nerf.samplers import along, bin_fractions, intervals, piecewise, stratified
from nerfpipe.nerf.grid import (
    PLANE_AXES,
    VMEncoding,
    add_plane_tv_gradient,
    cell_offsets,
    interpolate,
    line_corners,
    plane_corners,
    vm_corners,
)
from nerfpipe.nerf import trainer
from nerfpipe.nerf.chunking import render_image
from nerfpipe.nerf.interface import RayBundle, SceneBox
from nerfpipe.nerf.occupancy import OccupancyGrid
from nerfpipe.nerf.registry import get_model
from nerfpipe.progress import RecordingReporter
from nerfpipe.recipes import default_recipe_name, dump_recipe, load_recipe
from nerfpipe.stages import runs
from nerfpipe.stages import train as stage

NDC_BOX = SceneBox("ndc", ((-1.5, -1.6, -1.05), (1.5, 1.6, 1.05)), 0.0, 1.0, False)
BLENDER_BOX = SceneBox("bounded", ((-1.5, -1.5, -1.5), (1.5, 1.5, 1.5)), 2.0, 6.0, True)
SPHERE_BOX = SceneBox("unbounded", ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0)), 0.1, 20.0, False)
pytestmark = pytest.mark.usefixtures("one_thread")


SMALL = dict(voxels_init=24**3, voxels_final=40**3, grow_at=(0.5,), density_comps=(4, 2, 2), app_comps=(6, 3, 3),
             samples=32, segment=8)


def slow_bilinear(table, xa, xb, res_a, res_b):
    """Reference: one point at a time, corners and weights written out (autograd gives the gradient)."""
    rows = []
    for u, v in zip(xa.tolist(), xb.tolist()):
        fa = min(max((u + 1) / 2 * (res_a - 1), 0.0), res_a - 1)
        fb = min(max((v + 1) / 2 * (res_b - 1), 0.0), res_b - 1)
        a0, b0 = min(int(fa), res_a - 2), min(int(fb), res_b - 2)
        wa, wb = fa - a0, fb - b0
        rows.append((1 - wa) * (1 - wb) * table[b0 * res_a + a0] + wa * (1 - wb) * table[b0 * res_a + a0 + 1]
                    + (1 - wa) * wb * table[(b0 + 1) * res_a + a0] + wa * wb * table[(b0 + 1) * res_a + a0 + 1])
    return torch.stack(rows)


def test_plane_and_line_lookups_match_slow_reference_values_and_gradients():
    torch.manual_seed(0)
    res_a, res_b, channels = 7, 5, 3
    x = torch.rand(60, 2, dtype=torch.float64) * 2.4 - 1.2  # some points outside [-1, 1]: clamped to the border
    fast_table = torch.randn(res_b * res_a, channels, dtype=torch.float64, requires_grad=True)
    slow_table = fast_table.detach().clone().requires_grad_()
    grad_out = torch.randn(60, channels, dtype=torch.float64)

    fast = interpolate(fast_table, *plane_corners(x[:, 0], x[:, 1], res_a, res_b))
    slow = slow_bilinear(slow_table, x[:, 0], x[:, 1], res_a, res_b)
    (fast * grad_out).sum().backward()
    (slow * grad_out).sum().backward()
    assert torch.allclose(fast, slow, atol=1e-12)
    assert torch.allclose(fast_table.grad, slow_table.grad, atol=1e-12)
    # the backward that sorts the cells' first corners only (given the corners' offsets): same gradient
    cell_table = fast_table.detach().clone().requires_grad_()
    (interpolate(cell_table, *plane_corners(x[:, 0], x[:, 1], res_a, res_b), cell_offsets(res_a)) * grad_out).sum().backward()
    assert torch.allclose(cell_table.grad, slow_table.grad, atol=1e-12)

    # grid_sample (border padding, align_corners) is the same interpolation
    ref = F.grid_sample(slow_table.detach().reshape(res_b, res_a, channels).permute(2, 0, 1)[None],
                        x[None, :, None, :], align_corners=True, padding_mode="border")[0, :, :, 0].t()
    assert torch.allclose(fast, ref, atol=1e-12)

    line = torch.randn(9, channels, dtype=torch.float64, requires_grad=True)
    out = interpolate(line, *line_corners(x[:, 0], 9))
    out.sum().backward()
    f = ((x[:, 0] + 1) / 2 * 8).clamp(0, 8)
    i0 = f.floor().clamp(max=7).long()
    expected = line.detach()[i0] * (1 - (f - i0))[:, None] + line.detach()[i0 + 1] * (f - i0)[:, None]
    assert torch.allclose(out, expected, atol=1e-12)
    assert torch.allclose(line.grad.sum(0), torch.full((channels,), 60.0, dtype=torch.float64))  # weights sum to 1
    cell_line = line.detach().clone().requires_grad_()
    (interpolate(cell_line, *line_corners(x[:, 0], 9), cell_offsets()) * grad_out).sum().backward()
    slow_line = line.detach().clone().requires_grad_()
    (slow_line[i0] * (1 - (f - i0))[:, None] + slow_line[i0 + 1] * (f - i0)[:, None]).mul(grad_out).sum().backward()
    assert torch.allclose(cell_line.grad, slow_line.grad, atol=1e-12)


def test_vm_encoding_is_the_trilinear_interpolant_of_its_dense_grid():
    torch.manual_seed(1)
    enc = VMEncoding((6, 5, 4), (3, 2, 2), init_std=0.5).double()
    x = torch.rand(100, 3, dtype=torch.float64) * 2 - 1
    corners = vm_corners(x, enc.resolution)
    dense = enc.dense_sum()  # (rx, ry, rz)
    ref = F.grid_sample(dense.permute(2, 1, 0)[None, None], x[None, :, None, None, :], align_corners=True)
    assert torch.allclose(enc.sum(corners), ref.reshape(-1), atol=1e-12)
    # each stacked feature is plane(a, b) * line(c)
    plane = enc.planes[1].detach().reshape(4, 6, 2).permute(2, 0, 1)[None]  # XZ plane: (C, z, x)
    line = enc.lines[1].detach().t()[None, :, :, None]  # Y line: (C, y, 1)
    p = F.grid_sample(plane, x[None, :, None, [0, 2]], align_corners=True)[0, :, :, 0].t()
    ln = F.grid_sample(line, torch.stack([torch.zeros(100, dtype=torch.float64), x[:, 1]], -1)[None, :, None],
                       align_corners=True)[0, :, :, 0].t()
    assert torch.allclose(enc.stack(corners)[:, 3:5], p * ln, atol=1e-12)


def test_total_variation_matches_slow_reference_values_and_gradients():
    torch.manual_seed(2)
    res_a, res_b = 6, 4
    table = torch.randn(res_b * res_a, 3, dtype=torch.float64)
    slow_table = table.clone().requires_grad_()
    # reference: every neighbour pair written out, both ways, averaged per direction
    g = slow_table.view(res_b, res_a, 3)
    down = [(g[j + 1, i] - g[j, i]).pow(2) for j in range(res_b - 1) for i in range(res_a)]
    across = [(g[j, i + 1] - g[j, i]).pow(2) for j in range(res_b) for i in range(res_a - 1)]
    slow = torch.cat(down).mean() + torch.cat(across).mean()
    (0.7 * slow).backward()
    earlier = torch.randn_like(table)  # what the lookups' backward left in .grad: added to, not replaced
    grad = earlier.clone()
    value = add_plane_tv_gradient(table, grad, res_a, res_b, 0.7)
    assert torch.allclose(value, slow.detach(), atol=1e-12)
    assert torch.allclose(grad, earlier + slow_table.grad, atol=1e-12)
    unchanged = torch.zeros(res_b * res_a, 2)
    assert float(add_plane_tv_gradient(torch.ones(res_b * res_a, 2), unchanged, res_a, res_b, 1.0)) == 0.0
    assert not unchanged.any()  # a constant plane has none


def test_total_variation_as_gradient_terms_equals_autograd_of_the_whole_loss():
    """The loss's backward and then the model's gradient terms (the trainer's order) give every plane the
    gradient that autograd gives the sum of the loss and the weighted total variation."""
    torch.manual_seed(4)
    model = FastModel(FastConfig(**SMALL, tv_density=0.3, tv_app=0.2), NDC_BOX)
    model.param_groups(10)
    rays, target = _ndc_rays(64), torch.rand(64, 3)
    out = model.render(rays, train=True, generator=torch.Generator().manual_seed(0))
    loss, stats = model.loss(out, target, 0)
    loss.backward()
    terms = model.gradient_terms(0)
    planes = [*model.field.density.planes, *model.field.appearance.planes]
    fast = [p.grad.clone() for p in planes]

    model.zero_grad(set_to_none=True)
    out = model.render(rays, train=True, generator=torch.Generator().manual_seed(0))
    reference = model.loss(out, target, 0)[0]
    r = model.field.density.resolution
    for enc, w in ((model.field.density, 0.3), (model.field.appearance, 0.2)):
        for p, (a, b) in zip(enc.planes, PLANE_AXES):
            g = p.view(r[b], r[a], -1)
            reference = reference + w * ((g[1:] - g[:-1]).pow(2).mean() + (g[:, 1:] - g[:, :-1]).pow(2).mean())
    reference.backward()
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(fast, planes))
    assert terms["tv"] == pytest.approx(float(reference.detach()) - stats["loss"], rel=1e-4)


def test_composite_weights_by_hand():
    alpha = torch.tensor([[0.5, 0.5, 1.0, 0.3], [0.5, 0.0, 0.5, 0.0]])
    weights, trans = weights_and_transmittance(alpha)
    assert torch.allclose(weights, torch.tensor([[0.5, 0.25, 0.25, 0.0], [0.5, 0.0, 0.25, 0.0]]), atol=1e-6)
    assert torch.allclose(trans[:, 0], torch.tensor([0.0, 0.25]), atol=1e-6)
    assert torch.equal(weights_from_alpha(alpha), weights)  # the paper model composites with the same weights
    assert sh_basis(torch.tensor([[0.0, 0.0, 1.0]]))[0, 0].item() == pytest.approx(0.2820948)


def _structured_model(box: SceneBox, **overrides) -> FastModel:
    """A model whose density is a few solid blobs in empty space, with random colours."""
    torch.manual_seed(2)
    model = FastModel(FastConfig(**{**SMALL, "density_comps": (1, 1, 1), **overrides}), box)
    with torch.no_grad():
        for enc in model.field.density_levels:  # density from the XY plane and Z line only
            for p in list(enc.planes)[1:] + list(enc.lines)[1:]:
                p.zero_()
            enc.planes[0].copy_(torch.randn_like(enc.planes[0]).clamp_min(0) ** 4 - 2.0)  # negative (empty) but for peaks
            enc.lines[0].copy_(torch.rand_like(enc.lines[0]))
    return model.eval()


def _ndc_rays(n: int, seed: int = 3) -> RayBundle:
    g = torch.Generator().manual_seed(seed)
    o = torch.cat([torch.rand(n, 2, generator=g) * 2.4 - 1.2, -torch.ones(n, 1)], -1)
    d = torch.cat([torch.randn(n, 2, generator=g) * 0.2, torch.full((n, 1), 2.0)], -1)
    return RayBundle(o, d, torch.zeros(n, 1), torch.ones(n, 1))


def _world_rays(n: int, radius: float, near: float, far: float, seed: int = 4) -> RayBundle:
    g = torch.Generator().manual_seed(seed)
    eye = F.normalize(torch.randn(n, 3, generator=g), dim=-1) * radius
    target = torch.rand(n, 3, generator=g) - 0.5
    d = F.normalize(target - eye, dim=-1)
    return RayBundle(eye, d, torch.full((n, 1), near), torch.full((n, 1), far))


def test_both_models_place_samples_by_hand():
    near, far = torch.tensor([[1.0], [2.0]]), torch.tensor([[3.0], [4.0]])
    t = along(near, far, bin_fractions(near, 4, perturb=False), False)
    assert torch.allclose(t, torch.tensor([[1.25, 1.75, 2.25, 2.75], [2.25, 2.75, 3.25, 3.75]]))
    assert torch.allclose(intervals(t, near, far), torch.full((2, 4), 0.5))
    inv = along(near, far, bin_fractions(near, 4, perturb=False), True)  # even in 1/t
    assert torch.allclose(1.0 / inv[0], 1.0 - torch.tensor([0.125, 0.375, 0.625, 0.875]) * (1.0 - 1.0 / 3.0))
    assert torch.allclose(stratified(near, far, 3, perturb=False), torch.tensor([[1.0, 2.0, 3.0], [2.0, 3.0, 4.0]]))
    g = torch.Generator().manual_seed(0)
    jittered = along(near[:1].expand(500, 1), far[:1].expand(500, 1),
                     bin_fractions(near[:1].expand(500, 1), 4, perturb=True, generator=g), False)
    bins = torch.floor((jittered - 1.0) / 0.5)  # each sample stays in its own bin, and fills it
    assert torch.equal(bins, torch.arange(4.0).expand(500, 4))
    assert (jittered - t[:1]).abs().max() > 0.24
    # unbounded space: half the samples evenly up to the split, half evenly in disparity beyond it
    s = torch.tensor([[0.0, 0.25, 0.5, 0.75, 1.0]])
    z = piecewise(torch.tensor([[0.1]]), torch.tensor([[10.0]]), s, 1.0)
    assert torch.allclose(z, torch.tensor([[0.1, 0.55, 1.0, 1.0 / (0.5 / 10.0 + 0.5), 10.0]]))
    assert torch.allclose(piecewise(torch.tensor([[0.1]]), torch.tensor([[0.9]]), s, 1.0), 0.1 + 0.8 * s)  # ends inside
    beyond = piecewise(torch.tensor([[2.0]]), torch.tensor([[8.0]]), s, 1.0)  # starts outside: all in disparity
    assert torch.allclose(1.0 / beyond, 0.5 + (0.125 - 0.5) * s)


def test_occupancy_never_drops_a_sample_the_full_evaluation_weights():
    model = _structured_model(NDC_BOX)
    rays = _ndc_rays(3000)
    t, full = model.sample_weights(rays, use_occupancy=False)
    _, skipped = model.sample_weights(rays, use_occupancy=True)
    occupied = float(model.occupancy.cells.float().mean())
    assert 0.02 < occupied < 0.7  # it does skip space, and the scene is not empty
    assert (full > 1e-3).any()
    assert not ((skipped == 0) & (full > 1e-5)).any()  # nothing the full evaluation sees is dropped
    assert torch.allclose(skipped, full, atol=1e-5)
    # the bound behind it: inside an empty cell no point has density above the threshold density
    x = torch.rand(20000, 3) * 2 - 1
    empty = ~model.occupancy.query(x)
    with torch.no_grad():
        assert empty.any() and float(model.field.sigma(x[empty]).max()) < 1e-3


@pytest.mark.parametrize("activation", ["relu", "softplus"])
def test_occupancy_from_the_density_feature_is_the_one_from_the_density(activation):
    """The occupancy grids threshold the feature volume at GridField.feature_above: the same cells as
    thresholding the densities themselves."""
    model = _structured_model(BLENDER_BOX, density_activation=activation, density_shift=-15.0)
    fraction = model.update_occupancy()
    from_density = OccupancyGrid()
    with torch.no_grad():
        from_density.build(model.field.activation(model.field.density.dense_sum()), model._min_density())
    assert 0.02 < fraction < 0.9 and torch.equal(model.occupancy.cells, from_density.cells)
    _, rendering = model._density_volume()
    assert torch.equal(rendering.cells, from_density.cells)
    assert model.field.feature_above(0.0) == (0.0 if activation == "relu" else -math.inf)


def test_occupancy_cells_are_those_whose_densest_vertex_passes_the_threshold():
    torch.manual_seed(4)
    vertex = torch.rand(9, 7, 5) ** 6  # (rx, ry, rz), mostly low
    grid = OccupancyGrid()
    fraction = grid.build(vertex, 0.4)
    slow = torch.zeros(8, 6, 4, dtype=torch.bool)
    for i, j, k in itertools.product(range(8), range(6), range(4)):
        slow[i, j, k] = bool(vertex[i : i + 2, j : j + 2, k : k + 2].max() > 0.4)
    assert torch.equal(grid.cells, slow)
    assert 0.1 < fraction < 0.9 and fraction == pytest.approx(float(slow.float().mean()))
    # the rendering builds it from a permuted view; the cells still come out in (x, y, z) memory
    # order (query flattens them: a strided result made every query copy the whole grid)
    grid.build(vertex.permute(2, 1, 0).contiguous().permute(2, 1, 0), 0.4)
    assert torch.equal(grid.cells, slow) and grid.cells.is_contiguous()


@pytest.mark.parametrize("box", [NDC_BOX, BLENDER_BOX, SPHERE_BOX], ids=["ndc", "bounded", "unbounded"])
def test_rendering_path_matches_the_training_lattice_and_chunking(box):
    model = _structured_model(box)
    rays = _ndc_rays(700) if box.kind == "ndc" else _world_rays(700, 4.0 if box.kind == "bounded" else 0.9, box.near, box.far)
    with torch.no_grad():
        out = model.render(rays, train=False)  # dense density volume, segments, early stop
        t, dt, valid = model.place_samples(rays, train=False)
        rgb, depth, acc, _, _ = model._segment(rays, t, dt, valid, None, lambda x, keep: model.field.sigma(x) * keep)
        if box.white_background:
            rgb = rgb + (1 - acc[:, None])
        chunked = render_image(model, rays, chunk=128)
    assert torch.allclose(out.rgb, rgb, atol=2e-4) and torch.allclose(out.acc, acc, atol=2e-4)
    assert torch.allclose(out.depth, depth, atol=2e-3)
    assert torch.allclose(chunked.rgb, out.rgb, atol=1e-6)
    _, occupied = model._density_volume()  # the render skipped empty space to get there
    assert 0.0 < float(occupied.cells.float().mean()) < 0.7
    assert out.rgb.shape == (700, 3) and float(out.acc.max()) > 0.5 and torch.isfinite(out.rgb).all()


def test_growth_switches_level_under_one_optimiser_and_state_dict_reloads():
    torch.manual_seed(5)
    model = FastModel(FastConfig(**SMALL), NDC_BOX)
    optimizer = torch.optim.Adam(model.param_groups(step_budget=4))
    rays, target = _ndc_rays(256), torch.rand(256, 3)
    coarse, fine = model.field.density_levels
    rewritten = []
    for step in range(4):
        rewritten.append(model.before_step(step))
        loss, stats = model.loss(model.render(rays, train=True), target, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        stats.update(model.gradient_terms(step))
        if step == 1:
            coarse_before_growth = [p.detach().clone() for p in coarse.parameters()]
        optimizer.step()
    assert int(model.field.level) == 1 and model.field.density is fine
    assert rewritten == [False, False, True, False]  # a weight average starts over at the growth
    # grown at step 2 (half of the 4-step budget), the coarse level then emptied: its weights and the
    # state dict's copy of them are (0, comps), and the state dict loads into a new model (below)
    assert all(p.shape == (0, q.shape[1]) for p, q in zip(coarse.parameters(), coarse_before_growth))
    assert all(v.numel() == 0 for k, v in model.state_dict().items() if "density_levels.0." in k)
    assert float(fine.planes[0].detach().abs().sum()) > 0 and set(stats) >= {"loss", "photometric", "tv"}

    reloaded = FastModel(FastConfig(**SMALL), NDC_BOX)
    reloaded.load_state_dict(torch.load(_save(model.state_dict()), weights_only=True))
    with torch.no_grad():
        assert torch.equal(reloaded.eval().render(rays, train=False).rgb, model.eval().render(rays, train=False).rgb)


def test_hull_on_a_grid_keeps_the_cells_that_overlap_a_kept_hull_cell():
    from nerfpipe.nerf.occupancy import Hull

    torch.manual_seed(6)
    hull = Hull()
    h_lo, h_hi = torch.tensor([-1.3, -1.1, -1.2]), torch.tensor([1.4, 1.2, 1.0])
    hull.set(torch.rand(6, 6, 6) < 0.2, tuple(h_lo.tolist()), tuple(h_hi.tolist()))
    lo, hi, res = torch.tensor([-1.17, -0.93, -1.2]), torch.tensor([1.21, 1.05, 0.83]), (9, 7, 5)
    cells = hull.on_grid(res, lo, hi)
    slow = torch.zeros(8, 6, 4, dtype=torch.bool)
    h_size, size = (h_hi - h_lo) / 6, (hi - lo) / (torch.tensor(res) - 1)
    for i, j, k in itertools.product(range(8), range(6), range(4)):
        a = lo + size * torch.tensor([i, j, k])
        b = a + size
        for hc in hull.cells.nonzero():  # a kept hull cell that shares volume with grid cell (i, j, k)
            ha = h_lo + h_size * hc
            if bool(((torch.minimum(b, ha + h_size) - torch.maximum(a, ha)) > 0).all()):
                slow[i, j, k] = True
                break
    assert torch.equal(cells, slow) and 0.1 < float(slow.float().mean()) < 0.9


def test_a_hull_is_never_sampled_outside_and_is_saved_with_the_weights():
    """Given a visual hull, the occupancy grid is the hull's cells until the first occupancy update,
    then the occupied cells within it, in training and in rendering; the hull reloads with the
    weights, and weights saved before hulls existed load without one."""
    model = _structured_model(BLENDER_BOX, occupancy_start=0.5)
    kept = torch.zeros(8, 8, 8, dtype=torch.bool)
    kept[:4] = True  # the half of the box at x < 0
    model.use_visual_hull(kept, *BLENDER_BOX.aabb)
    model.param_groups(step_budget=4)
    model.before_step(0)
    res = model.field.density.resolution
    allowed = model._hull_cells(res)
    assert torch.equal(model.occupancy.cells, allowed)
    assert bool(allowed[: (res[0] - 1) // 2 - 1].all()) and not bool(allowed[(res[0] - 1) // 2 + 1:].any())
    model.before_step(2)  # the first occupancy update (and the grids' growth): density-occupied cells, within the hull
    allowed = model._hull_cells(model.field.density.resolution)
    _, rendering = model._density_volume()
    plain = OccupancyGrid()
    with torch.no_grad():
        plain.build(model.field.density.dense_sum(), model.field.feature_above(model._min_density()))
    assert bool((plain.cells & ~allowed).any())  # the field has density outside the hull that is skipped
    for grid in (model.occupancy, rendering):
        assert torch.equal(grid.cells, plain.cells & allowed)
    rays = _world_rays(400, 4.0, BLENDER_BOX.near, BLENDER_BOX.far)
    with torch.no_grad():
        out = model.render(rays, train=False)
        x = torch.rand(5000, 3) * 2.8 - 1.4  # the field read at points (exports) is empty outside the hull too
        sigma, _ = model.field_at(x, F.normalize(torch.randn(5000, 3), dim=-1))
        plain_sigma = model.field.sigma(model.to_field(x))
    outside = x[:, 0] > 0.1  # beyond the grid cell that touches the hull at x = 0 (kept: conservative)
    assert float(plain_sigma[outside].max()) > 0 and float(sigma[outside].abs().max()) == 0.0
    assert torch.equal(sigma[x[:, 0] < 0], model.cfg.density_scale * plain_sigma[x[:, 0] < 0])
    reloaded = FastModel(model.cfg, BLENDER_BOX)
    reloaded.load_state_dict(torch.load(_save(model.state_dict()), weights_only=True))
    assert torch.equal(reloaded.hull.cells, kept)
    with torch.no_grad():
        assert torch.equal(reloaded.eval().render(rays, train=False).rgb, out.rgb)
    before_hulls = {k: v for k, v in model.state_dict().items() if not k.startswith("hull.")}
    old = FastModel(model.cfg, BLENDER_BOX)
    old.use_visual_hull(kept, *BLENDER_BOX.aabb)
    old.load_state_dict(before_hulls)
    assert not old.hull.present


def test_ndc_voxels_are_longer_in_depth_by_the_aspect_and_only_in_ndc():
    lo, hi = torch.tensor([-1.6, -1.4, -1.1]), torch.tensor([1.6, 1.4, 1.1])
    cubic, deep = resolution_for(300**3, lo, hi), resolution_for(300**3, lo, hi, depth_aspect=3.0)
    for res in (cubic, deep):  # the same voxel count either way (to the vertex rounding)
        assert math.prod(res) == pytest.approx(300**3, rel=0.03)
    steps = [(h - l) / r for l, h, r in zip(lo.tolist(), hi.tolist(), deep)]
    assert steps[0] == pytest.approx(steps[1], rel=0.01) and steps[2] == pytest.approx(3 * steps[0], rel=0.02)
    assert deep[0] > 1.4 * cubic[0] and deep[2] < 0.5 * cubic[2]
    cfg = FastConfig(**SMALL, ndc_depth_aspect=3.0)
    ndc, bounded = FastModel(cfg, NDC_BOX), FastModel(cfg, BLENDER_BOX)
    (rx, ry, rz), (bx, by, bz) = ndc.field.resolution, bounded.field.resolution
    assert rz * 2 < min(rx, ry) and bx == by == bz  # the object's box keeps cubic voxels


def _save(state) -> io.BytesIO:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return buf


def test_total_variation_weights_decay_over_the_budget_like_the_learning_rate():
    model = FastModel(FastConfig(**SMALL, tv_density=0.02, tv_app=0.01, tv_final_ratio=0.1), NDC_BOX)
    model.param_groups(100)  # the step budget
    f = model.field
    full = 0.02 * float(f.density.add_tv_gradient(0.0)) + 0.01 * float(f.appearance.add_tv_gradient(0.0))
    tv = [model.gradient_terms(step)["tv"] for step in (0, 50, 100, 150)]
    assert tv == pytest.approx([full, full * 0.1**0.5, full * 0.1, full * 0.1], rel=1e-5)  # held after the budget


@pytest.fixture(scope="module")
def tiny_fern(fern_dir, tmp_path_factory):
    """Published LLFF layout at factor 32 (126x94 PNGs) with the authors' poses."""
    return published_fern(fern_dir, tmp_path_factory.mktemp("fern32"), 32)


@pytest.mark.slow
@pytest.mark.parametrize("box", [NDC_BOX, BLENDER_BOX, SPHERE_BOX], ids=["ndc", "bounded", "unbounded"])
def test_the_distortion_loss_measures_along_the_lattice_in_its_own_spacing(box):
    """s runs from 0 to 1 over the lattice (NDC t itself; the box segment; the piecewise spacing of
    unbounded space), and the intervals the loss gives each sample tile it."""
    model = FastModel(FastConfig(**SMALL, distortion=0.01), box)
    rays = _ndc_rays(50) if box.kind == "ndc" else _world_rays(50, 4.0 if box.kind == "bounded" else 0.9, box.near, box.far)
    s, t, _, _ = model.lattice(rays, train=False)
    n = t.shape[1]
    assert torch.allclose(s, ((torch.arange(n) + 0.5) / n).expand(50, n))  # bin centres, unperturbed
    assert (t.diff(dim=-1) > 0).all() and (t >= rays.near).all() and (t <= rays.far).all()
    if box.kind == "ndc":
        assert torch.allclose(s, t)
    out = model.render(rays, train=True, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out.aux["ds"].sum(-1), torch.ones(50))
    loss, stats = model.loss(out, torch.rand(50, 3), 0)
    assert stats["distortion"] > 0 and loss.requires_grad


def test_short_fast_training_on_fern_lowers_the_loss_and_evaluates(tiny_fern):
    overrides = ("factor=32", "iters=80", "batch_rays=1024", "log_every=10", "minutes=0",
                 "fast.voxels_init=32768", "fast.voxels_final=110592", "fast.grow_at=[0.6]", "fast.samples=32")
    out = stage.run(stage.TrainParams(scene=tiny_fern, recipe="fast", overrides=overrides, run="f", device="cpu"),
                    RecordingReporter())
    lines = [json.loads(s) for s in (tiny_fern / "runs" / "f" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["photometric"] < 0.6 * lines[0]["photometric"]
    assert lines[-1]["distortion"] > 0  # the fast recipe's distortion loss is on
    assert out.train.result["model"] == "fast" and out.train.result["steps"] == 80
    assert out.eval.result["mean"]["psnr"] > 15.0
    model, recipe, meta = runs.load_run(tiny_fern, "f")
    assert isinstance(model, FastModel) and int(model.field.level) == 1 and recipe.model_config.samples == 32
    # the recipe's weight average: of the weights in use (not the coarse level's), and what a run loads
    ckpt = torch.load(trainer.list_checkpoints(tiny_fern / "runs" / "f")[-1], weights_only=True)
    assert recipe.training.average > 0 and recipe.training.average_start == 0.25
    assert ckpt["average_since"] == 49  # started after 20 steps, over again after the step the grid grew at (0.6 x 80)
    assert set(ckpt["average"]) == {n for n, _ in model.named_parameters() if "_levels.0." not in n}
    # the coarse level, emptied at the growth, takes no room in the checkpoint, nor Adam's moments
    assert all(v.numel() == 0 for k, v in ckpt["model"].items() if "_levels.0." in k)
    assert len(ckpt["optimizer"]["state"]) == len(ckpt["average"])
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in ckpt["average"].items())
    assert any(not torch.equal(ckpt["model"][k], v) for k, v in ckpt["average"].items())


def test_fast_recipe_is_the_default_and_round_trips(tmp_path):
    assert default_recipe_name() == "fast"
    recipe = load_recipe("fast")
    assert recipe.model == "fast" and isinstance(recipe.model_config, FastConfig)
    assert recipe.training.minutes > 0 and recipe.data.ndc
    path = tmp_path / "resolved.toml"
    path.write_text(dump_recipe(recipe))
    again = load_recipe(str(path))
    assert again.to_dict() == recipe.to_dict() and again.model_config == recipe.model_config
    changed = load_recipe("fast", ["fast.app_comps=[8, 2, 2]", "loss=smooth_l1"])
    assert changed.model_config == dataclasses.replace(recipe.model_config, app_comps=(8, 2, 2), loss="smooth_l1")
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "fast"\n[fast]\nsampels = 32\n')
    with pytest.raises(NerfpipeError, match=r"bad.toml.*sampels.*samples"):
        load_recipe(str(bad))
    assert get_model("fast").config_cls is FastConfig
