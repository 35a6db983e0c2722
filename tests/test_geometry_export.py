"""Geometry out of a field: the mesh (marching cubes) and the points from rendered depth.

Hand-checkable first: a ball of known radius, a field whose surface and depth are known exactly. Then
the real models: ``field_at`` is the field the renderer composites (the fast model's lattice, the
paper model's fine network). Then ``nerfpipe export`` on a short real training of the example fern
photos (real SfM), read back with plyfile, its points in the world of the sparse model.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from plyfile import PlyData
from scipy.spatial import cKDTree
from typer.testing import CliRunner

from nerfpipe import colmap
from nerfpipe.nerf.geometry import (MESH_OPACITY, MESH_SCALE, density_grid, depth_points, extract_mesh, points_level,
                                    surface_level)
from nerfpipe.nerf.interface import Model, RayBundle, RenderOutput, SceneBox
from nerfpipe.nerf.registry import build_model
from nerfpipe.progress import RecordingReporter
from nerfpipe.recipes import load_recipe
from nerfpipe.stages import evaluation
from nerfpipe.stages import train as train_stage

pytestmark = pytest.mark.usefixtures("one_thread")
RADIUS = 0.5


class Ball(Model):
    """Density 100 inside a ball of radius 0.5 at the origin, 0 outside; colour (0.2, 0.5, 0.8) seen
    from +x's side, (0.8, 0.5, 0.2) from the other; rendering is the exact ray-ball intersection."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def field_at(self, points, viewdirs):
        inside = points.norm(dim=-1) < RADIUS
        rgb = torch.where(viewdirs[:, :1] < 0, torch.tensor([0.2, 0.5, 0.8]), torch.tensor([0.8, 0.5, 0.2]))
        return inside * 100.0, rgb

    def render(self, rays, *, train):
        d = rays.directions
        b = (rays.origins * d).sum(-1)
        a = (d * d).sum(-1)
        disc = b * b - a * ((rays.origins ** 2).sum(-1) - RADIUS ** 2)
        hit = disc > 0
        t = (-b - disc.clamp_min(0).sqrt()) / a
        acc = hit.float()
        return RenderOutput(rgb=acc[:, None].expand(-1, 3).clone(), depth=t * acc, acc=acc)


def test_mesh_of_a_ball_lies_on_its_surface_faces_out_and_takes_the_colour_seen():
    lo, hi, res = (-1.0, -1.0, -1.0), (1.0, 1.0, 1.0), 48
    cell = 2.0 / (res - 1)
    assert surface_level(lo, hi) == pytest.approx(-np.log(1 - MESH_OPACITY) * MESH_SCALE / 2.0)
    grid = density_grid(Ball(), lo, hi, res)
    assert grid.shape == (res, res, res) and grid.max() == 100.0 and grid[0, 0, 0] == 0.0
    # points on the surface: the densest lattice point within a cell of each is inside (100)
    on = np.array([[RADIUS, 0, 0], [0, -RADIUS, 0], [0, 0, RADIUS]])
    assert points_level(grid, lo, hi, on) == pytest.approx(50.0) and points_level(grid, lo, hi, on + 5) is None
    mesh = extract_mesh(Ball(), grid, lo, hi, 50.0, view_from=lambda v: -v / np.linalg.norm(v, axis=1, keepdims=True))
    r = np.linalg.norm(mesh.vertices, axis=1)
    assert len(mesh.faces) > 1000 and np.abs(r - RADIUS).max() < cell
    tri = mesh.vertices[mesh.faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert (np.sum(normals * tri.mean(1), 1) > 0).all()  # counter-clockwise seen from outside
    # looked at from outside: vertices on +x are seen looking towards -x
    east = mesh.vertices[:, 0] > 0.1
    assert (mesh.colors[east] == [51, 128, 204]).all() and (mesh.colors[mesh.vertices[:, 0] < -0.1] == [204, 128, 51]).all()
    # nothing dense enough: no mesh
    far = (2.0, 2.0, 2.0), (3.0, 3.0, 3.0)
    assert extract_mesh(Ball(), density_grid(Ball(), *far, 16), *far, surface_level(*far), view_from=lambda v: v) is None


def test_points_from_depth_lie_on_the_ball():
    n = 500
    gen = torch.Generator().manual_seed(0)
    origins = torch.tensor([[0.0, 0.0, 3.0]]).expand(n, 3)
    directions = torch.randn(n, 3, generator=gen) * 0.15 + torch.tensor([0.0, 0.0, -1.0])
    rays = RayBundle(origins, directions, torch.zeros(n, 1), torch.full((n, 1), 6.0))
    out = Ball().render(rays, train=False)
    pts, keep = depth_points(rays, out)
    assert 50 < len(keep) < n  # some rays miss the ball
    assert torch.allclose(pts.norm(dim=-1), torch.full((len(keep),), RADIUS), atol=1e-5)
    assert (pts[:, 2] > 0).all()  # the near side


def _composite(sigma, rgb, t, directions):
    """The textbook quadrature: alpha from sigma * distance, weights = alpha * transmittance."""
    dists = torch.cat([t[:, 1:] - t[:, :-1], torch.full_like(t[:, :1], 1e10)], 1) * directions.norm(dim=-1, keepdim=True)
    alpha = 1 - torch.exp(-sigma * dists)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha + 1e-10], 1), 1)[:, :-1]
    w = alpha * trans
    return (w[..., None] * rgb).sum(1), (w * t).sum(1)


