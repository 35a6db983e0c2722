"""Which kind of scene folder a run trains on, what its cache depends on, and its data read into tensors.

Four kinds of scene folder are read:

| folder | detected by | cache inputs |
| --- | --- | --- |
| a nerfpipe scene | ``.nerfpipe/poses.json`` | upstream stage ``poses`` (its images, in its order; when its SfM camera has lens distortion, SIMPLE_RADIAL k1 != 0, the images are undistorted by stage ``undistort-<k>`` from ``images/`` and its transforms.json) |
| your own poses (nerfstudio / instant-ngp) | ``transforms.json`` | it and the images it names (prepared by stage ``undistort-<k>``) |
| a published LLFF scene | ``poses_bounds.npy`` + ``images_<k>/`` | those files |
| a Blender synthetic scene | ``transforms_train.json`` | the transforms files and the images they name |

A stage module and not a dataset module: detecting a COLMAP folder brings its transforms.json up to
date (stage ``colmap-source``) and loading a distorted capture runs stage ``undistort-<k>``; the
``datasets`` readers below it only read files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from nerfpipe import colmap
from nerfpipe import scene as scene_layout
from nerfpipe.cameras import gl_from_llff
from nerfpipe.cameras.undistort import is_plain
from nerfpipe.datasets.base import SceneData
from nerfpipe.datasets.blender import is_blender_folder, load_blender
from nerfpipe.datasets.llff import image_files, load_llff, read_poses_file
from nerfpipe.datasets.transforms import is_transforms_folder, load_transforms, read_frames
from nerfpipe.datasets.transforms import scene_cameras as transforms_cameras
from nerfpipe.errors import NerfpipeError
from nerfpipe.photos import downsample
from nerfpipe.progress import Reporter
from nerfpipe.recipes import Recipe
from nerfpipe.stages import colmap_source, undistort
from nerfpipe.stages.results import IngestResult, ON_WHITE_KINDS, PoseCheck, PosesResult, load_result

SourceKind = Literal["nerfpipe", "transforms", "llff", "blender"]


@dataclass(frozen=True)
class Source:
    kind: SourceKind
    """'nerfpipe', 'transforms' (transforms.json + images), 'llff' (published layout) or 'blender'."""
    upstream: tuple[str, ...]
    inputs: tuple[Path, ...]
    stems: list[str] | None
    undistort: bool = False
    """A nerfpipe scene whose SfM camera has lens distortion: trained on the undistort stage's pinhole images."""


def detect_source(scene: Path, recipe: Recipe, reporter: Reporter | None = None) -> Source:
    """What kind of scene folder this is, and what the train stage's cache depends on."""
    scene = Path(scene)
    scene_layout.require_folder(scene, "The scene folder", "check the path")
    poses: PosesResult | None = load_result(scene, "poses")
    if poses is not None:
        names = poses.images
        if not names:
            raise NerfpipeError(f"The poses manifest of {scene} lists no images: run `nerfpipe poses --scene {scene}` again.")
        return Source("nerfpipe", ("poses",), (), [Path(n).stem for n in names],
                      undistort=recipe.data.undistort and has_distortion(scene))
    if colmap_source.is_colmap_folder(scene):  # sparse/0 + images/: its transforms.json, kept up to date
        colmap_source.run(scene, reporter)
        frames = read_frames(scene / scene_layout.TRANSFORMS)
        return Source("transforms", (colmap_source.STAGE,), tuple(frames.files), None)
    if is_transforms_folder(scene):
        frames = read_frames(scene / scene_layout.TRANSFORMS)
        return Source("transforms", (), (frames.path, *frames.files), None)
    if (scene / scene_layout.POSES_BOUNDS).exists():
        files = image_files(scene, recipe.data.factor, None)
        return Source("llff", (), (scene / scene_layout.POSES_BOUNDS, *files), None)
    if is_blender_folder(scene):
        inputs = []
        for split in ("train", "val", "test"):
            path = scene / f"transforms_{split}.json"
            if path.exists():
                inputs.append(path)
                if split != "val":
                    for frame in json.loads(path.read_text()).get("frames", []):
                        img = scene / frame["file_path"]
                        inputs.append(img if img.suffix else img.with_suffix(".png"))
        missing = [p for p in inputs if not p.exists()]
        if missing:
            raise NerfpipeError(f"{missing[0]} is named in the transforms files but missing: restore it or remove its frame.")
        return Source("blender", (), tuple(inputs), None)
    raise NerfpipeError(
        f"{scene} has no cameras: run `nerfpipe ingest` and `nerfpipe poses` there first "
        "(or point at a folder with transforms.json or poses_bounds.npy, or a Blender scene with transforms_train.json)."
    )


def has_distortion(scene: Path) -> bool:
    """Whether the cameras the poses stage wrote (transforms.json) are not plain pinholes (SIMPLE_RADIAL k1 != 0)."""
    path = Path(scene) / scene_layout.TRANSFORMS
    if not path.is_file():
        return False
    return not all(is_plain(c) for c in read_frames(path).transforms.cameras)


