"""Cameras: conventions (COLMAP, LLFF, OpenGL), their files, comparing two sets, normalisation (recenter, spherify, NDC) and paths."""

from nerfpipe.cameras.conventions import (
    colmap_from_gl,
    colmap_from_llff,
    gl_from_colmap,
    gl_from_llff,
    invert_rigid,
    llff_from_colmap,
    llff_from_gl,
    to_homogeneous,
)
from nerfpipe.cameras.formats import (
    PinholeCamera,
    Transforms,
    read_poses_bounds,
    read_transforms,
    with_hwf,
    write_poses_bounds,
    write_transforms,
)
from nerfpipe.cameras.similarity import (
    CameraComparison,
    Similarity,
    best_rotation,
    compare_cameras,
    rotation_angle_deg,
    umeyama,
)
from nerfpipe.cameras.normalize import Normalization, apply_to_points, apply_to_poses, average_pose, normalize_llff
from nerfpipe.cameras.rays import get_rays, ndc_rays

__all__ = [
    "gl_from_llff", "llff_from_gl", "read_poses_bounds", "write_poses_bounds",
    "llff_from_colmap", "colmap_from_llff", "gl_from_colmap", "colmap_from_gl", "invert_rigid", "to_homogeneous",
    "with_hwf", "PinholeCamera", "Transforms", "read_transforms", "write_transforms",
    "Similarity", "umeyama", "best_rotation", "rotation_angle_deg", "CameraComparison", "compare_cameras",
    "Normalization", "apply_to_points", "apply_to_poses", "average_pose", "normalize_llff", "get_rays", "ndc_rays",
]