@pytest.mark.parametrize("kind", ["bounded", "unbounded"])
def test_fast_field_at_is_the_field_the_renderer_composites(kind):
    """Sum of weights * field_at colour over the fast model's own lattice = its render (exact volume, no
    skipping), for a box and for the contracted unbounded space."""
    torch.manual_seed(0)
    cfg = load_recipe("fast", ["fast.voxels_init=32768", "fast.voxels_final=32768", "fast.samples=64",
                               "fast.density_shift=-2"]).model_config
    box = SceneBox(kind, ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0)), 0.1, 4.0, False)
    model = build_model("fast", cfg, box).eval()
    with torch.no_grad():
        for p in model.field.density.parameters():
            p.normal_(0, 0.6)
    n = 64
    origins = torch.tensor([[0.0, 0.0, 2.5]]).expand(n, 3).contiguous()
    directions = (torch.randn(n, 3) * 0.2 + torch.tensor([0.0, 0.0, -1.0]))
    rays = RayBundle(origins, directions, torch.full((n, 1), 0.1), torch.full((n, 1), 4.0))
    with torch.no_grad():
        t, dt, valid = model.place_samples(rays, False)
        pts = origins[:, None] + t[..., None] * directions[:, None]
        view = rays.unit_viewdirs()[:, None].expand(-1, t.shape[1], 3)
        sigma, rgb = model.field_at(pts.reshape(-1, 3), view.reshape(-1, 3))
        # the renderer's own intervals (dt), so the comparison checks the field, not the quadrature
        alpha = 1 - torch.exp(-sigma.view(n, -1) * valid * dt * directions.norm(dim=-1, keepdim=True))
        trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha], 1), 1)[:, :-1]
        w = alpha * trans
        ref_rgb = (w[..., None] * rgb.view(n, -1, 3)).sum(1)
        out = model.render(rays, train=False)
    assert float(out.acc.mean()) > 0.2  # something to see
    assert torch.allclose(out.rgb, ref_rgb, atol=2e-3) and torch.allclose(out.depth, (w * t).sum(1), atol=2e-3)


def test_paper_field_at_is_the_fine_network():
    from conftest import TINY_NERF

    torch.manual_seed(0)
    recipe = load_recipe("llff", list(TINY_NERF) + ["nerf.perturb=false", "nerf.raw_noise_std=0"])
    box = SceneBox("bounded", ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0)), 0.5, 3.0, False)
    model = build_model(recipe.model, recipe.model_config, box).eval()
    with torch.no_grad():
        model.fine.sigma_head.bias.fill_(0.05)  # some density (a fresh network's is mostly 0 after the relu)
    n = 16
    rays = RayBundle(torch.tensor([[0.0, 0.0, 2.0]]).expand(n, 3).contiguous(), torch.randn(n, 3) * 0.1 + torch.tensor([0.0, 0.0, -1.0]),
                     torch.full((n, 1), 0.5), torch.full((n, 1), 3.0))
    z = torch.linspace(0.5, 3.0, 20).expand(n, 20).contiguous()
    with torch.no_grad():
        sigma, rgb = model._evaluate(model.fine, rays, z, model.dir_enc(rays.unit_viewdirs()), 0.0)
        pts = rays.origins[:, None] + rays.directions[:, None] * z[..., None]
        view = rays.unit_viewdirs()[:, None].expand(-1, 20, 3)
        s2, c2 = model.field_at(pts.reshape(-1, 3), view.reshape(-1, 3))
    dense = sigma > 0  # the renderer's evaluation leaves the colour of empty samples at 0
    assert dense.float().mean() > 0.3
    assert torch.allclose(s2.view(n, 20), sigma, atol=1e-5)
    assert torch.allclose(c2.view(n, 20, 3)[dense], rgb[dense], atol=1e-5)


