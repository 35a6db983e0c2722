"""The scene folder: where each stage reads and writes (see DESIGN.md, "The scene folder")."""

from __future__ import annotations

from pathlib import Path

IMAGES = "images"
PHOTOS = "photos"
COLMAP = "colmap"
POSES_BOUNDS = "poses_bounds.npy"
TRANSFORMS = "transforms.json"
RUNS = "runs"
RENDERS = "renders"


def images_dir_name(factor: int) -> str:
    """'images' for factor 1, else 'images_<factor>'."""
    return IMAGES if factor == 1 else f"{IMAGES}_{factor}"


def images_dir(scene: Path, factor: int = 1) -> Path:
    return Path(scene) / images_dir_name(factor)


def output_names(factors) -> list[str]:
    return [IMAGES] + [images_dir_name(k) for k in factors]


def find_photos_dir(scene: Path) -> Path:
    """Where a scene's photos are: ``scene/photos`` if it exists, else the scene folder itself."""
    scene = Path(scene)
    return scene / PHOTOS if (scene / PHOTOS).is_dir() else scene
