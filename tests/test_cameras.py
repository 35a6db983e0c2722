"""Camera conventions: hand-made cameras, a round trip for every conversion pair, transforms.json,
the dataset authors' poses_bounds file, and the alignment of two camera sets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nerfpipe.cameras import conventions as cv
from nerfpipe.cameras import formats
from nerfpipe.cameras import similarity


def _rotation(rng: np.random.Generator, shape=()) -> np.ndarray:
    """Random rotations (*shape, 3, 3) from QR of Gaussian matrices, det +1."""
    q, r = np.linalg.qr(rng.normal(size=shape + (3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]
    det = np.linalg.det(q)
    q[..., :, 0] *= det[..., None]
    return q


def _w2c(rng: np.random.Generator, shape=()) -> np.ndarray:
    """Random COLMAP world-to-camera (*shape, 3, 4)."""
    return np.concatenate([_rotation(rng, shape), rng.normal(size=shape + (3, 1)) * 3], axis=-1)


# A hand-made camera: centre (1, 2, 3), looking along world +x, image right = world -y, image down = world -z.
RIGHT, DOWN, FORWARD, CENTRE = np.array([0, -1, 0.0]), np.array([0, 0, -1.0]), np.array([1, 0, 0.0]), np.array([1, 2, 3.0])
C2W_CV = np.stack([RIGHT, DOWN, FORWARD, CENTRE], axis=1)  # (3, 4) columns right, down, forward, centre
W2C_CV = np.concatenate([C2W_CV[:, :3].T, -C2W_CV[:, :3].T @ CENTRE[:, None]], axis=1)


def test_hand_made_camera_in_every_convention():
    # COLMAP sees the world point one unit in front of the camera at camera z = +1.
    ahead = CENTRE + FORWARD
    assert np.allclose(W2C_CV[:, :3] @ ahead + W2C_CV[:, 3], [0, 0, 1])
    # LLFF columns: down, right, backwards, centre.
    expected_llff = np.stack([DOWN, RIGHT, -FORWARD, CENTRE], axis=1)
    assert np.allclose(cv.llff_from_colmap(W2C_CV), expected_llff)
    # OpenGL columns: right, up, backwards, centre.
    expected_gl = np.stack([RIGHT, -DOWN, -FORWARD, CENTRE], axis=1)
    assert np.allclose(cv.gl_from_llff(expected_llff), expected_gl)
    assert np.allclose(cv.gl_from_colmap(W2C_CV), expected_gl)
    # In the OpenGL camera the point ahead is at z = -1.
    w2c_gl = cv.invert_rigid(expected_gl)
    assert np.allclose(w2c_gl[:, :3] @ ahead + w2c_gl[:, 3], [0, 0, -1])


def test_identity_colmap_camera_gives_the_llff_axis_order():
    llff = cv.llff_from_colmap(np.eye(4)[:3])
    assert np.allclose(llff, [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, -1, 0]])


@pytest.mark.parametrize("shape", [(), (5,), (2, 3)])
def test_round_trip_colmap_llff(shape):
    w2c = _w2c(np.random.default_rng(1), shape)
    llff = cv.llff_from_colmap(w2c)
    assert llff.shape == shape + (3, 4)
    assert np.allclose(cv.colmap_from_llff(llff), w2c)
    assert np.allclose(cv.llff_from_colmap(cv.colmap_from_llff(llff)), llff)


@pytest.mark.parametrize("shape", [(), (5,), (2, 3)])
def test_round_trip_llff_gl(shape):
    llff = cv.llff_from_colmap(_w2c(np.random.default_rng(2), shape))
    gl = cv.gl_from_llff(llff)
    assert np.allclose(cv.llff_from_gl(gl), llff)
    assert np.allclose(cv.gl_from_llff(cv.llff_from_gl(gl)), gl)


@pytest.mark.parametrize("shape", [(), (5,), (2, 3)])
def test_round_trip_colmap_gl_and_it_commutes_with_llff(shape):
    w2c = _w2c(np.random.default_rng(3), shape)
    gl = cv.gl_from_colmap(w2c)
    assert np.allclose(cv.colmap_from_gl(gl), w2c)
    assert np.allclose(cv.colmap_from_gl(cv.to_homogeneous(gl)), w2c)  # 4x4 input too
    assert np.allclose(gl, cv.gl_from_llff(cv.llff_from_colmap(w2c)))


def test_round_trip_invert_rigid_and_homogeneous():
    w2c = _w2c(np.random.default_rng(4), (7,))
    assert np.allclose(cv.invert_rigid(cv.invert_rigid(w2c)), w2c)
    prod = cv.to_homogeneous(w2c) @ cv.to_homogeneous(cv.invert_rigid(w2c))
    assert np.allclose(prod, np.broadcast_to(np.eye(4), (7, 4, 4)))


def test_llff_pose_with_hwf_is_accepted_and_dropped():
    llff = cv.llff_from_colmap(_w2c(np.random.default_rng(5), (4,)))
    with_hwf = formats.with_hwf(llff, [3024, 4032, 3260.5])
    assert with_hwf.shape == (4, 3, 5)
    assert np.allclose(with_hwf[:, :, 4], [3024, 4032, 3260.5])
    assert np.allclose(cv.gl_from_llff(with_hwf), cv.gl_from_llff(llff))
    assert np.allclose(cv.colmap_from_llff(with_hwf), cv.colmap_from_llff(llff))


def test_round_trip_poses_bounds_file(tmp_path):
    rng = np.random.default_rng(6)
    poses = formats.with_hwf(cv.llff_from_colmap(_w2c(rng, (3,))), np.array([[10, 20, 30], [10, 20, 31], [10, 20, 32.0]]))
    bounds = np.array([[1, 10], [2, 20], [3, 30.0]])
    formats.write_poses_bounds(tmp_path / "pb.npy", poses, bounds)
    arr = np.load(tmp_path / "pb.npy")
    assert arr.shape == (3, 17) and arr.dtype == np.float64
    assert np.allclose(arr[1, :15].reshape(3, 5), poses[1]) and np.allclose(arr[:, 15:], bounds)
    back, back_bounds = formats.read_poses_bounds(tmp_path / "pb.npy")
    assert np.allclose(back, poses) and np.allclose(back_bounds, bounds)
    np.save(tmp_path / "bad.npy", np.zeros((3, 15)))
    with pytest.raises(ValueError, match=r"not \(N, 17\)"):
        formats.read_poses_bounds(tmp_path / "bad.npy")


def test_reference_poses_bounds_read_back(fern_dir):
    """The LLFF authors' own file for fern reads as 20 proper forward-facing cameras of 4032x3024 photos."""
    poses, bounds = formats.read_poses_bounds(fern_dir / "poses_bounds.reference.npy")
    assert poses.shape == (20, 3, 5) and bounds.shape == (20, 2)
    assert np.allclose(poses[:, :, 4], [3024, 4032, 3260.52633288])
    rot = poses[:, :, :3]
    assert np.allclose(rot @ np.swapaxes(rot, 1, 2), np.eye(3), atol=1e-6)
    assert np.allclose(np.linalg.det(rot), 1.0, atol=1e-6)
    assert np.all(bounds[:, 0] > 0) and np.all(bounds[:, 1] > bounds[:, 0])
    # Forward-facing: every camera looks within 15 degrees of the mean viewing direction (-backwards).
    forward = -poses[:, :, 2]
    mean = forward.mean(0) / np.linalg.norm(forward.mean(0))
    assert np.degrees(np.arccos(np.clip(forward @ mean, -1, 1))).max() < 15
    # The LLFF -> COLMAP -> LLFF round trip keeps the file's poses exactly.
    assert np.allclose(cv.llff_from_colmap(cv.colmap_from_llff(poses)), poses[:, :, :4])


