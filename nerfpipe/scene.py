"""The scene folder: where each stage reads and writes (see DESIGN.md, "The scene folder")."""

from __future__ import annotations

import re
from pathlib import Path

from nerfpipe.errors import NerfpipeError

IMAGES = "images"
MASKS = "masks"
"""Object masks (PNG, 255 = object) of photos cut out on white or on transparency, named <stem>.png."""
PHOTOS = "photos"
COLMAP = "colmap"
POSES_BOUNDS = "poses_bounds.npy"
TRANSFORMS = "transforms.json"
RUNS = "runs"
RENDERS = "renders"


def natural_key(name: str) -> tuple:
    """Sort key of a file name in natural order: '2.jpg' before '10.jpg'. A nerfpipe scene's dataset order
    (the rows of poses_bounds.npy). Like Python's sorted() (case first) except that runs of digits compare as
    numbers: for names with equally many digits (IMG_4026.JPG ...) it is the sorted
    order of the published LLFF scenes."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name))


def images_dir_name(factor: int) -> str:
    """'images' for factor 1, else 'images_<factor>'."""
    return IMAGES if factor == 1 else f"{IMAGES}_{factor}"


def undistorted_dir_name(factor: int) -> str:
    """``images_undistorted_<k>``: the photos resampled onto a centred pinhole camera, downsampled by k
    (the undistort stage, for a transforms.json scene or a nerfpipe scene whose SfM camera has lens distortion)."""
    return f"{IMAGES}_undistorted_{factor}"


def undistorted_masks_dir_name(factor: int) -> str:
    """``masks_undistorted_<k>``: the object masks of ``masks/`` resampled and downsampled as the photos are into
    :func:`undistorted_dir_name` (an object cut out on white, whose silhouettes carve its visual hull)."""
    return f"{MASKS}_undistorted_{factor}"


def images_dir(scene: Path, factor: int = 1) -> Path:
    return Path(scene) / images_dir_name(factor)


def output_names(factors) -> list[str]:
    """The folders ingest writes: images/, images_<k>/ for each factor, masks/."""
    return [IMAGES] + [images_dir_name(k) for k in factors] + [MASKS]


def find_photos_dir(scene: Path) -> Path:
    """Where a scene's photos are: ``scene/photos`` if it exists, else the scene folder itself."""
    scene = Path(scene)
    return scene / PHOTOS if (scene / PHOTOS).is_dir() else scene


def missing(path: Path, want: str = "folder") -> str:
    """Why ``path`` is not the ``want`` ("folder" or "file") asked for: 'does not exist', 'is a file, not a folder'."""
    path = Path(path)
    if not path.exists():
        return "does not exist"
    return "is a file, not a folder" if want == "folder" else "is a folder, not a file"


def require_folder(path: Path, label: str, advice: str) -> Path:
    """``path`` if it is a folder; else one sentence: '{label} {path} does not exist: {advice}.'"""
    path = Path(path)
    if not path.is_dir():
        raise NerfpipeError(f"{label} {path} {missing(path)}: {advice}.")
    return path
