"""Dataset loaders: LLFF scene folders (:mod:`.llff`) and Blender synthetic scenes (:mod:`.blender`),
both returning a :class:`~nerfpipe.datasets.base.SceneData`."""

from nerfpipe.datasets.base import SceneData, make_rays
from nerfpipe.datasets.blender import load_blender
from nerfpipe.datasets.llff import load_llff

__all__ = ["SceneData", "load_blender", "load_llff", "make_rays"]
