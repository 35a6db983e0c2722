"""The undistort stage: the images of a transforms.json scene -> ``images_undistorted_<k>/`` for training.

``run(UndistortParams(scene, factor), reporter)`` is cached as stage ``undistort-<k>`` (one manifest
and one folder per factor): its inputs are the frames' names and cameras and every image named (not
the poses), so a second training at the same factor reads the prepared PNGs and undistorts nothing. ``nerfpipe train`` runs
it before loading a transforms.json scene (:func:`nerfpipe.datasets.transforms.load_transforms`).

Each frame, in dataset order (sorted file_path), is read upright, RGB, 8-bit (as ingest reads photos)
and then:

- a camera that already is the renderer's (no distortion, fl_x == fl_y, centred principal point) is
  downsampled and centre-cropped exactly as ingest makes ``images_<k>/``
  (:func:`nerfpipe.photos.downsample`): focal / k, size a multiple of 16;
- any other camera is resampled (:func:`nerfpipe.cameras.undistort.resample`) at full resolution
  onto a centred pinhole camera of one focal length for every frame
  (:func:`~nerfpipe.cameras.undistort.common_focal`), of the largest centred size that is a multiple
  of 16 * k and that the photo covers entirely, then area-downsampled by k.

Given a folder of object masks (a nerfpipe scene of an object cut out on white), each frame's mask is
prepared the same way into ``masks_undistorted_<k>/``: the silhouettes its visual hull is carved from.

The manifest's result is the contract with the loader: ``names`` (file_path per frame), ``files``
(PNG per frame in ``images_undistorted_<k>/``, and of the same name in ``masks_undistorted_<k>/`` when
``masks`` is not None), ``focal`` and ``size`` of those PNGs, ``full_focal`` and ``full_size`` before
downsampling, ``undistorted`` (whether frames were resampled).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from nerfpipe import scene as scene_layout
from nerfpipe.cache import StageResult, StageSpec, run_stage
from nerfpipe.cameras.formats import PinholeCamera
from nerfpipe.cameras.undistort import border_inside, common_focal, is_plain, resample
from nerfpipe.datasets.transforms import images_dir_name, read_frames
from nerfpipe.errors import NerfpipeError
from nerfpipe.io import PNG_COMPRESSION, write_png
from nerfpipe.photos import PhotoError, crop_box, downsample, read_rgb8
from nerfpipe.progress import Reporter
from nerfpipe.stages.results import UndistortResult

STAGE_PREFIX = "undistort"
"""The stage is ``undistort-<factor>``: one cache entry per downsampling factor."""
VERSION = "1"
SHRINK_STEP = 0.01
"""When the photo does not cover the resampled image, shrink it by this fraction of the photo's size at a time ..."""
MAX_SHRINK = 0.5
"""... down to this fraction at most (beyond, the camera's numbers cannot be right)."""


def stage_name(factor: int) -> str:
    return f"{STAGE_PREFIX}-{factor}"


@dataclass(frozen=True)
class UndistortParams:
    scene: Path = Path(".")
    """A folder with transforms.json and the images it names."""
    factor: int = 8
    """Downsampling factor (the recipe's data.factor)."""
    masks: Path | None = None
    """A folder of object masks named by each frame's stem (``<stem>.png``, 255 on the object): each is
    resampled and downsampled as its image is, into ``masks_undistorted_<k>/`` (an object cut out on
    white carves its visual hull from them). Used only when every frame has one."""
    force: bool = False
    workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    """Threads reading and resampling images."""


@dataclass(frozen=True)
class Plan:
    """The camera every frame is resampled onto (full resolution), or None where none is resampled."""

    focal: float
    width: int
    height: int
    resample: bool


def plan(cameras: list[PinholeCamera], factor: int) -> Plan:
    """What the images become (see the module docstring); a NerfpipeError if the cameras cannot be used."""
    sizes = sorted({(c.w, c.h) for c in cameras})
    if len(sizes) > 1:
        raise NerfpipeError(
            f"The frames of this transforms.json have {len(sizes)} image sizes ({', '.join(f'{w}x{h}' for w, h in sizes[:3])}): "
            "training needs one size; split the frames into one transforms.json per size."
        )
    w, h = sizes[0]
    try:
        _, _, width, height = crop_box(w, h, factor)
    except ValueError:
        raise NerfpipeError(f"The {w}x{h} images are too small for factor {factor}: choose a smaller --factor.") from None
    distinct = set(cameras)
    if len(distinct) == 1 and is_plain(cameras[0]):
        return Plan(cameras[0].fl_x, width, height, False)
    focal = common_focal(cameras)
    for shrink in np.arange(0.0, MAX_SHRINK, SHRINK_STEP):
        try:
            _, _, width, height = crop_box(round(w * (1 - shrink)), round(h * (1 - shrink)), factor)
        except ValueError:
            break
        if all(border_inside(c, focal, width, height) for c in distinct):
            return Plan(focal, width, height, True)
    raise NerfpipeError(
        f"The {w}x{h} images cannot be undistorted: their camera (focal {focal:.6g}, principal point "
        f"{cameras[0].cx:.6g}, {cameras[0].cy:.6g}, k1 {cameras[0].k1:.4g}) leaves no usable centred image; "
        "check the intrinsics in transforms.json."
    )


