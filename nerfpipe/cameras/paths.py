"""Camera paths for the fly-through video, in the normalised space the model was trained in.

All poses here are OpenGL camera-to-world ``c2w_gl`` (N, 3, 4): columns right, up, backwards,
centre. The constants are the ones of the NeRF paper's code (nerf-pytorch ``load_llff.py`` and
``load_blender.py``), named.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nerfpipe.cameras.normalize import average_pose, look_at, normalize

# LLFF spiral (forward-facing scenes)
SPIRAL_FRAMES = 120
SPIRAL_ROTATIONS = 2
SPIRAL_ZRATE = 0.5
"""How fast the camera moves in and out along the viewing axis, relative to the spiral's turns."""
SPIRAL_RADIUS_PERCENTILE = 90
"""Spiral radii: this percentile of the absolute camera offsets from the mean pose, per axis."""
CLOSE_DEPTH_STRETCH = 0.9
"""Near focus bound: this times the smallest scene depth."""
INF_DEPTH_STRETCH = 5.0
"""Far focus bound: this times the largest scene depth."""
FOCUS_DISPARITY_WEIGHT = 0.75
"""Focus depth: weighted mean in disparity, 0.25 on the near bound and 0.75 on the far bound."""

# Blender synthetic scenes: the paper's turntable
BLENDER_FRAMES = 40
BLENDER_ELEVATION_DEG = -30.0
BLENDER_RADIUS = 4.0

# 360-degree captures and wide arcs
CIRCLE_FRAMES = 120
BAND_WIDTH = 0.3
"""The circle or arc follows the band of cameras whose height and distance from the up axis lie within this
fraction of the cameras' mean distance of those of the camera with the most such neighbours: a capture of
several sweeps at different heights (fox: three, 0.56 to 0.97 apart) gets the sweep with the most photos,
not the empty middle between the sweeps (0.16 to 0.30 from every camera)."""
BAND_SMOOTHING_DEG = 15.0
"""Along the path, height and distance are the band's cameras' weighted by a Gaussian of this width in
azimuth: a sweep whose circle is tilted against the cameras' mean up (head: 0.33 to 0.52 high) is followed,
not flattened."""


def focus_depth(bounds: np.ndarray) -> float:
    """Depth the spiral looks at, from the scene's (N, 2) near/far bounds."""
    close = bounds.min() * CLOSE_DEPTH_STRETCH
    far = bounds.max() * INF_DEPTH_STRETCH
    w = FOCUS_DISPARITY_WEIGHT
    return float(1.0 / ((1.0 - w) / close + w / far))


def spiral_path(
    c2w_gl: np.ndarray,
    bounds: np.ndarray,
    n_frames: int = SPIRAL_FRAMES,
    rotations: float = SPIRAL_ROTATIONS,
    zrate: float = SPIRAL_ZRATE,
) -> np.ndarray:
    """The LLFF spiral around the average pose of (N, 3, 4) training cameras -> (n_frames, 3, 4).

    Radii are taken in the average camera's frame (for recentred poses, as in the paper's code, that
    frame is the world's).
    """
    avg = average_pose(c2w_gl)
    up = normalize(c2w_gl[:, :3, 1].sum(0))
    focal = focus_depth(bounds)
    offsets = (c2w_gl[:, :3, 3] - avg[:, 3]) @ avg[:, :3]
    radii = np.percentile(np.abs(offsets), SPIRAL_RADIUS_PERCENTILE, axis=0)
    radii = np.append(radii, 1.0)
    out = []
    for theta in np.linspace(0.0, 2.0 * np.pi * rotations, n_frames + 1)[:-1]:
        offset = np.array([np.cos(theta), -np.sin(theta), -np.sin(theta * zrate), 1.0]) * radii
        centre = avg @ offset
        target = avg @ np.array([0.0, 0.0, -focal, 1.0])
        out.append(look_at(centre - target, up, centre))
    return np.stack(out)


