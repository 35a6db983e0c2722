"""Camera conventions: every axis swap between COLMAP, LLFF, OpenGL and transforms.json lives here.

Frames and names (transforms read "target from source", right to left):

- COLMAP / OpenCV camera axes: x right, y down, z forward. COLMAP stores world-to-camera
  ``w2c_cv`` = [R | t], (3, 4): a world point X is at ``R @ X + t`` in the camera.
  ``c2w_cv`` is its inverse: columns [right, down, forward, centre] in world coordinates.
- LLFF ``poses_bounds.npy``: (N, 17). Row i = a 3x5 matrix flattened row-major, then near, far.
  The 3x5 matrix is ``pose_llff`` (camera-to-world, columns [down, right, backwards, centre]) with a
  fifth column ``hwf`` = (H, W, focal) of the full-resolution images. near/far are low/high
  percentiles of the depths of the sparse points that camera sees.
- NeRF / OpenGL camera axes (what the renderer uses): x right, y up, z backwards.
  ``c2w_gl``: columns [right, up, backwards, centre].
- transforms.json (nerfstudio / instant-ngp): ``transform_matrix`` is ``c2w_gl`` as 4x4; intrinsics
  ``fl_x, fl_y, cx, cy, w, h`` in pixels of the images the frames name (OpenCV pixel convention:
  the image spans [0, w], so a centred principal point is at w / 2), distortion ``k1, k2, p1, p2``
  as in OpenCV. nerfpipe adds per-frame ``near`` and ``far`` (the LLFF bounds, depths along the
  viewing axis in the file's world units) so that poses_bounds.npy -> transforms.json -> poses_bounds.npy
  is exact; other readers ignore them.

Every pose function takes (..., 3, 4) or (..., 4, 4) and returns (..., 3, 4); extra columns (the
hwf column of a 3x5 LLFF pose) are ignored. Each conversion has its inverse beside it.

The files that hold cameras in these conventions (poses_bounds.npy, transforms.json) are read and
written by :mod:`nerfpipe.cameras.formats`; two camera sets are compared by
:mod:`nerfpipe.cameras.similarity`.
"""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------------------------------
# Rigid transforms


def to_homogeneous(pose: np.ndarray) -> np.ndarray:
    """(..., 3, 4) or (..., 4, 4) -> (..., 4, 4) with a [0, 0, 0, 1] last row."""
    pose = np.asarray(pose, dtype=np.float64)[..., :3, :4]
    out = np.zeros(pose.shape[:-2] + (4, 4))
    out[..., :3, :4] = pose
    out[..., 3, 3] = 1.0
    return out


def invert_rigid(pose: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform [R | t]: (..., 3, 4) -> (..., 3, 4) [R^T | -R^T t].

    Turns ``w2c_cv`` into ``c2w_cv`` and back.
    """
    pose = np.asarray(pose, dtype=np.float64)
    rot = pose[..., :3, :3]
    t = pose[..., :3, 3:4]
    rot_t = np.swapaxes(rot, -1, -2)
    return np.concatenate([rot_t, -rot_t @ t], axis=-1)


# --------------------------------------------------------------------------------------------------
# COLMAP (world-to-camera, OpenCV axes) <-> LLFF (camera-to-world, [down, right, back])


def llff_from_colmap(w2c_cv: np.ndarray) -> np.ndarray:
    """COLMAP world-to-camera (..., 3, 4) -> LLFF ``pose_llff`` (..., 3, 4) [down, right, back, centre].

    This is imgs2poses' conversion: invert, then reorder the OpenCV axes [right, down, forward] to
    [down, right, -forward].
    """
    c2w_cv = invert_rigid(np.asarray(w2c_cv)[..., :3, :4])
    right, down, forward, centre = (c2w_cv[..., i : i + 1] for i in range(4))
    return np.concatenate([down, right, -forward, centre], axis=-1)


def colmap_from_llff(pose_llff: np.ndarray) -> np.ndarray:
    """Inverse of :func:`llff_from_colmap`: (..., 3, 4|5) LLFF pose -> (..., 3, 4) COLMAP ``w2c_cv``."""
    p = np.asarray(pose_llff, dtype=np.float64)[..., :3, :4]
    down, right, back, centre = (p[..., i : i + 1] for i in range(4))
    c2w_cv = np.concatenate([right, down, -back, centre], axis=-1)
    return invert_rigid(c2w_cv)


# --------------------------------------------------------------------------------------------------
# LLFF <-> OpenGL camera-to-world


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


# --------------------------------------------------------------------------------------------------
# COLMAP world-to-camera <-> OpenGL camera-to-world (transforms.json)


def gl_from_colmap(w2c_cv: np.ndarray) -> np.ndarray:
    """COLMAP world-to-camera (..., 3, 4) -> OpenGL ``c2w_gl`` (..., 3, 4): invert, flip y and z."""
    c2w_cv = invert_rigid(np.asarray(w2c_cv)[..., :3, :4])
    right, down, forward, centre = (c2w_cv[..., i : i + 1] for i in range(4))
    return np.concatenate([right, -down, -forward, centre], axis=-1)


def colmap_from_gl(c2w_gl: np.ndarray) -> np.ndarray:
    """Inverse of :func:`gl_from_colmap`: (..., 3, 4|4x4) ``c2w_gl`` -> (..., 3, 4) COLMAP ``w2c_cv``."""
    p = np.asarray(c2w_gl, dtype=np.float64)[..., :3, :4]
    right, up, back, centre = (p[..., i : i + 1] for i in range(4))
    return invert_rigid(np.concatenate([right, -up, -back, centre], axis=-1))
