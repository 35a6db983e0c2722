"""Scene-type decision on real captures: fern (forward), fox (wide arc), lego (360)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nerfpipe.cameras import gl_from_llff, read_poses_bounds
from nerfpipe.cameras.paths import Band, Ring, arc_path, azimuths, covered_arc
from nerfpipe.cameras.scene_type import classify


def _transforms_c2w(path) -> np.ndarray:
    return np.array([f["transform_matrix"] for f in json.loads(path.read_text())["frames"]], dtype=float)[:, :3]


def test_fern_is_forward_facing(fern_dir):
    poses, _ = read_poses_bounds(fern_dir / "poses_bounds.reference.npy")
    t = classify(gl_from_llff(poses))
    assert t.kind == "forward" and t.max_view_angle_deg < 15
    assert "forward-facing" in t.reason


def test_fox_is_a_wide_arc_and_lego_goes_round(fox_dir, lego_dir):
    fox = classify(_transforms_c2w(fox_dir / "transforms.reference.json"))
    assert fox.kind == "arc" and 45 < fox.max_view_angle_deg < 60 and 60 < fox.azimuth_deg < 150
    lego = classify(_transforms_c2w(lego_dir / "transforms_train.json"))
    assert lego.kind == "360" and lego.azimuth_deg > 300


def test_decision_does_not_depend_on_world_frame_or_scale(fox_dir):
    c2w = _transforms_c2w(fox_dir / "transforms.reference.json")
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    moved = np.concatenate([q @ c2w[:, :, :3], (3.0 * (q @ c2w[:, :, 3:]) + np.array([[1.0], [-2.0], [5.0]]))], axis=2)
    a, b = classify(c2w), classify(moved)
    assert a.kind == b.kind
    assert a.max_view_angle_deg == pytest.approx(b.max_view_angle_deg, abs=0.05)
    assert a.azimuth_deg == pytest.approx(b.azimuth_deg, abs=0.5)


def test_covered_arc_wraps_around_zero():
    start, span = covered_arc(np.deg2rad([350.0, 10.0, 30.0]))
    assert np.rad2deg(start) == pytest.approx(350.0) and np.rad2deg(span) == pytest.approx(40.0)


def test_arc_path_stays_on_the_photographed_side(fox_dir):
    c2w = _transforms_c2w(fox_dir / "transforms.reference.json")
    from nerfpipe.cameras.normalize import closest_point_to_axes

    c2w[:, :3, 3] -= closest_point_to_axes(c2w[:, :3, 3], c2w[:, :3, 2])  # the look-at point at the origin
    path = arc_path(c2w, n_frames=60)
    start, span = covered_arc(azimuths(c2w))
    ours = np.mod(azimuths(np.concatenate([c2w[:1], path])) [1:] - start, 2 * np.pi)
    assert ours.max() <= span + 0.01  # never beyond the covered arc (0.6 degrees: the up axis is re-estimated)
    band = Band.of(c2w)  # the video's three sweeps at different heights: the middle one, with the most photos
    assert 20 <= len(band.azimuth) <= 40 and np.ptp(band.height) < 0.25 * band.radius.mean()
    assert np.ptp(ours) > 0.95 * covered_arc(band.azimuth)[1]  # and it does sweep the band's arc
    for pose in path:  # every frame looks at the origin
        assert np.allclose(normalize_rows(-pose[:, 2]), normalize_rows(-pose[:, 3]), atol=1e-9)
    # every frame near a photo: at most 0.12 of the radius from a camera, 0.03 at the median (at the
    # cameras' mean height and distance, between the sweeps: 0.39 and 0.31)
    gap = np.linalg.norm(path[:, None, :3, 3] - c2w[None, :, :3, 3], axis=-1).min(1) / Ring.of(c2w).radius
    assert gap.max() < 0.15 and np.median(gap) < 0.05, gap


def normalize_rows(v):
    return v / np.linalg.norm(v)


def _llff_scene(tmp_path, c2w_gl: np.ndarray):
    from nerfpipe.cameras import llff_from_gl, write_poses_bounds
    from nerfpipe.stages.sources import Source

    hwf = np.broadcast_to(np.array([[368.0], [496.0], [400.0]]), (len(c2w_gl), 3, 1))
    write_poses_bounds(tmp_path / "poses_bounds.npy", np.concatenate([llff_from_gl(c2w_gl[:, :3]), hwf], axis=2),
                       np.tile([[1.0, 10.0]], (len(c2w_gl), 1)))
    return Source("llff", (), (), None)


def test_train_stage_applies_the_decision_unless_the_user_set_it(tmp_path, fern_dir, fox_dir):
    from nerfpipe.progress import RecordingReporter
    from nerfpipe.stages.train import scene_type_data

    fox = _llff_scene(tmp_path, _transforms_c2w(fox_dir / "transforms.reference.json"))
    rep = RecordingReporter()
    assert scene_type_data(tmp_path, fox, (), None, rep) == ("arc", {"ndc": False, "spherify": True})
    assert any("Scene type: arc (a wide arc" in line for line in rep.infos)
    assert scene_type_data(tmp_path, fox, (), "forward", rep) == ("forward", {"ndc": True, "spherify": False})
    assert scene_type_data(tmp_path, fox, ("data.ndc=true",), None, rep) == ("arc", {})  # the user's choice stands

    poses, _ = read_poses_bounds(fern_dir / "poses_bounds.reference.npy")
    fern = _llff_scene(tmp_path, gl_from_llff(poses))
    assert scene_type_data(tmp_path, fern, (), None, rep) == ("forward", {"ndc": True, "spherify": False})
