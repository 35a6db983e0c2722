"""Cameras: conventions (COLMAP, LLFF, OpenGL), normalisation (recenter, spherify, NDC) and paths."""

from nerfpipe.cameras.conventions import gl_from_llff, llff_from_gl, read_poses_bounds, write_poses_bounds

__all__ = ["gl_from_llff", "llff_from_gl", "read_poses_bounds", "write_poses_bounds"]