def test_round_trip_transforms_json_shared_camera(tmp_path):
    rng = np.random.default_rng(7)
    c2w = cv.gl_from_colmap(_w2c(rng, (3,)))
    cam = formats.PinholeCamera(fl_x=3300.5, fl_y=3300.5, cx=2016, cy=1512, w=4032, h=3024, k1=0.02)
    names = ["images/a.jpg", "images/b.jpg", "images/c.jpg"]
    formats.write_transforms(tmp_path / "transforms.json", names, c2w, cam, extra={"applied_transform": np.eye(4)[:3].tolist()})
    data = json.loads((tmp_path / "transforms.json").read_text())
    assert data["camera_model"] == "OPENCV"
    assert data["fl_x"] == 3300.5 and data["w"] == 4032 and data["k2"] == 0.0
    assert data["frames"][1]["file_path"] == "images/b.jpg"
    assert np.allclose(data["frames"][2]["transform_matrix"][3], [0, 0, 0, 1])
    back = formats.read_transforms(tmp_path / "transforms.json")
    assert back.file_paths == names
    assert np.allclose(back.c2w_gl[:, :3], c2w)
    assert back.cameras == [cam, cam, cam]
    assert back.extra["applied_transform"] == np.eye(4)[:3].tolist()


def test_round_trip_transforms_json_per_frame_cameras(tmp_path):
    c2w = cv.gl_from_colmap(_w2c(np.random.default_rng(8), (2,)))
    cams = [formats.PinholeCamera(100, 101, 50, 40, 100, 80), formats.PinholeCamera(200, 201, 49, 41, 100, 80, k1=0.1, p2=0.01)]
    formats.write_transforms(tmp_path / "t.json", ["x.png", "y.png"], c2w, cams)
    data = json.loads((tmp_path / "t.json").read_text())
    assert "fl_x" not in data and data["frames"][1]["fl_x"] == 200
    back = formats.read_transforms(tmp_path / "t.json")
    assert back.cameras == cams
    assert np.allclose(back.c2w_gl[:, :3], c2w)