def pose_spherical(theta_deg: float, phi_deg: float, radius: float) -> np.ndarray:
    """(3, 4) camera on a sphere looking at the origin, Blender's z-up world (the paper's turntable)."""
    th, ph = np.deg2rad(theta_deg), np.deg2rad(phi_deg)
    trans = np.eye(4)
    trans[2, 3] = radius
    rot_phi = np.array([[1, 0, 0, 0], [0, np.cos(ph), -np.sin(ph), 0], [0, np.sin(ph), np.cos(ph), 0], [0, 0, 0, 1]])
    rot_theta = np.array([[np.cos(th), 0, -np.sin(th), 0], [0, 1, 0, 0], [np.sin(th), 0, np.cos(th), 0], [0, 0, 0, 1]])
    swap = np.array([[-1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)
    return (swap @ rot_theta @ rot_phi @ trans)[:3]


def blender_path(n_frames: int = BLENDER_FRAMES) -> np.ndarray:
    """The paper's 40-frame circle at elevation -30 degrees, radius 4 -> (n_frames, 3, 4)."""
    angles = np.linspace(-180.0, 180.0, n_frames + 1)[:-1]
    return np.stack([pose_spherical(a, BLENDER_ELEVATION_DEG, BLENDER_RADIUS) for a in angles])


@dataclass(frozen=True)
class Ring:
    """The circle the cameras of a capture around a thing lie near (in the frame of spherified poses)."""

    up: np.ndarray
    """(3,) the cameras' mean up axis."""
    height: float
    """Mean height of the camera centres along ``up``."""
    radius: float
    """Mean distance of the camera centres from the ``up`` axis."""
    a: np.ndarray
    """(3,) unit vector of the horizontal plane towards the first camera."""
    b: np.ndarray
    """(3,) unit vector completing the plane (up x a): azimuths grow from a towards b."""

    @staticmethod
    def of(c2w_gl: np.ndarray) -> "Ring":
        centres = c2w_gl[:, :3, 3]
        up = normalize(c2w_gl[:, :3, 1].sum(0))
        flat = centres - np.outer(centres @ up, up)
        a = normalize(flat[0])
        return Ring(up, float((centres @ up).mean()), float(np.linalg.norm(flat, axis=1).mean()), a, np.cross(up, a))

    def pose(self, angle: float) -> np.ndarray:
        """Camera on the ring at ``angle`` (radians from ``a`` towards ``b``), looking at the origin."""
        centre = self.height * self.up + self.radius * (np.cos(angle) * self.a + np.sin(angle) * self.b)
        return look_at(centre, self.up, centre)

    def azimuths(self, points: np.ndarray) -> np.ndarray:
        """(N,) azimuth of each point (N, 3) around ``up``, radians in [0, 2 pi), from ``a``."""
        return np.mod(np.arctan2(points @ self.b, points @ self.a), 2 * np.pi)


@dataclass(frozen=True)
class Band:
    """The sweep of cameras a circle or arc follows (see BAND_WIDTH): around ``ring``'s axis, the
    azimuth, height and distance from the axis of each of its cameras."""

    ring: Ring
    azimuth: np.ndarray
    """(K,) radians, as :meth:`Ring.azimuths`."""
    height: np.ndarray
    """(K,) along ``ring.up``."""
    radius: np.ndarray
    """(K,) from the up axis."""

    @staticmethod
    def of(c2w_gl: np.ndarray) -> "Band":
        ring = Ring.of(c2w_gl)
        centres = c2w_gl[:, :3, 3]
        height = centres @ ring.up
        radius = np.linalg.norm(centres - np.outer(height, ring.up), axis=1)
        hr = np.stack([height, radius], 1)
        width = BAND_WIDTH * radius.mean()
        near = np.linalg.norm(hr[:, None] - hr[None], axis=-1) <= width  # (N, N)
        middle = hr[near[int(near.sum(1).argmax())]].mean(0)  # from the camera with the most neighbours,
        for _ in range(20):  # mean shift to the middle of its band (a camera between two bands reaches both)
            keep = np.linalg.norm(hr - middle, axis=1) <= width
            if np.allclose(hr[keep].mean(0), middle):
                break
            middle = hr[keep].mean(0)
        if not keep.any():  # cannot happen (a mean of points lies within reach of one), but never an empty band
            keep[:] = True
        return Band(ring, ring.azimuths(centres[keep]), height[keep], radius[keep])

    def pose(self, angle: float) -> np.ndarray:
        """Camera at ``angle`` (radians, as :meth:`Ring.pose`) at the band's height and distance there,
        looking at the origin."""
        gap = np.angle(np.exp(1j * (self.azimuth - angle)))  # wrapped to (-pi, pi]
        w = np.exp(-0.5 * (gap / np.deg2rad(BAND_SMOOTHING_DEG)) ** 2) + 1e-12
        height, radius = float(w @ self.height / w.sum()), float(w @ self.radius / w.sum())
        ring = self.ring
        centre = height * ring.up + radius * (np.cos(angle) * ring.a + np.sin(angle) * ring.b)
        return look_at(centre, ring.up, centre)


def azimuths(c2w_gl: np.ndarray) -> np.ndarray:
    """(N,) azimuth of each camera centre around the mean up axis, radians in [0, 2 pi), from the first camera."""
    return Ring.of(c2w_gl).azimuths(c2w_gl[:, :3, 3])


def covered_arc(angles: np.ndarray) -> tuple[float, float]:
    """(start, span) in radians of the smallest arc holding every angle (the complement of the largest gap)."""
    s = np.sort(np.mod(angles, 2 * np.pi))
    gaps = np.diff(np.concatenate([s, [s[0] + 2 * np.pi]]))
    k = int(np.argmax(gaps))
    start = s[(k + 1) % len(s)]
    return float(start), float(2 * np.pi - gaps[k])


def circle_path(c2w_gl: np.ndarray, n_frames: int = CIRCLE_FRAMES) -> np.ndarray:
    """A full circle around the scene for 360-degree captures, at the height and distance of the band of
    cameras (:class:`Band`) near each azimuth.

    Works in the frame of spherified poses (the point the cameras look at is the origin): the up
    axis is the mean camera up, every frame looks at the origin.
    """
    band = Band.of(c2w_gl)
    angles = np.linspace(0.0, 2.0 * np.pi, n_frames + 1)[:-1]
    return np.stack([band.pose(th) for th in angles])


def arc_path(c2w_gl: np.ndarray, n_frames: int = CIRCLE_FRAMES) -> np.ndarray:
    """For a partial sweep (wide arc): along the arc the band of cameras (:class:`Band`) covered and back,
    looking at the origin, at the band's height and distance near each azimuth; the video never shows the
    side nobody photographed."""
    band = Band.of(c2w_gl)
    start, span = covered_arc(band.azimuth)
    t = 0.5 - 0.5 * np.cos(np.linspace(0.0, 2.0 * np.pi, n_frames + 1)[:-1])  # 0 -> 1 -> 0, eased
    return np.stack([band.pose(start + span * ti) for ti in t])
