"""Camera files: poses_bounds.npy (LLFF) and transforms.json (nerfstudio / instant-ngp), read, checked, written and converted.

The conventions they hold (axes, the hwf column, per-frame near/far) are stated in
:mod:`nerfpipe.cameras.conventions`; every reader checks what it reads (rotations, intrinsics) and
says which row or frame is wrong.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nerfpipe.cameras.conventions import gl_from_llff, llff_from_gl, to_homogeneous


# --------------------------------------------------------------------------------------------------
# poses_bounds.npy


ROTATION_TOLERANCE = 1e-3
"""Largest entry of R^T R - I for a camera's 3x3 rotation to count as one."""


def read_poses_bounds(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """poses_bounds.npy -> (poses_llff (N, 3, 5), bounds (N, 2)).

    Raises ValueError saying what is wrong for a file that is not a usable one: not an .npy array
    (or a pickle, never loaded), not N x 17, not finite, a rotation that is not one, a size or focal
    length that is not positive, or bounds with near <= 0 or far <= near.
    """
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, EOFError):
        raise ValueError("it is not a NumPy .npy array") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.shape[1] != 17 or arr.shape[0] < 1:
        raise ValueError(f"it has shape {getattr(arr, 'shape', '?')}, not (N, 17)")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"it holds {arr.dtype} values, not numbers")
    arr = arr.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad.size:
        raise ValueError(f"row {bad[0]} holds NaN or infinite values")
    poses, bounds = arr[:, :15].reshape(-1, 3, 5), arr[:, 15:17]
    rot = poses[:, :, :3]
    err = np.abs(np.einsum("nji,njk->nik", rot, rot) - np.eye(3)).max(axis=(1, 2))
    if (bad := np.flatnonzero(err > ROTATION_TOLERANCE)).size:
        raise ValueError(f"the camera of row {bad[0]} has a 3x3 part that is not a rotation")
    if (bad := np.flatnonzero((poses[:, :, 4] <= 0).any(axis=1))).size:
        raise ValueError(f"row {bad[0]} has an image size or focal length that is not positive")
    if (bad := np.flatnonzero((bounds[:, 0] <= 0) | (bounds[:, 1] <= bounds[:, 0]))).size:
        raise ValueError(f"row {bad[0]} has near/far bounds {bounds[bad[0]].tolist()}, not 0 < near < far")
    return poses, bounds


def write_poses_bounds(path: Path, poses_llff: np.ndarray, bounds: np.ndarray) -> None:
    """(N, 3, 5) LLFF poses with hwf and (N, 2) bounds -> poses_bounds.npy (N, 17), float64."""
    poses_llff = np.asarray(poses_llff, dtype=np.float64)
    arr = np.concatenate([poses_llff.reshape(-1, 15), np.asarray(bounds, dtype=np.float64).reshape(-1, 2)], axis=1)
    with open(path, "wb") as f:
        np.save(f, arr)


def with_hwf(pose_llff: np.ndarray, hwf: np.ndarray) -> np.ndarray:
    """(N, 3, 4) LLFF poses and hwf (3,) or (N, 3) -> (N, 3, 5) with the [H, W, focal] column appended."""
    pose_llff = np.asarray(pose_llff, dtype=np.float64)[..., :3, :4]
    hwf = np.broadcast_to(np.asarray(hwf, dtype=np.float64), pose_llff.shape[:-2] + (3,))
    return np.concatenate([pose_llff, hwf[..., None]], axis=-1)


# --------------------------------------------------------------------------------------------------
# transforms.json (nerfstudio / instant-ngp)

INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "p1", "p2")
"""Per-camera keys of transforms.json, at the top level (shared camera) or in each frame."""
NEAR_KEY, FAR_KEY = "near", "far"
"""Per-frame LLFF bounds in a transforms.json (nerfpipe's addition; see the module docstring)."""


@dataclass(frozen=True)
class PinholeCamera:
    """One camera as transforms.json writes it: pixels of the named images, OpenCV distortion."""

    fl_x: float
    fl_y: float
    cx: float
    cy: float
    w: int
    h: int
    k1: float = 0.0
    k2: float = 0.0
    p1: float = 0.0
    p2: float = 0.0

    def to_json(self) -> dict[str, float | int]:
        d = asdict(self)
        d["w"], d["h"] = int(self.w), int(self.h)
        return {k: (d[k] if k in ("w", "h") else float(d[k])) for k in INTRINSIC_KEYS}


