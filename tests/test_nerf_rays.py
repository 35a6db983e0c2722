"""Rays, NDC and the LLFF normalisation against the paper's formulas."""

import numpy as np
import pytest
import torch

from nerfpipe.cameras.normalize import (
    BD_FACTOR,
    Normalization,
    apply_to_points,
    apply_to_poses,
    average_pose,
    closest_point_to_axes,
    normalize_llff,
    undo_on_points,
)
from nerfpipe.cameras.rays import get_rays, ndc_point, ndc_rays, world_point


def test_get_rays_reference_pixel_convention():
    c2w = torch.eye(4)[:3]
    o, d = get_rays(4, 6, 2.0, c2w)
    assert o.shape == d.shape == (4, 6, 3)
    # pixel (i=0, j=0): ((0 - 3) / 2, -(0 - 2) / 2, -1)
    assert torch.allclose(d[0, 0], torch.tensor([-1.5, 1.0, -1.0]))
    assert torch.allclose(d[2, 3], torch.tensor([0.0, 0.0, -1.0]))


def test_ndc_matches_the_paper_formula():
    gen = torch.Generator().manual_seed(0)
    h, w, f, near = 30, 40, 35.0, 1.0
    o = torch.randn(50, 3, generator=gen) * 0.2
    d = torch.randn(50, 3, generator=gen) * 0.3 + torch.tensor([0.0, 0.0, -1.0])
    o_ndc, d_ndc = ndc_rays(h, w, f, near, o, d)
    # paper appendix C, with o first moved to z = -near
    t = -(near + o[:, 2]) / d[:, 2]
    on = o + t[:, None] * d
    ax, ay = -f / (w / 2), -f / (h / 2)
    assert torch.allclose(o_ndc[:, 0], ax * on[:, 0] / on[:, 2], atol=1e-5)
    assert torch.allclose(o_ndc[:, 2], torch.full((50,), -1.0), atol=1e-5)  # the near plane maps to z = -1
    assert torch.allclose(d_ndc[:, 1], ay * (d[:, 1] / d[:, 2] - on[:, 1] / on[:, 2]), atol=1e-5)
    assert torch.allclose(d_ndc[:, 2], -2 * near / on[:, 2], atol=1e-5)
    # a point at depth z on the ray projects to NDC z = 1 + 2 near / z; t = 1 reaches infinity (z = 1)
    s = 3.0
    p = on + s * d
    t_ndc = 1 - on[:, 2] / p[:, 2]
    q = o_ndc + t_ndc[:, None] * d_ndc
    assert torch.allclose(q[:, 2], 1 + 2 * near / p[:, 2], atol=1e-4)
    assert torch.allclose(q[:, 0], ax * p[:, 0] / p[:, 2], atol=1e-4)
    assert torch.allclose((o_ndc + d_ndc)[:, 2], torch.ones(50), atol=1e-5)


def test_ndc_points_round_trip_and_lie_on_the_ndc_rays():
    """world_point undoes ndc_point; the point at t along an NDC ray is the world point on the world ray
    that ndc_point maps there (what a depth found in NDC means in the world)."""
    gen = torch.Generator().manual_seed(1)
    h, w, f, near = 30, 40, 35.0, 1.0
    pts = torch.randn(40, 3, generator=gen, dtype=torch.float64) * 0.5 + torch.tensor([0.0, 0.0, -4.0], dtype=torch.float64)
    assert torch.allclose(world_point(h, w, f, near, ndc_point(h, w, f, near, pts)), pts, atol=1e-9)
    o = torch.randn(40, 3, generator=gen, dtype=torch.float64) * 0.2
    d = torch.randn(40, 3, generator=gen, dtype=torch.float64) * 0.2 + torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)
    o_ndc, d_ndc = ndc_rays(h, w, f, near, o, d)
    t = torch.rand(40, 1, generator=gen, dtype=torch.float64) * 0.9
    back = world_point(h, w, f, near, o_ndc + t * d_ndc)
    along = torch.linalg.cross(back - o, d)  # on the world ray: no component across it
    assert along.norm(dim=-1).max() < 1e-9 * back.norm(dim=-1).max() + 1e-9
    assert torch.allclose(ndc_point(h, w, f, near, back), o_ndc + t * d_ndc, atol=1e-9)


