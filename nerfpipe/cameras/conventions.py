"""Camera conventions: every axis swap between COLMAP, LLFF and OpenGL lives here.

- COLMAP / OpenCV camera axes: x right, y down, z forward; COLMAP stores world-to-camera
  (``w2c_cv``, 3x4 or 4x4).
- LLFF ``poses_bounds.npy``: (N, 17). Row i = a 3x5 matrix flattened row-major, then near, far.
  The 3x5 matrix (``pose_llff``) is camera-to-world with columns [down, right, backwards, centre,
  (H, W, focal)] in world coordinates; H, W, focal are those of the full-resolution images.
- NeRF / OpenGL camera axes (what the renderer uses, ``c2w_gl``): x right, y up, z backwards.

Transforms are named "target from source": ``c2w_gl`` maps camera (OpenGL axes) to world.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def gl_from_llff(pose_llff: np.ndarray) -> np.ndarray:
    """LLFF [down, right, back, centre] -> OpenGL camera-to-world [right, up, back, centre].

    pose_llff: (..., 3, 4) or (..., 3, 5); returns (..., 3, 4) ``c2w_gl`` (hwf column dropped).
    """
    p = np.asarray(pose_llff)[..., :4]
    return np.concatenate([p[..., 1:2], -p[..., 0:1], p[..., 2:3], p[..., 3:4]], axis=-1)


def llff_from_gl(c2w_gl: np.ndarray) -> np.ndarray:
    """Inverse of :func:`gl_from_llff`: (..., 3, 4) ``c2w_gl`` -> (..., 3, 4) LLFF pose (no hwf)."""
    p = np.asarray(c2w_gl)[..., :4]
    return np.concatenate([-p[..., 1:2], p[..., 0:1], p[..., 2:3], p[..., 3:4]], axis=-1)


def read_poses_bounds(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """poses_bounds.npy -> (poses_llff (N, 3, 5), bounds (N, 2))."""
    arr = np.load(path)
    if arr.ndim != 2 or arr.shape[1] != 17:
        raise ValueError(f"{path} has shape {arr.shape}, not (N, 17)")
    return arr[:, :15].reshape(-1, 3, 5), arr[:, 15:17]


def write_poses_bounds(path: Path, poses_llff: np.ndarray, bounds: np.ndarray) -> None:
    """(N, 3, 5) LLFF poses with hwf and (N, 2) bounds -> poses_bounds.npy (N, 17), float64."""
    poses_llff = np.asarray(poses_llff, dtype=np.float64)
    arr = np.concatenate([poses_llff.reshape(-1, 15), np.asarray(bounds, dtype=np.float64).reshape(-1, 2)], axis=1)
    with open(path, "wb") as f:
        np.save(f, arr)