@dataclass
class Transforms:
    """The content of a transforms.json: frames in file order."""

    file_paths: list[str]
    """Each frame's ``file_path``, relative to the file's folder, as written."""
    c2w_gl: np.ndarray
    """(N, 4, 4) camera-to-world, OpenGL axes."""
    cameras: list[PinholeCamera]
    """One per frame (the same object repeated when the file has one shared camera)."""
    camera_model: str = "OPENCV"
    extra: dict[str, Any] = field(default_factory=dict)
    """Top-level keys other than the camera and frames (e.g. ``applied_transform``), kept as read."""
    bounds: np.ndarray | None = None
    """(N, 2) per-frame near, far (keys ``near``, ``far``), or None when some frame lacks them."""

    def subset(self, indices: Sequence[int]) -> "Transforms":
        """The frames ``indices``, in that order (to sort frames or drop some)."""
        idx = list(indices)
        return Transforms([self.file_paths[i] for i in idx], self.c2w_gl[idx], [self.cameras[i] for i in idx],
                          self.camera_model, dict(self.extra), None if self.bounds is None else self.bounds[idx])


def write_transforms(
    path: Path,
    file_paths: Sequence[str],
    c2w_gl: np.ndarray,
    cameras: PinholeCamera | Sequence[PinholeCamera],
    *,
    camera_model: str = "OPENCV",
    extra: dict[str, Any] | None = None,
    bounds: np.ndarray | None = None,
) -> None:
    """Write a nerfstudio / instant-ngp transforms.json.

    c2w_gl: (N, 3, 4) or (N, 4, 4). ``cameras``: one shared camera (written at the top level) or one per
    frame (written in each frame). ``extra``: more top-level keys. ``bounds`` (N, 2): per-frame
    ``near``, ``far``.
    """
    c2w = to_homogeneous(c2w_gl)
    if len(file_paths) != c2w.shape[0]:
        raise ValueError(f"{len(file_paths)} file paths for {c2w.shape[0]} poses")
    data: dict[str, Any] = {"camera_model": camera_model}
    shared = isinstance(cameras, PinholeCamera)
    if shared:
        data.update(cameras.to_json())
    elif len(cameras) != c2w.shape[0]:
        raise ValueError(f"{len(cameras)} cameras for {c2w.shape[0]} poses")
    frames = []
    for i, name in enumerate(file_paths):
        frame: dict[str, Any] = {"file_path": str(name), "transform_matrix": c2w[i].tolist()}
        if not shared:
            frame.update(cameras[i].to_json())
        if bounds is not None:
            frame[NEAR_KEY], frame[FAR_KEY] = float(bounds[i][0]), float(bounds[i][1])
        frames.append(frame)
    data.update(extra or {})
    data["frames"] = frames
    Path(path).write_text(json.dumps(data, indent=2))


def _camera_from(entry: dict, top: dict) -> PinholeCamera:
    """A frame's camera: its own keys first, then the top level's; focal from camera_angle_x if needed."""

    def get(key: str, default=None):
        return entry.get(key, top.get(key, default))

    w, h = get("w"), get("h")
    fl_x, fl_y = get("fl_x"), get("fl_y")
    if fl_x is None and get("camera_angle_x") is not None and w is not None:
        fl_x = 0.5 * float(w) / math.tan(0.5 * float(get("camera_angle_x")))
    if fl_y is None and get("camera_angle_y") is not None and h is not None:
        fl_y = 0.5 * float(h) / math.tan(0.5 * float(get("camera_angle_y")))
    fl_y = fl_x if fl_y is None else fl_y
    if fl_x is None or w is None or h is None:
        raise ValueError("a frame has no focal length (fl_x or camera_angle_x) or no image size (w, h)")
    return PinholeCamera(
        fl_x=float(fl_x),
        fl_y=float(fl_y),
        cx=float(get("cx", float(w) / 2)),
        cy=float(get("cy", float(h) / 2)),
        w=int(w),
        h=int(h),
        k1=float(get("k1", 0.0)),
        k2=float(get("k2", 0.0)),
        p1=float(get("p1", 0.0)),
        p2=float(get("p2", 0.0)),
    )