def test_read_transforms_focal_from_camera_angle(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({
        "camera_angle_x": 2 * math.atan(0.5), "w": 800, "h": 600,
        "frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}],
    }))
    cam = formats.read_transforms(tmp_path / "t.json").cameras[0]
    assert cam.fl_x == pytest.approx(800.0) and cam.fl_y == pytest.approx(800.0)
    assert (cam.cx, cam.cy) == (400.0, 300.0)
    (tmp_path / "no_size.json").write_text(json.dumps({
        "camera_angle_x": 0.7, "frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}],
    }))
    with pytest.raises(ValueError, match="no image size"):
        formats.read_transforms(tmp_path / "no_size.json")


def test_read_instant_ngp_reference_transforms(fox_dir):
    """instant-ngp's own COLMAP output for the fox video: 67 frames, one OPENCV-style camera, 4x4 poses."""
    t = formats.read_transforms(fox_dir / "transforms.reference.json")
    assert len(t.file_paths) == 67 and t.file_paths[0] == "images/0001.jpg"
    cam = t.cameras[0]
    assert (cam.w, cam.h) == (1080, 1920)
    assert cam.fl_x == pytest.approx(1375.52) and cam.k2 == pytest.approx(-0.0805099)
    rot = t.c2w_gl[:, :3, :3]
    assert np.allclose(rot @ np.swapaxes(rot, 1, 2), np.eye(3), atol=1e-5)
    assert t.extra["aabb_scale"] == 4
    # Its cameras converted to COLMAP and back are unchanged.
    assert np.allclose(cv.gl_from_colmap(cv.colmap_from_gl(t.c2w_gl)), t.c2w_gl[:, :3])


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(9)
    src = rng.normal(size=(20, 3))
    src[:, 2] *= 0.01  # nearly planar, like fern's cameras
    rot = _rotation(rng)
    dst = 2.5 * src @ rot.T + np.array([1.0, -2.0, 3.0])
    sim = similarity.umeyama(src, dst)
    assert sim.scale == pytest.approx(2.5)
    assert np.allclose(sim.rotation, rot) and np.allclose(sim.translation, [1, -2, 3])
    assert np.allclose(sim.apply(src), dst)
    rigid = similarity.umeyama(src, src @ rot.T, with_scale=False)
    assert rigid.scale == 1.0 and np.allclose(rigid.rotation, rot)


