"""Both loaders on the shared real data: poses, focal, near/far, split sizes."""

import json
import math
import shutil

import numpy as np
import pytest

from nerfpipe.cameras.formats import read_poses_bounds
from nerfpipe.datasets.blender import load_blender
from nerfpipe.datasets.llff import load_llff
from nerfpipe.errors import NerfpipeError
from nerfpipe.stages import ingest


@pytest.fixture(scope="module")
def fern_published(fern_dir, tmp_path_factory):
    """fern ingested at factor 8 (496x368) with the LLFF authors' poses: the published layout."""
    scene = tmp_path_factory.mktemp("fern")
    ingest.run(ingest.IngestParams(photos=fern_dir / "images", scene=scene, factors=(8,)))
    shutil.copy(fern_dir / "poses_bounds.reference.npy", scene / "poses_bounds.npy")
    return scene


def _reference_llff_normalisation(pb_path):
    """The seed loader's maths, transcribed directly: axis swap, bd_factor 0.75, recenter."""
    arr = np.load(pb_path)
    poses = arr[:, :15].reshape(-1, 3, 5)[:, :, :4]
    bds = arr[:, 15:]
    poses = np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:]], 2)
    sc = 1.0 / (bds.min() * 0.75)
    poses[:, :3, 3] *= sc
    bds = bds * sc
    centre = poses[:, :3, 3].mean(0)
    z = poses[:, :3, 2].sum(0)
    z /= np.linalg.norm(z)
    up = poses[:, :3, 1].sum(0)
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    avg = np.eye(4)
    avg[:3] = np.stack([x, y, z, centre], 1)
    full = np.concatenate([poses, np.tile([[[0, 0, 0, 1.0]]], (len(poses), 1, 1))], 1)
    return (np.linalg.inv(avg) @ full)[:, :3], bds, sc


def test_llff_loader_on_fern(fern_published):
    data = load_llff(fern_published, factor=8)
    assert len(data.names) == 20 and data.names[0] == "IMG_4026.png"
    assert (data.height, data.width) == (368, 496)
    assert tuple(data.images.shape) == (20, 368, 496, 3) and 0.0 <= data.images.min() and data.images.max() <= 1.0
    full_poses, _ = read_poses_bounds(fern_published / "poses_bounds.npy")
    assert data.focal == pytest.approx(full_poses[0, 2, 4] / 8) and data.focal == pytest.approx(407.566, abs=1e-3)
    assert data.i_test == [0, 8, 16] and len(data.i_train) == 17
    assert (data.near, data.far, data.ndc) == (0.0, 1.0, True)
    expected, bds, sc = _reference_llff_normalisation(fern_published / "poses_bounds.npy")
    assert np.allclose(data.c2w.numpy(), expected, atol=1e-5)
    assert np.allclose(data.bounds, bds) and data.bounds.min() == pytest.approx(1 / 0.75)
    assert [s.name for s in data.steps] == ["rescale", "recenter"] and data.steps[0].scale == pytest.approx(sc)
    lo, hi = data.scene_box.aabb
    assert data.scene_box.kind == "ndc" and lo[2] <= -1.0 and hi[2] >= 1.0
    # every training ray starts on the NDC near plane z = -1 and reaches z = 1 at t = 1
    rays = data.image_rays(1)
    assert np.allclose(rays.origins[:, 2].numpy(), -1.0, atol=1e-5)
    assert np.allclose((rays.origins + rays.directions)[:, 2].numpy(), 1.0, atol=1e-5)
    assert rays.viewdirs is not None and np.allclose(rays.viewdirs.norm(dim=-1).numpy(), 1.0, atol=1e-6)


def test_llff_loader_without_ndc_and_errors(fern_published, tmp_path):
    data = load_llff(fern_published, factor=8, ndc=False, llffhold=0)
    assert data.near == pytest.approx(0.9 / 0.75) and data.far == pytest.approx(data.bounds.max())
    assert data.i_test == [] and len(data.i_train) == 20 and data.scene_box.kind == "bounded"
    with pytest.raises(NerfpipeError, match="--factors 4"):
        load_llff(fern_published, factor=4)
    scene = tmp_path / "short"
    shutil.copytree(fern_published / "images_8", scene / "images_8")
    np.save(scene / "poses_bounds.npy", np.load(fern_published / "poses_bounds.npy")[:19])
    with pytest.raises(NerfpipeError, match="19 cameras but .* 20 images"):
        load_llff(scene, factor=8)


@pytest.fixture(scope="module")
def lego_data(lego_dir):
    """lego at 400x400 on white, loaded once for the tests below (about 10 s)."""
    return load_blender(lego_dir, half_res=True, white_background=True)