def _prepare_one(path: Path, cam: PinholeCamera, p: Plan, factor: int, dest: Path, mask: Path | None, mask_dest: Path) -> None:
    try:
        rgb, _exif = read_rgb8(path)
    except PhotoError as e:
        raise NerfpipeError(f"Cannot read the image {path}: {e}; replace it or remove its frame.") from None
    if rgb.shape[:2] != (cam.h, cam.w):
        turned = " (turned by its EXIF orientation?)" if rgb.shape[:2] == (cam.w, cam.h) else ""
        raise NerfpipeError(
            f"{path} is {rgb.shape[1]}x{rgb.shape[0]} but its camera in transforms.json is {cam.w}x{cam.h}{turned}: "
            "give the images the file's cameras were made for."
        )
    write_png(dest, _prepare(rgb, cam, p, factor), PNG_COMPRESSION)
    if mask is not None:
        alpha = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)
        if alpha is None or alpha.shape != rgb.shape[:2]:
            raise NerfpipeError(f"The mask {mask} is not a {cam.w}x{cam.h} image like its photo: run `nerfpipe ingest` again.")
        write_png(mask_dest, _prepare(alpha, cam, p, factor), PNG_COMPRESSION)


def _prepare(image: np.ndarray, cam: PinholeCamera, p: Plan, factor: int) -> np.ndarray:
    """(h, w[, C]) uint8 photo or mask -> the plan's pinhole image, downsampled by ``factor`` (a mask's
    edge comes out soft: bilinear resampling, then the area average)."""
    if p.resample:
        image = resample(image, cam, p.focal, p.width, p.height)
    return downsample(image, factor)


def run(params: UndistortParams, reporter: Reporter | None = None) -> StageResult:
    """Prepare (or find up to date) ``images_undistorted_<factor>/`` of a transforms.json scene."""
    reporter = reporter or Reporter()
    scene = Path(params.scene)
    factor = int(params.factor)
    if factor < 1:
        raise NerfpipeError(f"Factor {factor} is not a downsampling factor: use 1 or more, such as 4 or 8.")
    frames = read_frames(scene / scene_layout.TRANSFORMS)
    rel = images_dir_name(factor)
    index = {c: i for i, c in enumerate(dict.fromkeys(frames.transforms.cameras))}
    masks = [Path(params.masks) / f"{path.stem}.png" for path in frames.files] if params.masks is not None else []
    if not all(m.is_file() for m in masks):
        masks = []
    mask_rel = scene_layout.undistorted_masks_dir_name(factor)
    spec = StageSpec(
        name=stage_name(factor),
        version=VERSION,
        # the images depend on the frames' names, cameras and photos, not on the poses: editing the
        # poses in transforms.json retrains but does not undistort again
        params={"factor": factor, "names": frames.transforms.file_paths, "cameras": [c.to_json() for c in index],
                "camera_of_frame": [index[c] for c in frames.transforms.cameras], **({"masks": True} if masks else {})},
        inputs=tuple(frames.files) + tuple(masks),
        outputs=[rel] + ([mask_rel] if masks else []),
    )

    def body(out: Path) -> dict:
        cams = frames.transforms.cameras
        p = plan(cams, factor)
        (out / rel).mkdir(parents=True)
        if masks:
            (out / mask_rel).mkdir(parents=True)
        files = [f"{i:04d}_{path.stem}.png" for i, path in enumerate(frames.files)]
        with reporter.task("undistort" if p.resample else "downsample", total=len(files), unit="images") as task:
            ex = ThreadPoolExecutor(max_workers=params.workers)
            try:
                futures = [ex.submit(_prepare_one, path, cam, p, factor, out / rel / name, mask, out / mask_rel / name)
                           for path, cam, name, mask in zip(frames.files, cams, files, masks or [None] * len(files))]
                for fut in futures:
                    fut.result()
                    task.advance(1)
            except BaseException:
                ex.shutdown(wait=True, cancel_futures=True)
                raise
            ex.shutdown(wait=True)
        return {
            "names": frames.transforms.file_paths,
            "files": files,
            "focal": p.focal / factor,
            "size": [p.width // factor, p.height // factor],
            "full_focal": p.focal,
            "full_size": [p.width, p.height],
            "undistorted": p.resample,
            "masks": files if masks else None,
        }

    return run_stage(scene, spec, body, force=params.force, reporter=reporter, result_type=UndistortResult)
