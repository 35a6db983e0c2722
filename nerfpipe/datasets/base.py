"""What every dataset loader returns: images, normalised cameras, splits, and how to make rays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from nerfpipe.cameras.bounds import VisualHull
from nerfpipe.cameras.normalize import Normalization
from nerfpipe.cameras.rays import NDC_NEAR, PIXEL_OFFSET, camera_directions, ndc_rays, world_rays
from nerfpipe.nerf.interface import RayBundle, SceneBox


@dataclass
class SceneData:
    """A loaded scene. Cameras are OpenGL camera-to-world in the normalised world."""

    kind: Literal["llff", "blender"]
    names: list[str]
    """Image file names, dataset order."""
    images: Tensor
    """(N, H, W, 3) float32 in [0, 1] (composited on white for white_background RGBA)."""
    c2w: Tensor
    """(N, 3, 4) float32 normalised OpenGL camera-to-world."""
    height: int
    width: int
    focal: float
    """Focal length in pixels of these images; principal point at the image centre."""
    near: float
    """World-space near distance of the rays (before any NDC warp)."""
    far: float
    i_train: list[int]
    i_test: list[int]
    ndc: bool
    """Rays are warped to NDC (forward-facing LLFF); then near, far of the ray bundles are 0, 1."""
    white_background: bool
    scene_box: SceneBox
    bounds: np.ndarray | None = None
    """(N, 2) per-camera depth bounds in the normalised world (LLFF), for spiral paths."""
    steps: list[Normalization] = field(default_factory=list)
    """Normalisation applied to the input cameras, in order (see nerfpipe.cameras.normalize)."""
    source: dict = field(default_factory=dict)
    """Where it came from: folder, factor, poses file, input sizes (JSON-able)."""
    hull: VisualHull | None = None
    """The object's visual hull in the normalised world, for scenes with silhouettes (Blender's alpha, the masks of an object cut out on white)."""

    def rays(self, cam: Tensor, x: Tensor, y: Tensor) -> RayBundle:
        """Rays of pixels (x column, y row) of cameras ``cam`` (all (rays,) long, or cam a single int)."""
        return make_rays(self.c2w[cam], x.to(self.c2w.dtype), y.to(self.c2w.dtype), self.height, self.width,
                         self.focal, ndc=self.ndc, near=self.near, far=self.far)

    def image_rays(self, index: int) -> RayBundle:
        """All H*W rays of image ``index``, row-major."""
        y, x = torch.meshgrid(torch.arange(self.height), torch.arange(self.width), indexing="ij")
        return make_rays(self.c2w[index], x.reshape(-1).float(), y.reshape(-1).float(), self.height, self.width,
                         self.focal, ndc=self.ndc, near=self.near, far=self.far)

    def meta(self) -> dict:
        """JSON-able description for the run folder: cameras, bounds, splits, normalisation."""
        return {
            "kind": self.kind,
            "names": list(self.names),
            "height": self.height,
            "width": self.width,
            "focal": self.focal,
            "near": self.near,
            "far": self.far,
            "ndc": self.ndc,
            "ndc_near": NDC_NEAR if self.ndc else None,
            "pixel_offset": PIXEL_OFFSET,
            "white_background": self.white_background,
            "i_train": list(self.i_train),
            "i_test": list(self.i_test),
            "c2w": self.c2w.double().numpy().round(8).tolist(),
            "bounds": None if self.bounds is None else np.asarray(self.bounds).round(8).tolist(),
            "normalization": [s.to_dict() for s in self.steps],
            "scene_box": self.scene_box.to_dict(),
            "source": self.source,
        }


def make_rays(
    c2w: Tensor, x: Tensor, y: Tensor, height: int, width: int, focal: float, *, ndc: bool, near: float, far: float
) -> RayBundle:
    """c2w (3, 4) or (rays, 3, 4), x, y (rays,) pixel indices -> a RayBundle (NDC when ``ndc``)."""
    origins, directions = world_rays(camera_directions(x, y, height, width, focal), c2w)
    n = origins.shape[0]
    if not ndc:
        return RayBundle(origins.contiguous(), directions.contiguous(), torch.full((n, 1), near), torch.full((n, 1), far))
    viewdirs = directions / torch.linalg.vector_norm(directions, dim=-1, keepdim=True)
    o, d = ndc_rays(height, width, focal, NDC_NEAR, origins, directions)
    return RayBundle(o, d, torch.zeros(n, 1), torch.ones(n, 1), viewdirs)


def frustum_corners(c2w: Tensor, height: int, width: int, focal: float, near: float, far: float, ndc: bool) -> Tensor:
    """(cams * 8, 3): the points of every camera's 4 corner rays at the near and far ends of its bundle."""
    x = torch.tensor([0.0, width - 1.0, 0.0, width - 1.0])
    y = torch.tensor([0.0, 0.0, height - 1.0, height - 1.0])
    pts = []
    for cam in c2w:
        r = make_rays(cam, x, y, height, width, focal, ndc=ndc, near=near, far=far)
        pts += [r.origins + r.directions * r.near, r.origins + r.directions * r.far]
    return torch.cat(pts)


def box_around(points: Tensor, margin: float = 0.05) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Axis-aligned box around (n, 3) points, grown by ``margin`` of its size on each side."""
    lo, hi = points.min(dim=0).values, points.max(dim=0).values
    pad = (hi - lo) * margin
    return tuple((lo - pad).tolist()), tuple((hi + pad).tolist())