def test_blender_loader_on_lego(lego_dir, lego_data):
    data = lego_data
    assert (len(data.i_train), len(data.i_test), data.source["splits"]["val"]) == (100, 25, 10)
    assert (data.height, data.width) == (400, 400)
    meta = json.loads((lego_dir / "transforms_train.json").read_text())
    assert data.focal == pytest.approx(0.5 * 800 / math.tan(0.5 * meta["camera_angle_x"]) / 2)
    assert np.allclose(data.c2w[0].numpy(), np.array(meta["frames"][0]["transform_matrix"])[:3], atol=1e-6)
    assert (data.near, data.far, data.ndc) == (2.0, 6.0, False)
    assert data.scene_box.kind == "bounded" and data.scene_box.white_background
    assert data.images[0, 0, 0].tolist() == [1.0, 1.0, 1.0]  # transparent corner composited on white


def test_blender_box_is_the_objects_and_holds_it_in_every_test_view(lego_dir, lego_data):
    """The scene box comes from the training views' silhouettes: a fraction of the 3 m box, and every
    pixel of lego in the 25 test views (never carved with) looks through it."""
    import cv2
    import torch

    from nerfpipe.cameras.rays import get_rays
    from nerfpipe.datasets.blender import BLENDER_BOX, _read_rgba
    from nerfpipe.nerf.space import box_intersect

    data = lego_data
    lo, hi = (torch.tensor(v) for v in data.scene_box.aabb)
    assert bool((lo >= torch.tensor(BLENDER_BOX[0])).all() and (hi <= torch.tensor(BLENDER_BOX[1])).all())
    assert float((hi - lo).prod()) < 27.0 / 3  # lego fills about a fifth of the 3 m box (TensoRF's shrunk box: 4.5 m^3)
    for i in data.i_test:
        rgba = _read_rgba(lego_dir / data.names[i])
        alpha = torch.from_numpy(cv2.resize(rgba, (data.width, data.height), interpolation=cv2.INTER_AREA)[..., 3])
        o, d = get_rays(data.height, data.width, data.focal, data.c2w[i])
        seen = alpha > 0.5
        t_in, t_out = box_intersect(o[seen], d[seen], lo, hi)
        assert bool((t_in < t_out).all()), f"{data.names[i]}: a pixel of the object misses the box"


def test_blender_hull_holds_lego_in_every_test_view_and_rules_out_most_of_its_box(lego_dir, lego_data):
    """The visual hull the fast model never samples outside of: every ray through a pixel of lego in
    the 25 test views (never carved with) passes through a kept hull cell, and most of the box is not."""
    import cv2
    import torch

    from nerfpipe.cameras.rays import get_rays
    from nerfpipe.datasets.blender import _read_rgba

    hull = lego_data.hull
    lo, hi = torch.tensor(hull.lo), torch.tensor(hull.hi)
    n = hull.cells.shape[0]
    box_lo, box_hi = (torch.tensor(v) for v in lego_data.scene_box.aabb)
    centres = lo + (hi - lo) / n * (torch.stack(torch.meshgrid(*[torch.arange(n)] * 3, indexing="ij"), -1) + 0.5)
    inside = ((centres >= box_lo) & (centres <= box_hi)).all(-1)
    fraction = float(hull.cells[inside].float().mean())
    assert 0.05 < fraction < 0.5, fraction  # of the scene box, the hull keeps a fraction
    t = torch.linspace(lego_data.near, lego_data.far, 400)[:, None]  # 1 cm steps: a fifth of a hull cell
    for i in lego_data.i_test[::3]:
        rgba = _read_rgba(lego_dir / lego_data.names[i])
        alpha = torch.from_numpy(cv2.resize(rgba, (lego_data.width, lego_data.height), interpolation=cv2.INTER_AREA)[..., 3])
        o, d = get_rays(lego_data.height, lego_data.width, lego_data.focal, lego_data.c2w[i])
        seen = alpha > 0.5
        o, d = o[seen], d[seen]
        for part in torch.arange(len(o)).split(4096):
            points = o[part, None] + t * d[part, None]  # (P, T, 3)
            cell = ((points - lo) / (hi - lo) * n).floor().long()
            ok = ((cell >= 0) & (cell < n)).all(-1)
            cell = cell.clamp(0, n - 1)
            hit = (hull.cells[cell[..., 0], cell[..., 1], cell[..., 2]] & ok).any(-1)
            assert bool(hit.all()), f"{lego_data.names[i]}: {int((~hit).sum())} pixels of the object see no hull cell"
