"""LLFF scene folders: ``poses_bounds.npy`` + ``images_<k>/`` (made by nerfpipe, or the published layout).

What the reference loader does, step by step (each step named in :mod:`nerfpipe.cameras`):

1. read ``poses_bounds.npy`` (N, 17): LLFF camera-to-world [down, right, back, centre], the
   full-resolution (H, W, focal) and per-camera near/far bounds;
2. take H, W from the images in ``images_<k>/`` and divide the focal length by k (nerfpipe's
   ``images_k`` are centre-cropped before downsampling, so the principal point stays at the centre);
3. LLFF axes -> OpenGL axes (:func:`~nerfpipe.cameras.conventions.gl_from_llff`);
4. bd_factor rescale (0.75), recenter, and spherify for 360-degree captures
   (:func:`~nerfpipe.cameras.normalize.normalize_llff`);
5. hold out every ``llffhold``-th image (0, 8, 16, ... for llffhold 8) for evaluation;
6. near/far: NDC rays span t in [0, 1]; without NDC, 0.9 * min(bounds) .. max(bounds).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from nerfpipe import scene as scene_layout
from nerfpipe.cameras.bounds import visual_hull
from nerfpipe.cameras.conventions import gl_from_llff
from nerfpipe.cameras.formats import read_poses_bounds
from nerfpipe.cameras.normalize import BD_FACTOR, apply_to_points, normalize_llff
from nerfpipe.datasets.base import SceneData, box_around, frustum_corners
from nerfpipe.errors import NerfpipeError
from nerfpipe.nerf.interface import SceneBox

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
NEAR_MARGIN = 0.9
"""Without NDC, rays start at this fraction of the nearest bound (the reference code's choice)."""
SPHERE_BOX = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
"""Region of interest of a spherified capture: the cameras lie at radius about 1 around it."""
OBJECT_PERCENTILES = (2.0, 98.0)
"""An object's box spans these percentiles of its sparse points on each axis (stray points left out) ..."""
OBJECT_MARGIN = 0.15
"""... grown by this fraction of its size on each side (shiny or plain parts of an object have few points)."""


def list_published_images(folder: Path) -> list[str]:
    """Image file names in ``folder``, sorted (the published LLFF layout's dataset order)."""
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1]."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise NerfpipeError(f"Cannot read the image {path}: replace it or run nerfpipe ingest again.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def image_files(scene: Path, factor: int, stems: list[str] | None) -> list[Path]:
    """The images_<factor> files in dataset order: ``<stem>.png`` for each registered stem, or every image (published layout)."""
    folder = scene_layout.images_dir(scene, factor)
    if not folder.is_dir():
        raise NerfpipeError(
            f"There is no {folder.name}/ folder in {scene}: run `nerfpipe ingest PHOTOS --scene {scene} --factors {factor}` "
            f"or train at another factor."
        )
    if stems is None:
        return [folder / name for name in list_published_images(folder)]
    paths = [folder / f"{stem}.png" for stem in stems]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise NerfpipeError(
            f"{missing[0]} is missing ({len(missing)} of {len(paths)} images in {folder.name}/): run "
            f"`nerfpipe ingest PHOTOS --scene {scene} --factors {factor}` again."
        )
    return paths


def prepared_files(scene: Path, factor: int, stems: list[str] | None, prepared: dict) -> list[Path]:
    """The undistort stage's PNG of each stem (``images_undistorted_<factor>/``), in the stems' order."""
    if stems is None:
        raise ValueError("undistorted images need the registered stems of a nerfpipe scene")
    by_stem = {Path(name).stem: file for name, file in zip(prepared["names"], prepared["files"])}
    missing = [s for s in stems if s not in by_stem]
    if missing:
        raise NerfpipeError(f"The undistorted images of {scene} lack {missing[0]}: run `nerfpipe train {scene}` again.")
    folder = scene / scene_layout.undistorted_dir_name(factor)
    return [folder / by_stem[s] for s in stems]


