"""Blender synthetic scenes (the NeRF paper's lego, ship, ...): ``transforms_{train,val,test}.json`` + RGBA PNGs.

Each frame's ``transform_matrix`` is already an OpenGL camera-to-world matrix; the focal length
comes from ``camera_angle_x``; rays run from 2 to 6 (the reference code's constants). RGBA is
composited on white when the recipe asks for a white background, as the reference code does
(``rgb * a + (1 - a)``); otherwise the alpha channel is dropped. ``half_res`` halves the images
with an area filter and the focal length with them. Training uses the train split, evaluation
the test split; the val split is counted but not loaded. The scene box is the box around the
object's visual hull, carved from the training views' alpha (a fifth of the 3 m box for lego), so
that the fast recipe's voxels and samples all fall near the object; the hull itself comes with the
data, and the fast model never samples outside it (a third of lego's box).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from nerfpipe.cameras.bounds import visual_hull
from nerfpipe.datasets.base import SceneData
from nerfpipe.errors import NerfpipeError
from nerfpipe.nerf.interface import SceneBox

NEAR, FAR = 2.0, 6.0
"""Ray extent of the synthetic scenes (cameras on a sphere of radius about 4 around the object)."""
BLENDER_BOX = ((-1.5, -1.5, -1.5), (1.5, 1.5, 1.5))
"""The objects fit in this box; the scene box is the part of it around the object's visual hull
(:func:`~nerfpipe.cameras.bounds.visual_hull` of the training views' alpha), which the data also
carries for the model to skip the space outside it."""
SPLITS = ("train", "val", "test")


def is_blender_folder(folder: Path) -> bool:
    return (Path(folder) / "transforms_train.json").exists()


def _read_split(folder: Path, split: str) -> dict:
    path = folder / f"transforms_{split}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise NerfpipeError(f"There is no {path.name} in {folder}: a Blender scene needs transforms_train.json and transforms_test.json.") from None
    except ValueError as e:
        raise NerfpipeError(f"{path} is not valid JSON ({e}): fix or replace it.") from None


def _read_rgba(path: Path) -> np.ndarray:
    """(H, W, 4) float32 RGBA in [0, 1] (opaque alpha for an RGB file)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise NerfpipeError(f"Cannot read the image {path}: check that the file named in the transforms file exists.")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGRA)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA).astype(np.float32) / scale


def _frame_path(folder: Path, file_path: str) -> Path:
    path = folder / file_path
    return path if path.suffix else path.with_suffix(".png")


def load_blender(folder: Path, *, half_res: bool = True, white_background: bool = True) -> SceneData:
    folder = Path(folder)
    metas = {s: _read_split(folder, s) for s in ("train", "test")}
    val_path = folder / "transforms_val.json"
    n_val = len(json.loads(val_path.read_text())["frames"]) if val_path.exists() else 0
    names, images, c2w, i_train, i_test = [], [], [], [], []
    for split, meta in metas.items():
        for frame in meta["frames"]:
            path = _frame_path(folder, frame["file_path"])
            rgba = _read_rgba(path)
            if half_res:
                rgba = cv2.resize(rgba, (rgba.shape[1] // 2, rgba.shape[0] // 2), interpolation=cv2.INTER_AREA)
            (i_train if split == "train" else i_test).append(len(images))
            names.append(path.relative_to(folder).as_posix())
            images.append(rgba)
            c2w.append(np.asarray(frame["transform_matrix"], dtype=np.float64)[:3, :4])
    if not metas["train"]["frames"]:
        raise NerfpipeError(f"{folder / 'transforms_train.json'} lists no frames: add the training views.")
    shapes = {img.shape for img in images}
    if len(shapes) != 1:
        raise NerfpipeError(f"The images of {folder} differ in size ({sorted(shapes)[:2]}): a Blender scene needs one size.")
    rgba = np.stack(images)
    height, width = rgba.shape[1:3]
    full_width = width * 2 if half_res else width
    focal = 0.5 * full_width / math.tan(0.5 * float(metas["train"]["camera_angle_x"]))
    if half_res:
        focal /= 2.0
    rgb = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:]) if white_background else rgba[..., :3]
    c2w_t = torch.from_numpy(np.stack(c2w)).float()
    hull = visual_hull(torch.from_numpy(rgba[i_train, ..., 3]), c2w_t[i_train], focal, BLENDER_BOX)
    box = SceneBox("bounded", hull.bounds(), NEAR, FAR, white_background)
    return SceneData(
        kind="blender",
        names=names,
        images=torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)),
        c2w=c2w_t,
        height=height,
        width=width,
        focal=float(focal),
        near=NEAR,
        far=FAR,
        i_train=i_train,
        i_test=i_test,
        ndc=False,
        white_background=white_background,
        scene_box=box,
        hull=hull,
        source={"folder": str(folder), "half_res": half_res,
                "splits": {"train": len(i_train), "val": n_val, "test": len(i_test)}},
    )