def test_undo_on_points_inverts_the_normalisation():
    poses, bounds = _random_forward_cameras()
    c2w = poses  # any (N, 3, 4) rigid poses serve
    _, _, steps = normalize_llff(c2w, bounds, spherify=True)
    pts = np.random.default_rng(2).normal(size=(30, 3)) * 5
    moved = pts
    for step in steps:
        moved = apply_to_points(moved, step)
    assert np.allclose(undo_on_points(moved, steps), pts, atol=1e-9)
    # a camera centre goes where apply_to_poses puts it, and comes back
    centre = c2w[:, :3, 3]
    cams = c2w
    for step in steps:
        cams = apply_to_poses(cams, step)
    assert np.allclose(undo_on_points(cams[:, :3, 3], steps), centre, atol=1e-9)


def _random_forward_cameras(n=12, seed=0):
    rng = np.random.default_rng(seed)
    poses = []
    for _ in range(n):
        angle = rng.normal(0, 0.1, 3)
        cx, sx = np.cos(angle[0]), np.sin(angle[0])
        cy, sy = np.cos(angle[1]), np.sin(angle[1])
        rot = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]) @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        poses.append(np.concatenate([rot, (np.array([3.0, 1.0, 10.0]) + rng.normal(0, 0.5, 3))[:, None]], axis=1))
    return np.stack(poses), rng.uniform(4, 40, (n, 2))


def test_llff_normalisation_steps_are_recorded_and_reproducible():
    c2w, bounds = _random_forward_cameras()
    poses, bds, steps = normalize_llff(c2w, bounds)
    assert [s.name for s in steps] == ["rescale", "recenter"]
    assert bds.min() == pytest.approx(1.0 / BD_FACTOR)  # nearest bound lands at 1 / 0.75
    assert np.allclose(average_pose(poses), np.eye(4)[:3], atol=1e-9)  # recentred: the average camera is the identity
    # replaying the recorded steps (as plain data) maps the input cameras and points the same way
    replay = c2w
    for s in steps:
        replay = apply_to_poses(replay, Normalization.from_dict(s.to_dict()))
    assert np.allclose(replay, poses)
    point = c2w[0, :, 3]
    mapped = point
    for s in steps:
        mapped = apply_to_points(mapped, s)
    assert np.allclose(mapped, poses[0, :, 3])


def test_spherify_puts_cameras_on_the_unit_sphere_around_their_focus():
    rng = np.random.default_rng(1)
    angles = rng.uniform(0, 2 * np.pi, 16)
    poses = []
    centre = np.array([2.0, -1.0, 0.5])
    for a in angles:  # cameras on a circle of radius 5 around `centre`, looking at it (backwards axis points away)
        pos = centre + 5 * np.array([np.cos(a), np.sin(a), 0.3])
        back = (pos - centre) / np.linalg.norm(pos - centre)
        right = np.cross([0, 0, 1.0], back)
        right /= np.linalg.norm(right)
        up = np.cross(back, right)
        poses.append(np.stack([right, up, back, pos], axis=1))
    poses = np.stack(poses)
    assert np.allclose(closest_point_to_axes(poses[:, :, 3], poses[:, :, 2]), centre, atol=1e-6)
    out, bds, steps = normalize_llff(poses, np.full((16, 2), [3.0, 7.0]), bd_factor=None, recenter=False, spherify=True)
    radius = np.linalg.norm(out[:, :, 3], axis=-1)
    assert np.sqrt(np.mean(radius**2)) == pytest.approx(1.0)
    assert np.allclose(bds, np.full((16, 2), [3.0, 7.0]) / np.sqrt(25 * 1.09), atol=1e-6)