@pytest.mark.slow
def test_export_of_a_trained_run_reads_back_and_lies_in_the_sparse_models_world(fern_posed, tmp_path):
    """A short fast training on the 20 example photos (real SfM), then `nerfpipe export`: plyfile reads the mesh
    and the points, their counts are the manifest's, and the points from depth lie among the SfM points."""
    from nerfpipe.cli import app

    scene = tmp_path / "fern"
    shutil.copytree(fern_posed[0], scene)
    train_stage.run(train_stage.TrainParams(scene=scene, recipe="fast", run="f", device="cpu", overrides=(
        "iters=300", "minutes=0", "batch_rays=2048", "log_every=100", "fast.voxels_init=262144",
        "fast.voxels_final=262144", "fast.grow_at=[]")), RecordingReporter())
    result = CliRunner().invoke(app, ["export", str(scene), "--mesh-resolution", "96", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "points and 20 cameras" in said and "points from the depth of 17 training views" in said, said
    manifest = json.loads((scene / ".nerfpipe" / "export-f.json").read_text())["result"]
    assert (scene / "exports" / "sparse_pc.ply").exists()  # the camera exports stay beside the run's

    mesh = PlyData.read(str(scene / "exports" / "f" / "mesh.ply"))
    assert manifest["mesh"]["level_from"] == "sparse points"
    assert mesh["vertex"].count == manifest["mesh"]["vertices"] > 1000
    assert mesh["face"].count == manifest["mesh"]["faces"]
    faces = np.stack(mesh["face"]["vertex_indices"])
    assert faces.shape[1] == 3 and faces.min() >= 0 and faces.max() < mesh["vertex"].count

    cloud = PlyData.read(str(scene / "exports" / "f" / "depth_points.ply"))["vertex"]
    assert cloud.count == manifest["depth_points"]["points"] > 10000
    xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], 1).astype(np.float64)
    sparse, _ = colmap.point_colors(scene / "colmap" / "sparse" / "0", scene / "images")
    extent = np.linalg.norm(np.percentile(sparse, 95, 0) - np.percentile(sparse, 5, 0))
    near = cKDTree(xyz).query(sparse)[0]
    assert np.median(near) < 0.02 * extent, (np.median(near), extent)
    verts = np.stack([mesh["vertex"]["x"], mesh["vertex"]["y"], mesh["vertex"]["z"]], 1).astype(np.float64)
    assert np.median(cKDTree(verts).query(sparse)[0]) < 0.05 * extent
    print(json.dumps({"median_points_to_sparse": float(np.median(near)), "median_mesh_to_sparse":
                      float(np.median(cKDTree(verts).query(sparse)[0])), "extent": float(extent), **manifest}))


class Plane(Model):
    """A wall: everything at world depth ``depth`` (z = -depth) and beyond is opaque; rendering is the
    exact intersection, in NDC when the rays are (the plane z = -D is the plane z = 1 - 2 near / D there)."""

    def __init__(self, depth: float, ndc: bool):
        super().__init__()
        self.depth, self.ndc = depth, ndc
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def render(self, rays, *, train):
        z = 1.0 - 2.0 * 1.0 / self.depth if self.ndc else -self.depth
        t = (z - rays.origins[:, 2]) / rays.directions[:, 2]
        n = len(rays)
        return RenderOutput(rgb=torch.zeros(n, 3), depth=t, acc=torch.ones(n))


