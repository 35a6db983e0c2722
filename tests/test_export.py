"""nerfpipe export on a real posed scene (five fern photos through pycolmap), each format read back with
the reading code of the format: pycolmap for the COLMAP folder, the PLY header and counts, instant-ngp's keys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pycolmap
import pytest
from PIL import Image
from typer.testing import CliRunner

from nerfpipe import colmap
from nerfpipe.cameras.formats import read_transforms
from nerfpipe.cli import app
from nerfpipe.stages import export, ingest, poses

REPO = Path(__file__).resolve().parents[1]
FERN_PHOTOS = REPO / "examples" / "fern" / "photos"
RUNNER = CliRunner()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    scene = tmp_path_factory.mktemp("export scene")
    (scene / "photos").mkdir()
    for path in sorted(FERN_PHOTOS.glob("*.JPG"))[:5]:
        (scene / "photos" / path.name).write_bytes(path.read_bytes())
    ingest.run(ingest.IngestParams(photos=scene / "photos", scene=scene, factors=(8,)))
    poses.run(poses.PosesParams(scene=scene, sfm_size=512, threads=2))
    out = RUNNER.invoke(app, ["export", str(scene)])
    assert out.exit_code == 0, out.output
    assert "points and 5 cameras" in out.output
    return scene


def test_the_points_ply_holds_the_sparse_model(exported):
    header = (exported / "exports" / "sparse_pc.ply").read_bytes().split(b"end_header\n")[0].decode()
    assert header.startswith("ply\nformat binary_little_endian 1.0") and "property uchar red" in header
    xyz, rgb = export.read_ply(exported / "exports" / "sparse_pc.ply")
    ref_xyz, ref_rgb = colmap.point_colors(exported / "colmap" / "sparse" / "0", exported / "images")
    assert f"element vertex {len(ref_xyz)}" in header and len(xyz) == len(ref_xyz) > 100
    assert np.allclose(xyz, ref_xyz, atol=1e-5) and np.array_equal(rgb, ref_rgb)
    assert rgb.std() > 5  # real colours of fern, not a constant


def test_nerfstudio_transforms_names_its_points_and_images(exported):
    folder = exported / "exports" / "nerfstudio"
    data = json.loads((folder / "transforms.json").read_text())
    assert (folder / data["ply_file_path"]).resolve() == (exported / "exports" / "sparse_pc.ply").resolve()
    t = read_transforms(folder / "transforms.json")
    assert all((folder / p).is_file() for p in t.file_paths) and len(t.file_paths) == 5
    # the points lie in front of the cameras of that file (same world): OpenGL cameras look down -z
    xyz, _ = export.read_ply(exported / "exports" / "sparse_pc.ply")
    c2w = t.c2w_gl[0]
    local = (xyz - c2w[:3, 3]) @ c2w[:3, :3]
    assert (local[:, 2] < 0).mean() > 0.95


def test_the_colmap_folder_is_undistorted_pinhole_as_3dgs_reads_it(exported):
    folder = exported / "exports" / "colmap"
    rec = pycolmap.Reconstruction(folder / "sparse" / "0")
    assert {c.model_name for c in rec.cameras.values()} == {"PINHOLE"}  # graphdeco's loader refuses SIMPLE_RADIAL
    assert rec.num_reg_images() == 5 and rec.num_points3D() > 100
    for image in rec.images.values():
        cam = rec.cameras[image.camera_id]
        with Image.open(folder / "images" / image.name) as img:
            assert img.size == (cam.width, cam.height)
    assert not (folder / "stereo").exists()


def test_instant_ngp_transforms_fit_its_cube(exported):
    data = json.loads((exported / "exports" / "instant-ngp" / "transforms.json").read_text())
    for key in ("fl_x", "fl_y", "cx", "cy", "w", "h", "aabb_scale", "frames"):
        assert key in data, key
    assert data["aabb_scale"] in (1, 2, 4, 8, 16, 32, 64, 128)
    transform = np.asarray(data["nerfpipe_transform"])
    xyz, _ = export.read_ply(exported / "exports" / "sparse_pc.ply")
    moved = xyz @ transform[:3, :3].T + transform[:3, 3]
    inside = (np.abs(moved).max(axis=1) <= export.NGP_HALF_EXTENT + 1e-6).mean()
    assert inside >= export.NGP_POINT_QUANTILE - 0.01  # 98% in instant-ngp's unit cube
    centres = np.array([f["transform_matrix"] for f in data["frames"]])[:, :3, 3]
    reach = np.abs(np.concatenate([centres, moved])).max() / export.NGP_HALF_EXTENT
    assert reach <= data["aabb_scale"]  # nothing clipped by the box
    rot = np.array([f["transform_matrix"] for f in data["frames"]])[:, :3, :3]
    assert np.allclose(np.einsum("nji,njk->nik", rot, rot), np.eye(3), atol=1e-6)
    folder = exported / "exports" / "instant-ngp"
    assert all((folder / f["file_path"]).is_file() for f in data["frames"])


def test_export_again_is_up_to_date(exported):
    out = RUNNER.invoke(app, ["export", str(exported)])
    assert out.exit_code == 0 and "up to date" in out.output


def test_a_colmap_model_folder_trains_without_sfm(exported, tmp_path):
    """sparse/0 + images/, as published datasets ship them: trained as it is (here: the model of the scene
    above, SIMPLE_RADIAL, copied into a folder of its own), its cameras read by parameter names."""
    from conftest import TINY_NERF

    from nerfpipe.stages import colmap_source
    from nerfpipe.stages import train as train_stage

    folder = tmp_path / "published"
    (folder / "sparse").mkdir(parents=True)
    shutil.copytree(exported / "colmap" / "sparse" / "0", folder / "sparse" / "0")
    shutil.copytree(exported / "images", folder / "images")
    assert colmap_source.is_colmap_folder(folder)
    out = train_stage.run(train_stage.TrainParams(scene=folder, recipe="llff", device="cpu", evaluate=False, overrides=(
        *TINY_NERF, "iters=3", "data.factor=8", "training.batch_rays=64")))
    assert out.train.result["steps"] == 3 and out.train.result["source"] == "transforms"
    mine, theirs = read_transforms(folder / "transforms.json"), read_transforms(exported / "transforms.json")
    assert mine.file_paths == theirs.file_paths  # images/<name>, sorted
    assert np.allclose(mine.c2w_gl, theirs.c2w_gl, atol=1e-9)  # the same world as the poses stage's
    a, b = mine.cameras[0], theirs.cameras[0]
    assert (a.fl_x, a.cx, a.cy, a.w, a.h) == pytest.approx((b.fl_x, b.cx, b.cy, b.w, b.h)) and a.k1 == pytest.approx(b.k1)
    assert a.k1 != 0  # SIMPLE_RADIAL's k read by name: the undistortion of the transforms path handles it
    poses_bounds = np.load(exported / "poses_bounds.npy")[:, 15:]
    assert np.allclose(mine.bounds, poses_bounds, rtol=1e-6)  # near/far as the poses stage computes them
    # a user's own transforms.json is theirs: never replaced, and then it is the source
    (folder / ".nerfpipe" / "import-colmap.json").unlink()
    assert not colmap_source.is_colmap_folder(folder)
