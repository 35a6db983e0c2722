"""How far one set of cameras is from another, up to the similarity SfM cannot fix (origin, orientation, scale).

``umeyama`` aligns camera centres; ``best_rotation`` the orientations; ``compare_cameras`` reports
centre, rotation, focal and bounds errors after the alignment.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


# --------------------------------------------------------------------------------------------------
# Aligning two camera sets


@dataclass(frozen=True)
class Similarity:
    """x_dst = scale * rotation @ x_src + translation."""

    scale: float
    rotation: np.ndarray
    """(3, 3)"""
    translation: np.ndarray
    """(3,)"""

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) -> (..., 3)"""
        return self.scale * np.asarray(points) @ self.rotation.T + self.translation


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> Similarity:
    """Least-squares similarity taking the points ``src`` (N, 3) onto ``dst`` (N, 3) (Umeyama 1991)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or src.shape[0] < 3:
        raise ValueError(f"need two (N>=3, 3) point sets of the same shape, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / src.shape[0]
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1.0
    rot = u @ np.diag(d) @ vt
    var_s = (xs**2).sum() / src.shape[0]
    scale = float((sig * d).sum() / var_s) if with_scale else 1.0
    return Similarity(scale, rot, mu_d - scale * rot @ mu_s)


def best_rotation(rot_src: np.ndarray, rot_dst: np.ndarray) -> np.ndarray:
    """The one rotation G (3, 3) minimising sum_i ||G @ rot_src[i] - rot_dst[i]||_F; rot_*: (N, 3, 3)."""
    m = np.einsum("nij,nkj->ik", np.asarray(rot_dst, dtype=np.float64), np.asarray(rot_src, dtype=np.float64))
    u, _, vt = np.linalg.svd(m)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    return u @ d @ vt


def rotation_angle_deg(rot_a: np.ndarray, rot_b: np.ndarray) -> np.ndarray:
    """Angle in degrees of rot_a @ rot_b^T for each pair: (..., 3, 3), (..., 3, 3) -> (...,)."""
    rel = np.asarray(rot_a) @ np.swapaxes(np.asarray(rot_b), -1, -2)
    cos = (np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


@dataclass(frozen=True)
class CameraComparison:
    """How far a set of LLFF cameras is from a reference set (figures as fractions or degrees)."""

    cameras: int
    scale: float
    """Scale that takes the compared set's units to the reference's."""
    spread: float
    """RMS distance of the reference camera centres from their mean (reference units)."""
    centre_error_mean: float
    """Mean camera-centre distance after the similarity alignment, as a fraction of ``spread``."""
    centre_error_max: float
    rotation_error_mean_deg: float
    """Per-camera orientation error once the one best global rotation is removed."""
    rotation_error_max_deg: float
    rotation_error_sim3_mean_deg: float
    """The same with the rotation of the centre alignment (ill-conditioned for near-planar layouts)."""
    focal_error: float
    """|focal / W - reference focal / reference W| / (reference focal / reference W), mean over cameras:
    focal lengths in units of the image width, so photos at another resolution compare fairly."""
    near_error_mean: float
    """|near * scale - reference near| / reference near, mean over cameras (NaN without bounds)."""
    far_error_mean: float

    def to_json(self) -> dict[str, float | int]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def compare_cameras(
    poses: np.ndarray,
    reference: np.ndarray,
    bounds: np.ndarray | None = None,
    reference_bounds: np.ndarray | None = None,
) -> CameraComparison:
    """Compare LLFF poses (N, 3, 5) with reference LLFF poses (N, 3, 5), row by row.

    The centres are aligned with a similarity (:func:`umeyama`); rotations are compared both with that
    similarity's rotation and with :func:`best_rotation` of the orientations. Bounds (N, 2), if given,
    are compared after multiplying by the similarity's scale.
    """
    poses = np.asarray(poses, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if poses.shape[0] != reference.shape[0]:
        raise ValueError(f"{poses.shape[0]} cameras against {reference.shape[0]} reference cameras")
    centres, ref_centres = poses[:, :, 3], reference[:, :, 3]
    sim = umeyama(centres, ref_centres)
    spread = float(np.sqrt(((ref_centres - ref_centres.mean(0)) ** 2).sum(1).mean()))
    centre_err = np.linalg.norm(sim.apply(centres) - ref_centres, axis=1) / spread
    rots, ref_rots = poses[:, :, :3], reference[:, :, :3]
    err_sim = rotation_angle_deg(sim.rotation @ rots, ref_rots)
    err_best = rotation_angle_deg(best_rotation(rots, ref_rots) @ rots, ref_rots)
    focal_err = float("nan")
    if poses.shape[2] >= 5 and reference.shape[2] >= 5:
        rel = poses[:, 2, 4] / poses[:, 1, 4]
        ref_rel = reference[:, 2, 4] / reference[:, 1, 4]
        focal_err = float(np.mean(np.abs(rel - ref_rel) / ref_rel))
    near_err = far_err = float("nan")
    if bounds is not None and reference_bounds is not None:
        rel = np.abs(np.asarray(bounds) * sim.scale - reference_bounds) / np.asarray(reference_bounds)
        near_err, far_err = (float(x) for x in rel.mean(0))
    return CameraComparison(
        cameras=int(poses.shape[0]),
        scale=float(sim.scale),
        spread=spread,
        centre_error_mean=float(centre_err.mean()),
        centre_error_max=float(centre_err.max()),
        rotation_error_mean_deg=float(err_best.mean()),
        rotation_error_max_deg=float(err_best.max()),
        rotation_error_sim3_mean_deg=float(err_sim.mean()),
        focal_error=focal_err,
        near_error_mean=near_err,
        far_error_mean=far_err,
    )
