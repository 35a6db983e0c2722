"""Cameras: conventions (COLMAP, LLFF, OpenGL), normalisation (recenter, spherify, NDC) and paths."""

from nerfpipe.cameras.conventions import gl_from_llff, llff_from_gl, read_poses_bounds, write_poses_bounds
from nerfpipe.cameras.normalize import Normalization, apply_to_points, apply_to_poses, average_pose, normalize_llff
from nerfpipe.cameras.rays import get_rays, ndc_rays

__all__ = [
    "gl_from_llff", "llff_from_gl", "read_poses_bounds", "write_poses_bounds",
    "Normalization", "apply_to_points", "apply_to_poses", "average_pose", "normalize_llff", "get_rays", "ndc_rays",
]