def scene_cameras(scene: Path, source: Source) -> np.ndarray | None:
    """(N, 3, 4) OpenGL camera-to-world of a photo scene's cameras (any world frame); None for a Blender scene."""
    if source.kind in ("nerfpipe", "llff"):
        poses_llff, _ = read_poses_file(Path(scene) / scene_layout.POSES_BOUNDS)
        return gl_from_llff(poses_llff)
    if source.kind == "transforms":
        return transforms_cameras(scene)
    return None


def _on_white_ingest(scene: Path, source: Source) -> IngestResult | None:
    """Ingest's result of a nerfpipe scene whose photos it found cut out on white (or on transparency),
    or cut out with the user's masks; None for any other scene."""
    if source.kind != "nerfpipe":
        return None
    ingest: IngestResult | None = load_result(scene, "ingest")
    return ingest if ingest is not None and ingest.background_kind in ON_WHITE_KINDS else None


def object_on_white(scene: Path, source: Source) -> bool:
    """A nerfpipe scene whose photos ingest found cut out on white (or on transparency), or cut out with the user's masks."""
    return _on_white_ingest(scene, source) is not None


def object_masks(scene: Path, source: Source) -> Path | None:
    """The object masks of a nerfpipe scene cut out on white (ingest's ``masks/``, at the photos' full
    size), None for any other scene."""
    ingest = _on_white_ingest(scene, source)
    return scene / ingest.mask_folder if ingest is not None and ingest.mask_folder else None


def read_silhouettes(scene: Path, factor: int, stems: list[str] | None, masks: Path,
                     prepared: dict | None) -> np.ndarray | None:
    """(N, H, W) float32 in [0, 1]: each training image's object mask at its size and camera, in the
    stems' order: the undistort stage's (``prepared``, its result: made like the images), or else ``masks`` downsampled by
    ``factor`` as ingest downsamples the photos. None where a mask is missing (no hull is carved)."""
    if stems is None:
        return None
    if prepared is not None:
        if not prepared.get("masks"):
            return None
        folder = scene / scene_layout.undistorted_masks_dir_name(factor)
        by_stem = {Path(name).stem: folder / file for name, file in zip(prepared["names"], prepared["masks"])}
        files = [by_stem.get(s) for s in stems]
    else:
        files = [masks / f"{s}.png" for s in stems]
    out = []
    for f in files:
        alpha = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) if f is not None and f.is_file() else None
        if alpha is None:
            return None
        out.append(alpha if prepared is not None else downsample(alpha, factor))
    return np.stack(out).astype(np.float32) / 255.0


def sparse_model(scene: Path) -> colmap.SparseModel | None:
    """A nerfpipe scene's sparse model (``colmap/sparse/0``, COLMAP's world, the world of poses_bounds.npy),
    None without one; a damaged one is a sentence that says how to redo it."""
    model_dir = Path(scene) / scene_layout.COLMAP / "sparse" / "0"
    if not model_dir.is_dir():
        return None
    try:
        return colmap.read_sparse_model(model_dir)
    except (RuntimeError, ValueError, OSError):
        raise NerfpipeError(f"{model_dir} cannot be read: run `nerfpipe poses {scene} --force` to redo it.") from None


def sparse_points(scene: Path) -> np.ndarray | None:
    """(P, 3) points of a nerfpipe scene's sparse model (see :func:`sparse_model`), or None."""
    sparse = sparse_model(scene)
    return sparse.points if sparse is not None else None


def load_scene(scene: Path, recipe: Recipe, source: Source, reporter: Reporter | None = None) -> SceneData:
    d = recipe.data
    if source.kind == "blender":
        return load_blender(scene, half_res=d.half_res, white_background=d.white_bkgd)
    if source.kind == "transforms":
        prepared = undistort.run(undistort.UndistortParams(scene=scene, factor=d.factor), reporter).result
        return load_transforms(scene, prepared=prepared, factor=d.factor, llffhold=d.llffhold, ndc=d.ndc, spherify=d.spherify,
                               bd_factor=d.bd_factor, white_background=d.white_bkgd)
    points = sparse_points(scene) if d.object and source.kind == "nerfpipe" else None
    masks = object_masks(scene, source) if points is not None else None
    prepared = (undistort.run(undistort.UndistortParams(scene=scene, factor=d.factor, masks=masks), reporter).result
                if source.undistort else None)
    silhouettes = read_silhouettes(scene, d.factor, source.stems, masks, prepared) if masks is not None else None
    return load_llff(scene, factor=d.factor, llffhold=d.llffhold, ndc=d.ndc, spherify=d.spherify,
                     bd_factor=d.bd_factor, white_background=d.white_bkgd, stems=source.stems, object_points=points,
                     prepared=prepared, silhouettes=silhouettes)


def pose_check_of(scene: Path, source: Source) -> PoseCheck | None:
    """The poses stage's pose check of a nerfpipe scene (None for other scenes, or before the check existed)."""
    if source.kind != "nerfpipe":
        return None
    posed: PosesResult | None = load_result(scene, "poses")
    return posed.pose_check if posed is not None else None