def test_best_rotation_and_angles():
    rng = np.random.default_rng(10)
    rots = _rotation(rng, (6,))
    g = _rotation(rng)
    assert np.allclose(similarity.best_rotation(rots, g @ rots), g)
    # 90 degrees about z, by hand.
    rz = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])
    assert similarity.rotation_angle_deg(rz, np.eye(3)) == pytest.approx(90.0)
    assert similarity.rotation_angle_deg(np.eye(3), np.eye(3)) == pytest.approx(0.0, abs=1e-6)


def _move(poses: np.ndarray, scale: float, rot: np.ndarray, t: np.ndarray) -> np.ndarray:
    """LLFF poses (N, 3, 5) in a world moved by x -> scale * rot @ x + t."""
    out = poses.copy()
    out[:, :, :3] = rot @ poses[:, :, :3]
    out[:, :, 3] = scale * poses[:, :, 3] @ rot.T + t
    return out


def test_compare_cameras_is_zero_for_the_same_cameras_in_another_frame(fern_dir):
    ref, ref_bounds = formats.read_poses_bounds(fern_dir / "poses_bounds.reference.npy")
    rng = np.random.default_rng(11)
    moved = _move(ref, 0.3, _rotation(rng), rng.normal(size=3))
    c = similarity.compare_cameras(moved, ref, ref_bounds * 0.3, ref_bounds)
    assert c.scale == pytest.approx(1 / 0.3)
    assert c.centre_error_max < 1e-9 and c.rotation_error_max_deg < 1e-5 and c.rotation_error_sim3_mean_deg < 1e-5
    assert c.focal_error == 0 and c.near_error_mean < 1e-9 and c.far_error_mean < 1e-9


def test_compare_cameras_measures_a_known_error(fern_dir):
    """One of 20 cameras turned 2 degrees in the world frame: the best global rotation takes 2/20 of it,
    so that camera is off by 1.9 degrees and the 19 others by 0.1 (mean 0.19). A 10% longer focal and
    5% larger bounds read as such."""
    ref, ref_bounds = formats.read_poses_bounds(fern_dir / "poses_bounds.reference.npy")
    a = math.radians(2.0)
    turn = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    poses = ref.copy()
    poses[0, :, :3] = turn @ ref[0, :, :3]
    poses[:, 2, 4] *= 1.1
    c = similarity.compare_cameras(poses, ref, ref_bounds * 1.05, ref_bounds)
    assert c.rotation_error_max_deg == pytest.approx(1.9, abs=0.01)
    assert c.rotation_error_mean_deg == pytest.approx(0.19, abs=0.01)
    assert c.centre_error_max < 1e-9
    assert c.focal_error == pytest.approx(0.1)
    assert c.near_error_mean == pytest.approx(0.05) and c.far_error_mean == pytest.approx(0.05)
    with pytest.raises(ValueError, match="19 cameras against 20"):
        similarity.compare_cameras(poses[1:], ref)


def _sphere_views(centre, radius, n_views=12, size=64, focal=80.0):
    """Alpha (N, H, W) of a sphere seen from cameras on a ring and above it, and their c2w (N, 3, 4)."""
    import torch

    from nerfpipe.cameras.paths import pose_spherical
    from nerfpipe.cameras.rays import get_rays

    c2w = torch.stack([torch.from_numpy(pose_spherical(360.0 * k / n_views, -30.0 + 50.0 * (k % 2), 4.0)[:3]).float()
                       for k in range(n_views)])
    alpha = []
    for pose in c2w:
        o, d = get_rays(size, size, focal, pose)
        d = d / d.norm(dim=-1, keepdim=True)
        oc = o - torch.tensor(centre)
        b = (oc * d).sum(-1)
        alpha.append(((b * b - (oc * oc).sum(-1) + radius * radius) > 0).float())  # the ray meets the sphere
    return torch.stack(alpha), c2w


