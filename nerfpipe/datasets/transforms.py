"""transforms.json scene folders (nerfstudio / instant-ngp): bring your own poses.

A folder holding ``transforms.json`` and the images its frames name (``file_path`` relative to the
file's folder) trains without the poses stage. Step by step:

1. read transforms.json (OpenGL camera-to-world, OPENCV intrinsics shared or per frame, nerfpipe's
   per-frame ``near``/``far`` when present; :func:`~nerfpipe.cameras.formats.read_transforms`)
   and put the frames in sorted ``file_path`` order, the dataset order (as LLFF's sorted names).
   Every named image must exist: otherwise stop with one sentence saying how many of how many are
   missing, the first names, and how to go on with the others (``nerfpipe convert --drop-missing``);
2. images: the ``undistort-<k>`` stage (:mod:`nerfpipe.stages.undistort`) resamples each photo onto
   a centred pinhole camera where the file's camera has distortion, fl_x != fl_y or an off-centre
   principal point (:mod:`nerfpipe.cameras.undistort`), downsamples it by ``factor`` with ingest's
   area filter and crop, and caches the result in ``images_undistorted_<k>/``;
3. bounds: the file's per-frame near/far (``nerfpipe convert`` writes them from poses_bounds.npy);
   without them, **estimated from the cameras** (:func:`~nerfpipe.cameras.normalize.estimate_bounds`:
   0.5 and 2.5 times each camera's depth to the point the cameras look at), since there are no SfM
   points to take depth percentiles from;
4. LLFF's normalisation, splits and ray range (:func:`~nerfpipe.datasets.llff.llff_scene_data`):
   bd_factor rescale, recenter, spherify when the recipe asks (data.ndc / data.spherify are honoured
   as given), every llffhold-th frame held out.

The file's own recentring (instant-ngp's ``scale``, ``offset``, ``aabb_scale``; nerfstudio's
``applied_transform``) is a similarity of the world. Step 4 removes any similarity (the rescale uses
bounds that scale with the world; recenter moves into the average camera's frame), so it is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfpipe import scene as scene_layout
from nerfpipe.cameras.formats import Transforms, UnsupportedCamera, read_transforms
from nerfpipe.cameras.normalize import BD_FACTOR, estimate_bounds
from nerfpipe.datasets.base import SceneData
from nerfpipe.datasets.llff import llff_scene_data, read_image
from nerfpipe.errors import NerfpipeError

MISSING_NAMES_SHOWN = 3
"""The missing-files sentence names this many of the missing images."""


def images_dir_name(factor: int) -> str:
    """``images_undistorted_<k>``: the frames as centred pinhole images, downsampled by k."""
    return scene_layout.undistorted_dir_name(factor)


def is_transforms_folder(scene: Path) -> bool:
    return (Path(scene) / scene_layout.TRANSFORMS).is_file()


def frame_file(folder: Path, file_path: str) -> Path:
    """The image a frame names: ``folder / file_path``; a path without a suffix (Blender style) gets
    the first of .png, .jpg, .jpeg that exists."""
    path = Path(folder) / file_path
    if not path.suffix:
        for suffix in (".png", ".jpg", ".jpeg"):
            if path.with_suffix(suffix).exists():
                return path.with_suffix(suffix)
    return path


def read_transforms_file(path: Path) -> Transforms:
    """read_transforms with a user's mistake turned into one sentence."""
    path = Path(path)
    try:
        return read_transforms(path)
    except FileNotFoundError:
        raise NerfpipeError(f"There is no {path.name} in {path.parent}: check the path.") from None
    except UnsupportedCamera as e:
        raise NerfpipeError(f"{path} cannot be read as it is meant ({e}): nerfpipe reads pinhole and OPENCV cameras "
                            "(k1, k2, p1, p2); undistort the images to a pinhole camera first (for example with "
                            "ns-process-data --camera-type perspective).") from None
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise NerfpipeError(f"{path} is not a nerfstudio / instant-ngp transforms.json ({e}): fix or replace it.") from None


@dataclass
class Frames:
    """The frames of a transforms.json whose images exist, in dataset order (sorted file_path)."""

    path: Path
    """The transforms.json."""
    transforms: Transforms
    files: list[Path]
    """The image of each frame."""
    missing: list[str]
    """file_path of the frames left out because their image is missing (only with drop_missing)."""