def _check_matrix(matrix: np.ndarray, i: int) -> None:
    """A camera-to-world matrix must be finite with a rotation (any scale: some tools write one) in it."""
    if not np.isfinite(matrix).all():
        raise ValueError(f"frame {i} has NaN or infinite values in its transform_matrix")
    rot = matrix[:3, :3]
    scale = np.linalg.norm(rot, axis=0)
    if scale.min() <= 1e-9 or not np.allclose(scale, scale.mean(), rtol=1e-3):
        raise ValueError(f"frame {i} has a transform_matrix whose 3x3 part is not a rotation")
    unit = rot / scale
    if np.abs(unit.T @ unit - np.eye(3)).max() > ROTATION_TOLERANCE:
        raise ValueError(f"frame {i} has a transform_matrix whose 3x3 part is not a rotation")


def _check_camera(camera: PinholeCamera, i: int | None) -> None:
    where = "the shared camera" if i is None else f"frame {i}"
    values = asdict(camera)
    for key, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"{where} has {key} = {value}")
    for key in ("w", "h", "fl_x", "fl_y"):
        if values[key] <= 0:
            raise ValueError(f"{where} has {key} = {values[key]:g}, which should be above 0")


CAMERA_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL")
"""transforms.json camera models read exactly: pinhole with at most k1, k2, p1, p2 (OPENCV's terms)."""
UNHELD_TERMS = ("k3", "k4", "k5", "k6")
"""Distortion terms the OPENCV model above does not hold: a camera that uses them is refused, not truncated."""


class UnsupportedCamera(ValueError):
    """A transforms.json whose camera nerfpipe would read wrongly (fisheye, equirectangular, k3 ...)."""


def read_transforms(path: Path) -> Transforms:
    """Read a nerfstudio / instant-ngp transforms.json (shared or per-frame intrinsics).

    Raises ValueError with what is wrong for a file that is not one, and :class:`UnsupportedCamera`
    for a camera model or distortion term that would be read as something else.
    """
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError("it is not a JSON object")
    model = str(data.get("camera_model", "OPENCV"))
    if model.upper() not in CAMERA_MODELS:
        raise UnsupportedCamera(f"its camera_model is {model}")
    for entry in [data, *[f for f in data.get("frames") or [] if isinstance(f, dict)]]:
        if str(entry.get("camera_model", model)).upper() not in CAMERA_MODELS:
            raise UnsupportedCamera(f"a frame's camera_model is {entry['camera_model']}")
        for key in UNHELD_TERMS:
            if float(entry.get(key) or 0.0) != 0.0:
                raise UnsupportedCamera(f"its camera has {key} = {entry[key]}, a distortion term beyond OPENCV's k1, k2, p1, p2")
    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        raise ValueError("it has no frames")
    file_paths, poses, cameras, bounds = [], [], [], []
    shared = None
    for i, frame in enumerate(frames):
        if NEAR_KEY in frame and FAR_KEY in frame:
            near, far = float(frame[NEAR_KEY]), float(frame[FAR_KEY])
            if not (math.isfinite(near) and math.isfinite(far) and 0 < near < far):
                raise ValueError(f"frame {i} has near = {near:g}, far = {far:g}, not 0 < near < far")
            bounds.append((near, far))
        matrix = np.asarray(frame.get("transform_matrix"), dtype=np.float64)
        if matrix.shape not in ((4, 4), (3, 4)):
            raise ValueError(f"frame {i} has a transform_matrix of shape {matrix.shape}, not 4x4")
        _check_matrix(matrix, i)
        file_paths.append(str(frame.get("file_path", "")))
        poses.append(to_homogeneous(matrix))
        if any(k in frame for k in ("fl_x", "camera_angle_x", "w")):
            cameras.append(_camera_from(frame, data))
            _check_camera(cameras[-1], i)
        else:
            if shared is None:
                shared = _camera_from({}, data)
                _check_camera(shared, None)
            cameras.append(shared)
    extra = {k: v for k, v in data.items() if k not in ("frames", "camera_model", *INTRINSIC_KEYS)}
    return Transforms(file_paths, np.stack(poses), cameras, str(data.get("camera_model", "OPENCV")), extra,
                      np.asarray(bounds, dtype=np.float64) if len(bounds) == len(frames) else None)


# --------------------------------------------------------------------------------------------------
# poses_bounds.npy <-> transforms.json