def read_poses_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~nerfpipe.cameras.formats.read_poses_bounds` with a damaged file turned into one sentence."""
    path = Path(path)
    try:
        return read_poses_bounds(path)
    except FileNotFoundError:
        raise NerfpipeError(f"There is no {path.name} in {path.parent}: run `nerfpipe poses {path.parent}` first.") from None
    except (OSError, ValueError) as e:
        raise NerfpipeError(f"{path} is not a usable LLFF poses file ({e}): run `nerfpipe poses {path.parent} --force` "
                            "to write it again, or restore it.") from None


def load_llff(
    scene: Path,
    *,
    factor: int = 8,
    llffhold: int = 8,
    ndc: bool = True,
    spherify: bool = False,
    bd_factor: float = BD_FACTOR,
    white_background: bool = False,
    stems: list[str] | None = None,
    object_points: np.ndarray | None = None,
    prepared: dict | None = None,
    silhouettes: np.ndarray | None = None,
) -> SceneData:
    """Load an LLFF scene folder. ``stems``: the registered images' stems in poses_bounds order
    (a nerfpipe scene); None reads every image of images_<factor>/ in sorted order (published layout).
    ``prepared``: the result of the scene's ``undistort-<factor>`` stage (a nerfpipe scene whose SfM
    camera has lens distortion): its pinhole images and focal replace images_<factor>/ and the focal of
    poses_bounds.npy; the poses and bounds stay. ``silhouettes`` (N, H, W) in [0, 1]: each image's object
    mask, for an object cut out on white (with ``object_points``): its visual hull comes with the data."""
    scene = Path(scene)
    if ndc and spherify:
        raise NerfpipeError("ndc and spherify cannot both be on: NDC is for forward-facing scenes, spherify for 360-degree ones; set ndc = false.")
    pb_path = scene / scene_layout.POSES_BOUNDS
    if not pb_path.exists():
        raise NerfpipeError(f"There is no {pb_path.name} in {scene}: run `nerfpipe poses --scene {scene}` first.")
    poses_llff, bounds = read_poses_file(pb_path)
    paths = image_files(scene, factor, stems) if prepared is None else prepared_files(scene, factor, stems, prepared)
    if len(paths) != poses_llff.shape[0]:
        raise NerfpipeError(
            f"{pb_path} holds {poses_llff.shape[0]} cameras but {paths[0].parent if paths else scene} has {len(paths)} images: "
            "run `nerfpipe poses` again so that they match."
        )
    images = np.stack([read_image(p) for p in paths])
    height, width = images.shape[1:3]
    if any(img.shape[:2] != (height, width) for img in images):
        raise NerfpipeError(f"The images in {paths[0].parent} differ in size: run nerfpipe ingest again.")
    full_h, full_w, full_focal = poses_llff[0, :, 4]
    full_size, focal = [int(full_w), int(full_h)], float(full_focal) / factor
    if prepared is not None:
        full_size, full_focal, focal = prepared["full_size"], prepared["full_focal"], float(prepared["focal"])
    source = {"folder": str(scene), "poses": pb_path.name, "images": paths[0].parent.name, "factor": factor,
              "full_size": full_size, "full_focal": float(full_focal), "bd_factor": bd_factor,
              "spherify": spherify, "llffhold": llffhold, "undistorted": prepared is not None}
    names = [p.name for p in paths] if prepared is None else [f"{s}.png" for s in stems]
    return llff_scene_data(names, images, gl_from_llff(poses_llff), bounds, focal,
                           llffhold=llffhold, ndc=ndc, spherify=spherify, bd_factor=bd_factor,
                           white_background=white_background, source=source, object_points=object_points,
                           silhouettes=silhouettes)


def object_box(points: np.ndarray, steps) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The box of an object from its sparse points (P, 3) in the input world, in the normalised world."""
    for step in steps:
        points = apply_to_points(points, step)
    lo, hi = np.percentile(points, OBJECT_PERCENTILES, axis=0)
    pad = (hi - lo) * OBJECT_MARGIN
    return tuple(float(v) for v in lo - pad), tuple(float(v) for v in hi + pad)


def llff_scene_data(
    names: list[str],
    images: np.ndarray,
    c2w_gl: np.ndarray,
    bounds: np.ndarray,
    focal: float,
    *,
    llffhold: int,
    ndc: bool,
    spherify: bool,
    bd_factor: float,
    white_background: bool,
    source: dict,
    object_points: np.ndarray | None = None,
    silhouettes: np.ndarray | None = None,
) -> SceneData:
    """Steps 4-6 above, shared with the transforms.json loader: images (N, H, W, 3) float32, cameras
    c2w_gl (N, 3, 4) in any world with their bounds (N, 2), focal in pixels of these images.
    ``object_points`` (P, 3) in the cameras' world: an object on white, bounded by the box of these points;
    with ``silhouettes`` (N, H, W) in [0, 1], its masks in these images, the object's visual hull in that
    box is carved from the training views' (:func:`~nerfpipe.cameras.bounds.visual_hull`, as for a
    Blender scene's alpha), so that the fast model never samples outside it."""
    n, height, width = images.shape[:3]
    c2w, bounds_n, steps = normalize_llff(c2w_gl, bounds, bd_factor=bd_factor, spherify=spherify)
    i_test = list(range(0, n, llffhold)) if llffhold > 0 else []
    i_train = [i for i in range(n) if i not in set(i_test)]
    if not i_train:
        raise NerfpipeError(f"With llffhold {llffhold} no image of {n} is left for training: raise llffhold or set it to 0.")

    if ndc:
        near, far = 0.0, 1.0
    else:
        near, far = float(bounds_n.min() * NEAR_MARGIN), float(bounds_n.max())
    c2w_t = torch.from_numpy(c2w).float()
    hull = None
    if object_points is not None and not ndc:
        box = SceneBox("bounded", object_box(np.asarray(object_points, dtype=np.float64), steps), near, far,
                       white_background)
        if silhouettes is not None:
            hull = visual_hull(torch.from_numpy(np.asarray(silhouettes, dtype=np.float32)[i_train]), c2w_t[i_train],
                               focal, box.aabb)
    elif spherify:
        box = SceneBox("unbounded", SPHERE_BOX, near, far, white_background)
    else:
        ray_near, ray_far = (0.0, 1.0) if ndc else (near, far)
        corners = frustum_corners(c2w_t[i_train], height, width, focal, ray_near, ray_far, ndc)
        box = SceneBox("ndc" if ndc else "bounded", box_around(corners), ray_near, ray_far, white_background)
    return SceneData(
        kind="llff",
        names=list(names),
        images=torch.from_numpy(images),
        c2w=c2w_t,
        height=height,
        width=width,
        focal=focal,
        near=near,
        far=far,
        i_train=i_train,
        i_test=i_test,
        ndc=ndc,
        white_background=white_background,
        scene_box=box,
        bounds=bounds_n,
        steps=steps,
        source=source,
        hull=hull,
    )