def missing_sentence(path: Path, total: int, missing: list[str]) -> str:
    shown = ", ".join(missing[:MISSING_NAMES_SHOWN]) + (", ..." if len(missing) > MISSING_NAMES_SHOWN else "")
    if len(missing) == total:
        return (f"None of the {total} images that {path} names exists ({shown}): put them where its file_path "
                f"entries point, relative to {path.parent}.")
    return (
        f"{len(missing)} of the {total} images that {path} names are missing ({shown}): restore them, or keep the "
        f"{total - len(missing)} that exist with `nerfpipe convert {path} NEW_FOLDER/transforms.json --drop-missing` "
        "and train on NEW_FOLDER."
    )


def read_frames(path: Path, *, drop_missing: bool = False) -> Frames:
    """The frames of the transforms.json at ``path``, sorted by file_path. A frame whose image is
    missing stops with one sentence, or is left out (and listed) with ``drop_missing``."""
    path = Path(path)
    transforms = read_transforms_file(path)
    order = sorted(range(len(transforms.file_paths)), key=lambda i: transforms.file_paths[i])
    files = [frame_file(path.parent, transforms.file_paths[i]) for i in order]
    missing = [transforms.file_paths[i] for i, f in zip(order, files) if not f.is_file()]
    if missing and (not drop_missing or len(missing) == len(files)):
        raise NerfpipeError(missing_sentence(path, len(files), missing))
    keep = [(i, f) for i, f in zip(order, files) if f.is_file()]
    return Frames(path, transforms.subset([i for i, _ in keep]), [f for _, f in keep], missing)


def scene_cameras(scene: Path) -> np.ndarray:
    """(N, 3, 4) OpenGL camera-to-world of a transforms.json scene, in the file's world and dataset
    order (for :func:`nerfpipe.cameras.scene_type.classify`)."""
    return read_frames(Path(scene) / scene_layout.TRANSFORMS).transforms.c2w_gl[:, :3, :4]


def frame_bounds(transforms: Transforms) -> tuple[np.ndarray, str]:
    """(N, 2) near/far and where they come from: 'file' or 'estimated' (see the module docstring)."""
    if transforms.bounds is not None:
        return transforms.bounds, "file"
    return estimate_bounds(transforms.c2w_gl[:, :3, :4]), "estimated"


def load_transforms(
    scene: Path,
    *,
    prepared: dict | None,
    factor: int = 8,
    llffhold: int = 8,
    ndc: bool = True,
    spherify: bool = False,
    bd_factor: float = BD_FACTOR,
    white_background: bool = False,
) -> SceneData:
    """Load a transforms.json scene whose images the ``undistort-<factor>`` stage has prepared.

    ``prepared``: that stage's result (names, files, focal, full_size, full_focal, undistorted);
    ``nerfpipe train`` runs it first; from Python: ``nerfpipe.stages.undistort.run(...).result``."""
    scene = Path(scene)
    if ndc and spherify:
        raise NerfpipeError("ndc and spherify cannot both be on: NDC is for forward-facing scenes, spherify for 360-degree ones; set ndc = false.")
    frames = read_frames(scene / scene_layout.TRANSFORMS)
    names = frames.transforms.file_paths
    if not prepared or prepared.get("names") != names:
        raise NerfpipeError(
            f"The images of {scene / scene_layout.TRANSFORMS} at factor {factor} are not prepared: run "
            f"`nerfpipe train {scene}` (it undistorts and downsamples them into {images_dir_name(factor)}/)."
        )
    folder = scene / images_dir_name(factor)
    images = np.stack([read_image(folder / name) for name in prepared["files"]])
    bounds, bounds_from = frame_bounds(frames.transforms)
    source = {"folder": str(scene), "poses": scene_layout.TRANSFORMS, "images": folder.name, "factor": factor,
              "full_size": prepared["full_size"], "full_focal": prepared["full_focal"], "bd_factor": bd_factor,
              "spherify": spherify, "llffhold": llffhold, "bounds": bounds_from, "undistorted": prepared["undistorted"]}
    return llff_scene_data(names, images, frames.transforms.c2w_gl[:, :3, :4], bounds, float(prepared["focal"]),
                           llffhold=llffhold, ndc=ndc, spherify=spherify, bd_factor=bd_factor,
                           white_background=white_background, source=source)
