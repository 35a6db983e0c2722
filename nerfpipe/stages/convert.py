"""``nerfpipe convert SRC DST``: poses_bounds.npy <-> transforms.json, chosen by the file suffixes.

| SRC -> DST | what happens |
| --- | --- |
| ``.npy`` -> ``.json`` | exact: hwf -> a centred pinhole camera, bounds -> per-frame ``near``/``far``; image names from ``--images DIR``, else the poses manifest of a nerfpipe scene (``.nerfpipe/poses.json``), else the sorted ``images/`` beside SRC (the LLFF loader's rule) |
| ``.json`` -> ``.npy`` | rows in sorted file_path order (LLFF's row order); exact for centred pinhole cameras with fl_x == fl_y and near/far; anything else the nearest LLFF camera, with one warning sentence naming what was lost |
| ``.json`` -> ``.json`` | the same file with its frames' paths made relative to DST (with ``--drop-missing``: only the frames whose image exists) |

The conversions themselves are :func:`~nerfpipe.cameras.formats.transforms_from_poses_bounds`
and :func:`~nerfpipe.cameras.formats.poses_bounds_from_transforms`. A transforms.json naming
images that are missing stops with one sentence unless ``--drop-missing``. DST is written through a
temporary file and renamed into place; an existing DST is kept unless ``force``; SRC is never written.
Not a cached stage: it writes a file the user names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nerfpipe import scene as scene_layout
from nerfpipe.cache import load_manifest
from nerfpipe.cameras.formats import (
    poses_bounds_from_transforms,
    read_poses_bounds,
    transforms_from_poses_bounds,
    write_poses_bounds,
    write_transforms,
)
from nerfpipe.datasets.llff import list_published_images
from nerfpipe.datasets.transforms import read_frames
from nerfpipe.errors import NerfpipeError
from nerfpipe.photos import PhotoError, probe
from nerfpipe.io import relative_path, write_atomic
from nerfpipe.progress import Reporter

POSES_BOUNDS_SUFFIX = ".npy"
TRANSFORMS_SUFFIX = ".json"
DROPPED_NAMES_SHOWN = 5


@dataclass(frozen=True)
class ConvertParams:
    src: Path
    """poses_bounds.npy or transforms.json to read."""
    dst: Path
    """File to write; its suffix (.npy or .json) chooses the format."""
    images: Path | None = None
    """poses_bounds.npy -> transforms.json: the folder of the images the rows belong to (sorted names)."""
    drop_missing: bool = False
    """transforms.json: leave out the frames whose image is missing instead of stopping."""
    force: bool = False
    """Overwrite DST if it exists."""


@dataclass
class ConvertResult:
    src: Path
    dst: Path
    conversion: str
    """'poses_bounds -> transforms', 'transforms -> poses_bounds' or 'transforms -> transforms'."""
    frames: int
    dropped: list[str] = field(default_factory=list)
    """file_path of the frames left out with drop_missing."""
    warnings: list[str] = field(default_factory=list)


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == POSES_BOUNDS_SUFFIX:
        return "poses_bounds"
    if suffix == TRANSFORMS_SUFFIX:
        return "transforms"
    raise NerfpipeError(f"{path} is neither a .npy (poses_bounds) nor a .json (transforms) file: name it with one of those suffixes.")


def image_names_for(src: Path, count: int, images: Path | None) -> tuple[Path, list[str]]:
    """(folder, names) of the images the rows of the poses_bounds.npy ``src`` belong to (see the table above)."""
    scene = src.parent
    if images is None:
        poses = load_manifest(scene, "poses")
        names = (poses or {}).get("result", {}).get("images")
        if names and src.name == scene_layout.POSES_BOUNDS:
            return scene / scene_layout.IMAGES, list(names)
        images = scene / scene_layout.IMAGES
        if not images.is_dir():
            raise NerfpipeError(
                f"There is no {scene_layout.IMAGES}/ folder beside {src} to name its {count} images: pass the folder "
                "of the photos its rows belong to with --images DIR."
            )
    if not Path(images).is_dir():
        raise NerfpipeError(f"--images {images} is not a folder: pass the folder of the photos the rows of {src} belong to.")
    names = list_published_images(Path(images))
    if len(names) != count:
        raise NerfpipeError(
            f"{src} holds {count} cameras but {images} has {len(names)} images: pass the folder of exactly those "
            "photos with --images DIR."
        )
    return Path(images), names


def _size_warning(folder: Path, names: list[str], poses_llff: np.ndarray) -> str | None:
    """A sentence when the first image is not the size the cameras were made for."""
    try:
        info = probe(folder / names[0])
    except (PhotoError, OSError):
        return None
    h, w = (int(round(x)) for x in poses_llff[0, :2, 4])
    if (info.width, info.height) == (w, h):
        return None
    return (f"The cameras are for {w}x{h} images but {folder / names[0]} is {info.width}x{info.height}: "
            "point the transforms.json at the full-resolution photos before training on it.")


def _pb_to_tj(params: ConvertParams, result: ConvertResult) -> None:
    try:
        poses_llff, bounds = read_poses_bounds(params.src)
    except (OSError, ValueError) as e:
        raise NerfpipeError(f"{params.src} cannot be read as an LLFF poses_bounds.npy ({e}): pass such a file.") from None
    folder, names = image_names_for(params.src, poses_llff.shape[0], params.images)
    size = _size_warning(folder, names, poses_llff)
    if size:
        result.warnings.append(size)
    file_paths = [relative_path(folder / n, params.dst.parent) for n in names]
    t = transforms_from_poses_bounds(poses_llff, bounds, file_paths)
    shared = len(set(t.cameras)) == 1
    write_atomic(params.dst, lambda tmp: write_transforms(tmp, t.file_paths, t.c2w_gl, t.cameras[0] if shared else t.cameras,
                                                           camera_model=t.camera_model, bounds=t.bounds))
    result.frames = len(file_paths)


def _tj_to_pb(params: ConvertParams, result: ConvertResult) -> None:
    frames = read_frames(params.src, drop_missing=params.drop_missing)
    result.dropped = frames.missing
    poses_llff, bounds, losses = poses_bounds_from_transforms(frames.transforms)
    if losses:
        result.warnings.append(f"{params.dst.name} cannot hold everything in {params.src.name}: {'; '.join(losses)}.")
    folders = {f.parent for f in frames.files}
    if len(folders) != 1 or list_published_images(folders.pop()) != sorted(f.name for f in frames.files):
        result.warnings.append(
            f"{params.dst.name} names no images and LLFF loaders pair its rows with the sorted images of one folder, "
            "but these frames' images are not exactly the images of one folder: keep the rows and images in step yourself."
        )
    write_atomic(params.dst, lambda tmp: write_poses_bounds(tmp, poses_llff, bounds))
    result.frames = poses_llff.shape[0]


def _tj_to_tj(params: ConvertParams, result: ConvertResult) -> None:
    frames = read_frames(params.src, drop_missing=params.drop_missing)
    result.dropped = frames.missing
    data = json.loads(params.src.read_text())
    keep = set(frames.transforms.file_paths)
    kept = [f for f in data["frames"] if str(f.get("file_path", "")) in keep]
    for frame, path in zip(sorted(kept, key=lambda f: str(f["file_path"])), frames.files):
        frame["file_path"] = relative_path(path, params.dst.parent)
    data["frames"] = kept
    write_atomic(params.dst, lambda tmp: tmp.write_text(json.dumps(data, indent=2)))
    result.frames = len(kept)


def run(params: ConvertParams, reporter: Reporter | None = None) -> ConvertResult:
    """Convert ``params.src`` into ``params.dst`` (see the module docstring); warnings go to the reporter too."""
    reporter = reporter or Reporter()
    src, dst = Path(params.src), Path(params.dst)
    params = ConvertParams(src, dst, params.images, params.drop_missing, params.force)
    kinds = (_kind(src), _kind(dst))
    if not src.is_file():
        raise NerfpipeError(f"{src} {scene_layout.missing(src, 'file')}: pass the poses_bounds.npy or transforms.json to convert.")
    if dst.exists() and dst.resolve() == src.resolve():
        raise NerfpipeError(f"{dst} is the file being converted and is never overwritten: write to another file.")
    if dst.exists() and not params.force:
        raise NerfpipeError(f"{dst} already exists: pass --force to overwrite it, or write to another file.")
    if kinds == ("poses_bounds", "poses_bounds"):
        raise NerfpipeError(f"{src} and {dst} are both poses_bounds.npy files: there is nothing to convert; copy it instead.")
    if params.images is not None and kinds[0] != "poses_bounds":
        raise NerfpipeError("--images only names the photos of a poses_bounds.npy; a transforms.json names its own images.")
    result = ConvertResult(src, dst, f"{kinds[0]} -> {kinds[1]}", 0)
    {("poses_bounds", "transforms"): _pb_to_tj, ("transforms", "poses_bounds"): _tj_to_pb,
     ("transforms", "transforms"): _tj_to_tj}[kinds](params, result)
    if result.dropped:
        more = f" and {len(result.dropped) - DROPPED_NAMES_SHOWN} more" if len(result.dropped) > DROPPED_NAMES_SHOWN else ""
        result.warnings.insert(0, f"{len(result.dropped)} frames whose image is missing are left out: "
                                  f"{', '.join(result.dropped[:DROPPED_NAMES_SHOWN])}{more}.")
    for sentence in result.warnings:
        reporter.warn(sentence)
    return result