def test_silhouette_box_holds_a_sphere_and_little_more():
    from nerfpipe.cameras.bounds import visual_hull

    centre, radius = (0.2, -0.1, 0.3), 0.5
    alpha, c2w = _sphere_views(centre, radius)
    lo, hi = visual_hull(alpha, c2w, 80.0, ((-1.5,) * 3, (1.5,) * 3)).bounds()
    for axis in range(3):
        assert lo[axis] <= centre[axis] - radius and hi[axis] >= centre[axis] + radius  # nothing of it cut
        # The visual hull of 12 views bulges beyond the sphere (by 0.1-0.16 here), plus a cell (0.03) of
        # dilation and one of margin: within 0.2 of the sphere, against 0.8 or more for the 3 m box.
        assert lo[axis] >= centre[axis] - radius - 0.2 and hi[axis] <= centre[axis] + radius + 0.2
    # An empty silhouette keeps nothing: the whole box stays.
    assert visual_hull(alpha * 0, c2w, 80.0, ((-1.5,) * 3, (1.5,) * 3)).bounds() == ((-1.5,) * 3, (1.5,) * 3)


def test_an_object_on_white_carves_its_hull_from_its_masks_in_the_normalised_world():
    """An object cut out on white, loaded with its masks (silhouettes): the hull, carved from the training
    views in the normalised world, holds every ray through the object in the held-out views, and rules
    out most of the box of its sparse points. Without masks there is none."""
    import torch

    from nerfpipe.datasets.llff import llff_scene_data
    from nerfpipe.nerf.occupancy import query_cells

    centre, radius = (0.2, -0.1, 0.3), 0.5
    alpha, c2w = _sphere_views(centre, radius, n_views=16)
    rng = np.random.default_rng(0)
    points = rng.normal(size=(2000, 3))
    points = np.asarray(centre) + radius * points / np.linalg.norm(points, axis=1, keepdims=True)  # SfM points on it
    kwargs = dict(llffhold=4, ndc=False, spherify=True, bd_factor=0.75, white_background=True, source={},
                  object_points=points)
    images = np.ones((16, 64, 64, 3), np.float32)
    bounds = np.tile([[3.0, 5.0]], (16, 1))
    data = llff_scene_data([f"{i}.png" for i in range(16)], images, c2w.numpy(), bounds, 80.0,
                           silhouettes=alpha.numpy(), **kwargs)
    assert llff_scene_data([f"{i}.png" for i in range(16)], images, c2w.numpy(), bounds, 80.0, **kwargs).hull is None
    hull = data.hull
    lo, hi = torch.tensor(hull.lo), torch.tensor(hull.hi)
    assert (hull.lo, hull.hi) == data.scene_box.aabb  # carved over the scene box
    for i in data.i_test:  # views the carving never saw
        rays = data.image_rays(i)
        on_object = alpha[i].reshape(-1) > 0
        o, d = rays.origins[on_object], rays.directions[on_object]
        t = torch.linspace(float(data.near), float(data.far), 1024)
        x = (o[:, None] + t[None, :, None] * d[:, None] - (lo + hi) / 2) / ((hi - lo) / 2)
        kept = query_cells(hull.cells, x.reshape(-1, 3)).view(x.shape[:2]) & (x.abs() <= 1).all(-1)
        assert bool(kept.any(1).all())
    # The box of the points (their 2nd to 98th percentiles, widened by 15% of that on each side) is 1.25
    # times the sphere's, which fills 27% of it. The hull keeps the sphere, its bulge between the 12 training views
    # and a cell of dilation: 36%.
    assert 0.25 < float(hull.cells.float().mean()) < 0.45