@pytest.mark.parametrize("ndc", [False, True])
def test_depth_figure_of_a_plane_at_a_known_depth(ndc):
    """Points on a wall 4 units in front of a camera: a field that puts the wall there has error 0; one
    that puts it 3% nearer has a median error of 3%, none within 2%, all within 5%; one that is empty 1."""
    from nerfpipe.datasets.base import SceneData

    h, w, f = 60, 80, 70.0
    c2w = torch.tensor([[[1.0, 0, 0, 0.2], [0, 1, 0, -0.1], [0, 0, 1, 0.0]]] * 2)
    box = SceneBox("ndc" if ndc else "bounded", ((-2.0,) * 3, (2.0,) * 3), 0.0 if ndc else 0.5, 1.0 if ndc else 10.0, False)
    data = SceneData(kind="llff", names=["a.png", "b.png"], images=torch.zeros(2, h, w, 3), c2w=c2w, height=h, width=w,
                     focal=f, near=box.near, far=box.far, i_train=[1], i_test=[0], ndc=ndc, white_background=False,
                     scene_box=box)
    gx, gy = np.meshgrid(np.linspace(-3.0, 3.0, 12), np.linspace(-2.0, 2.0, 9))
    points = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, -4.0)], 1)  # 108 points, some outside the view
    exact = evaluation.view_depth(Plane(4.0, ndc), data, 0, points)
    assert 40 < exact["depth_points"] < 108
    assert exact["depth_rel_error_median"] == pytest.approx(0.0, abs=1e-5) and exact["depth_within_2pct"] == 1.0
    near = evaluation.view_depth(Plane(4.0 * 0.97, ndc), data, 0, points)
    assert near["depth_rel_error_median"] == pytest.approx(0.03, abs=1e-4)
    assert near["depth_within_2pct"] == 0.0 and near["depth_within_5pct"] == 1.0

    class Empty(Plane):
        def render(self, rays, *, train):
            out = super().render(rays, train=train)
            return RenderOutput(out.rgb, out.depth * 0, out.acc * 0)

    empty = evaluation.view_depth(Empty(4.0, ndc), data, 0, points)
    assert empty["depth_rel_error_median"] == 1.0 and empty["depth_within_5pct"] == 0.0


def test_depth_alone_gives_the_figures_of_eval(tmp_path):
    """evaluate_depth renders only the rays through the points' pixels and reports what evaluate
    reports: the same figures per held-out view, and the same mean of the views (the points summed)."""
    from nerfpipe.datasets.base import SceneData

    h, w, f = 60, 80, 70.0
    c2w = torch.tensor([[[1.0, 0, 0, x], [0, 1, 0, -0.1], [0, 0, 1, 0.0]] for x in (0.2, 0.0, -0.6)])
    box = SceneBox("bounded", ((-2.0,) * 3, (2.0,) * 3), 0.5, 10.0, False)
    data = SceneData(kind="llff", names=["a.png", "b.png", "c.png"], images=torch.zeros(3, h, w, 3), c2w=c2w, height=h,
                     width=w, focal=f, near=box.near, far=box.far, i_train=[1], i_test=[0, 2], ndc=False,
                     white_background=False, scene_box=box)
    gx, gy = np.meshgrid(np.linspace(-3.0, 3.0, 12), np.linspace(-2.0, 2.0, 9))
    wall = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, -4.0)], 1)
    truth = {0: wall, 2: wall[::2]}
    model = Plane(4.0 * 0.97, False)
    alone = evaluation.evaluate_depth(model, data, truth)
    full = evaluation.evaluate(model, data, tmp_path, device=torch.device("cpu"), depth_truth=truth)
    assert [v["index"] for v in alone["views"]] == [0, 2]
    assert alone["views"][0]["depth_points"] != alone["views"][1]["depth_points"]
    for mine, theirs in zip(alone["views"], full["views"], strict=True):
        assert mine == {k: theirs[k] for k in mine}
    assert alone["mean"] == {k: full["mean"][k] for k in alone["mean"]}
    assert alone["mean"]["depth_points"] == sum(v["depth_points"] for v in alone["views"])
    assert alone["mean"]["depth_rel_error_median"] == pytest.approx(0.03, abs=1e-4)
