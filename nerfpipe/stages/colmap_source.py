"""A COLMAP model folder as a training source: ``sparse/0/`` (or ``sparse/``) beside ``images/``, as
published datasets ship them (mip-NeRF 360, Tanks and Temples, a COLMAP GUI project), trained without
running SfM again.

Stage ``import-colmap`` (cached on the model's files) reads the model with pycolmap and writes
``transforms.json`` beside it: the registered images in name order, OpenGL camera-to-world in the
model's world, each camera's OPENCV intrinsics read by the model's parameter names, and per-frame
near/far from the sparse points each image sees (as the poses stage computes them). From there the
scene trains as a transforms.json scene (undistortion onto pinhole cameras, downsampling, scene type).
A transforms.json that this stage did not write is the user's and is never replaced: then it is the
source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nerfpipe import colmap
from nerfpipe import scene as scene_layout
from nerfpipe.cache import StageResult, StageSpec, load_manifest, run_stage
from nerfpipe.cameras.bounds import near_far
from nerfpipe.cameras.conventions import gl_from_colmap
from nerfpipe.cameras.formats import PinholeCamera, write_transforms
from nerfpipe.errors import NerfpipeError
from nerfpipe.progress import Reporter
from nerfpipe.stages.results import ColmapSourceResult

STAGE = "import-colmap"
VERSION = "1"
MODEL_FILES = ("cameras", "images", "points3D")


def model_dir(scene: Path) -> Path | None:
    """``sparse/0`` or ``sparse`` when it holds a binary or text model, else None."""
    for folder in (Path(scene) / "sparse" / "0", Path(scene) / "sparse"):
        for ext in (".bin", ".txt"):
            if all((folder / f"{name}{ext}").is_file() for name in MODEL_FILES):
                return folder
    return None


def is_colmap_folder(scene: Path) -> bool:
    """A COLMAP model and its images, and no transforms.json of the user's own."""
    scene = Path(scene)
    if model_dir(scene) is None or not (scene / scene_layout.IMAGES).is_dir():
        return False
    return not (scene / scene_layout.TRANSFORMS).exists() or load_manifest(scene, STAGE) is not None


def run(scene: Path, reporter: Reporter | None = None) -> StageResult:
    """Write (or find up to date) the ``transforms.json`` of a COLMAP model folder."""
    scene = Path(scene)
    folder = model_dir(scene)
    assert folder is not None
    inputs = sorted(p for p in folder.iterdir() if p.is_file())
    spec = StageSpec(name=STAGE, version=VERSION, inputs=inputs, outputs=[scene_layout.TRANSFORMS])

    def body(out: Path) -> dict:
        try:
            rec = colmap.pycolmap.Reconstruction(folder)
            model = colmap.sparse_model(rec) if rec.num_reg_images() else None
        except (RuntimeError, ValueError) as e:
            raise NerfpipeError(f"The COLMAP model in {folder} cannot be read ({e}): check it opens in COLMAP.") from None
        if model is None or len(model.names) < 2:
            raise NerfpipeError(f"The COLMAP model in {folder} has fewer than 2 registered images: nothing to train on.")
        missing = [n for n in model.names if not (scene / scene_layout.IMAGES / n).is_file()]
        if missing:
            raise NerfpipeError(f"{len(missing)} of the {len(model.names)} images of the COLMAP model in {folder} are "
                                f"not in {scene / scene_layout.IMAGES} (first: {missing[0]}): put them there.")
        images = {im.name: im for im in rec.images.values()}
        cameras = []
        for name in model.names:
            try:
                cameras.append(PinholeCamera(**colmap.opencv_intrinsics(rec.cameras[images[name].camera_id])))
            except ValueError as e:
                raise NerfpipeError(f"{folder}: {e}: undistort the images with COLMAP first "
                                    "(colmap image_undistorter), then train on its output.") from None
        bounds = near_far(model.w2c_cv, model.points, model.point_images)
        shared = len(set(cameras)) == 1
        write_transforms(out / scene_layout.TRANSFORMS, [f"{scene_layout.IMAGES}/{n}" for n in model.names],
                         gl_from_colmap(model.w2c_cv), cameras[0] if shared else cameras,
                         extra={"applied_transform": np.eye(4)[:3].tolist(), "nerfpipe_source": str(folder)},
                         bounds=bounds)
        reporter.info(f"COLMAP model {folder}: {len(model.names)} images, {len(model.points)} points, "
                      f"{rec.cameras[images[model.names[0]].camera_id].model_name} cameras.")
        return {"images": len(model.names), "points": int(len(model.points)), "model": str(folder)}

    return run_stage(scene, spec, body, reporter=reporter, result_type=ColmapSourceResult)