CENTRE_TOLERANCE_PX = 1e-6
"""A principal point this close to (w / 2, h / 2) is centred (LLFF can hold only a centred one)."""


def transforms_from_poses_bounds(poses_llff: np.ndarray, bounds: np.ndarray, file_paths: Sequence[str]) -> Transforms:
    """LLFF poses (N, 3, 5) and bounds (N, 2) -> the same cameras as a :class:`Transforms`, exactly.

    Each row's hwf becomes a centred pinhole camera (fl_x = fl_y = focal, cx = W / 2, cy = H / 2, no
    distortion), one shared camera when every row has the same hwf; the bounds become per-frame
    ``near``, ``far``. :func:`poses_bounds_from_transforms` gives back the same array to the bit.
    """
    poses_llff = np.asarray(poses_llff, dtype=np.float64)
    if len(file_paths) != poses_llff.shape[0]:
        raise ValueError(f"{len(file_paths)} file paths for {poses_llff.shape[0]} cameras")
    hwf = poses_llff[:, :, 4]
    cams = [PinholeCamera(fl_x=f, fl_y=f, cx=w / 2, cy=h / 2, w=int(round(w)), h=int(round(h))) for h, w, f in hwf]
    if all(c == cams[0] for c in cams):
        cams = [cams[0]] * len(cams)
    return Transforms(list(file_paths), to_homogeneous(gl_from_llff(poses_llff)), cams, "OPENCV", {},
                      np.asarray(bounds, dtype=np.float64).reshape(-1, 2).copy())


def poses_bounds_from_transforms(transforms: Transforms) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A :class:`Transforms` -> (LLFF poses (N, 3, 5), bounds (N, 2), what LLFF could not hold).

    Exact for centred pinhole cameras with fl_x == fl_y and per-frame near/far. Otherwise the nearest
    LLFF camera, each loss named in a clause for the caller's warning: distortion is dropped, focal is
    the mean of fl_x and fl_y, an off-centre principal point is dropped, frames with different cameras
    keep one hwf per row (LLFF loaders read the first row's), and missing bounds are estimated from
    the cameras (:func:`nerfpipe.cameras.normalize.estimate_bounds`).
    """
    from nerfpipe.cameras.normalize import estimate_bounds

    cams = transforms.cameras
    losses: list[str] = []
    distorted = [c for c in cams if any((c.k1, c.k2, c.p1, c.p2))]
    if distorted:
        c = distorted[0]
        losses.append(f"its lens distortion (k1 {c.k1:.4g}, k2 {c.k2:.4g}, p1 {c.p1:.4g}, p2 {c.p2:.4g}) is dropped, "
                      "so use it with undistorted images (training on the transforms.json undistorts them)")
    anisotropic = [c for c in cams if c.fl_x != c.fl_y]
    if anisotropic:
        c = anisotropic[0]
        losses.append(f"fl_x {c.fl_x:.6g} and fl_y {c.fl_y:.6g} differ and their mean is kept")
    off = [c for c in cams if abs(c.cx - c.w / 2) > CENTRE_TOLERANCE_PX or abs(c.cy - c.h / 2) > CENTRE_TOLERANCE_PX]
    if off:
        c = off[0]
        losses.append(f"the principal point ({c.cx:.6g}, {c.cy:.6g}) is off the image centre ({c.w / 2:g}, {c.h / 2:g}) "
                      "and is dropped")
    if len(set(cams)) > 1:
        sizes = sorted({(c.w, c.h) for c in cams})
        listed = ", ".join(f"{w}x{h}" for w, h in sizes[:3])
        what = f"{len(sizes)} image sizes ({listed})" if len(sizes) > 1 else "different focal lengths"
        losses.append(f"the frames have {what}: each row keeps its own, but LLFF loaders use the first row's")
    hwf = np.array([[float(c.h), float(c.w), c.fl_x if c.fl_x == c.fl_y else (c.fl_x + c.fl_y) / 2] for c in cams])
    bounds = transforms.bounds
    if bounds is None:
        bounds = estimate_bounds(transforms.c2w_gl[:, :3, :4])
        losses.append("it has no per-frame near/far, so they are estimated from the cameras")
    return with_hwf(llff_from_gl(transforms.c2w_gl[:, :3, :4]), hwf), np.asarray(bounds, dtype=np.float64), losses
