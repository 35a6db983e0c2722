"""Video writing and camera paths: decoded back, checked against the paper's constants."""

from __future__ import annotations

import numpy as np

from nerfpipe.cameras import paths
from nerfpipe.video import VideoWriter, colorize_depth, depth_range, read_video


def test_video_decodes_with_frame_count_and_odd_size(tmp_path):
    frames = [np.full((37, 51, 3), 10 * i, np.uint8) for i in range(12)]
    with VideoWriter(tmp_path / "v.mp4", fps=24) as v:
        for f in frames:
            v.write(f)
    back, meta = read_video(tmp_path / "v.mp4")
    assert len(back) == 12
    assert back[0].shape == (38, 52, 3)  # padded to even sides for yuv420p
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    assert abs(meta["fps"] - 24) < 1e-6
    assert abs(int(back[5][:37, :51].mean()) - 50) <= 2


def test_depth_near_is_bright():
    depth = np.tile(np.linspace(1.0, 5.0, 64), (8, 1))
    near, far = depth_range([depth])
    rgb = colorize_depth(depth, near, far).astype(int)
    assert rgb[:, 0].sum() > rgb[:, -1].sum() + 300  # left (near) brighter than right (far)


def _look_dir(c2w: np.ndarray) -> np.ndarray:
    return -c2w[:, 2]


def test_blender_turntable_is_the_papers():
    p = paths.blender_path()
    assert p.shape == (40, 3, 4)
    centres = p[:, :, 3]
    assert np.allclose(np.linalg.norm(centres, axis=1), 4.0)
    assert np.allclose(centres[:, 2], 4.0 * np.sin(np.deg2rad(30)))  # 30 degrees above the object
    for c2w in p:
        assert np.allclose(_look_dir(c2w), -c2w[:, 3] / 4.0, atol=1e-9)  # looks at the origin
        assert np.allclose(c2w[:, :3].T @ c2w[:, :3], np.eye(3), atol=1e-9)


def test_spiral_of_a_camera_grid_circles_the_average_pose_and_looks_at_the_focus():
    # Nine forward-facing cameras on a plane, looking down -z, scene between depth 2 and 10.
    xs, ys = np.meshgrid([-0.5, 0, 0.5], [-0.3, 0, 0.3])
    c2w = np.stack([np.concatenate([np.eye(3), [[x], [y], [0.0]]], axis=1) for x, y in zip(xs.ravel(), ys.ravel())])
    bounds = np.tile([2.0, 10.0], (9, 1))
    spiral = paths.spiral_path(c2w, bounds)
    assert spiral.shape == (paths.SPIRAL_FRAMES, 3, 4)
    focus = paths.focus_depth(bounds)
    assert np.isclose(focus, 1.0 / (0.25 / 1.8 + 0.75 / 50.0))
    radii = np.abs(spiral[:, :, 3]).max(axis=0)
    assert np.allclose(radii[:2], [0.5, 0.3], rtol=0.02)  # 90th percentile of |offsets|
    assert np.isclose(radii[2], 0.0)  # the cameras lie in a plane: no motion in depth
    for pose in spiral:
        to_focus = np.array([0.0, 0.0, -focus]) - pose[:, 3]
        cos = _look_dir(pose) @ to_focus / np.linalg.norm(to_focus)
        assert cos > 0.9999


def test_circle_path_keeps_height_and_radius():
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    c2w = []
    for a in angles:
        centre = np.array([2 * np.cos(a), 0.5, 2 * np.sin(a)])
        c2w.append(paths.look_at(centre - [0, 0.5, 0], np.array([0, 1.0, 0]), centre))
    c2w = np.stack(c2w)
    circle = paths.circle_path(c2w, n_frames=30)
    assert circle.shape == (30, 3, 4)
    assert np.allclose(circle[:, 1, 3], 0.5)
    assert np.allclose(np.linalg.norm(circle[:, [0, 2], 3], axis=1), 2.0)


def test_circle_follows_a_tilted_sweep_and_the_sweep_with_most_photos():
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)

    def ring(height, radius, tilt=0.0):  # cameras at (r cos a, height + tilt sin a, r sin a), up +y
        centres = np.stack([radius * np.cos(angles), height + tilt * np.sin(angles), radius * np.sin(angles)], 1)
        return np.stack([paths.look_at(c - [0, c[1], 0], np.array([0, 1.0, 0]), c) for c in centres])

    tilted = ring(0.5, 2.0, tilt=0.4)
    circle = paths.circle_path(tilted, n_frames=24)  # the frames are the cameras' azimuths
    gap = np.linalg.norm(circle[:, None, :, 3] - tilted[None, :, :, 3], axis=-1).min(1)
    assert gap.max() < 0.08  # follows the tilt (at the mean height: up to 0.4 off)
    two = np.concatenate([ring(0.2, 2.0)[::2], ring(1.4, 1.8)])  # 12 photos low, 24 high
    circle = paths.circle_path(two, n_frames=30)
    assert np.allclose(circle[:, 1, 3], 1.4) and np.allclose(np.linalg.norm(circle[:, [0, 2], 3], axis=1), 1.8)


def test_render_path_follows_the_scene_type_recorded_with_the_run():
    from nerfpipe.stages.render import camera_path

    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    c2w = np.stack([paths.look_at(np.array([2 * np.cos(a), 0.0, 2 * np.sin(a)]) * -1.0, np.array([0, 1.0, 0]),
                                  np.array([2 * np.cos(a), 0.0, 2 * np.sin(a)])) for a in angles])
    meta = {"kind": "llff", "ndc": False, "c2w": c2w.tolist()}
    assert camera_path(meta, 8)[0] == "circle"  # an older run without a recorded type: decided from the cameras
    assert camera_path({**meta, "scene_type": "360"}, 8)[0] == "circle"
    kind, path = camera_path({**meta, "scene_type": "arc"}, 8)  # --scene-type arc at training: an arc, as asked
    assert kind == "arc" and path.shape == (8, 3, 4)
