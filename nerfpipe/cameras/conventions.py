"""Camera conventions: every axis swap between COLMAP, LLFF, OpenGL and transforms.json lives here.

Frames and names (transforms read "target from source", right to left):

- COLMAP / OpenCV camera axes: x right, y down, z forward. COLMAP stores world-to-camera
  ``w2c_cv`` = [R | t], (3, 4): a world point X is at ``R @ X + t`` in the camera.
  ``c2w_cv`` is its inverse: columns [right, down, forward, centre] in world coordinates.
- LLFF ``poses_bounds.npy``: (N, 17). Row i = a 3x5 matrix flattened row-major, then near, far.
  The 3x5 matrix is ``pose_llff`` (camera-to-world, columns [down, right, backwards, centre]) with a
  fifth column ``hwf`` = (H, W, focal) of the full-resolution images. near/far are low/high
  percentiles of the depths of the sparse points that camera sees.
- NeRF / OpenGL camera axes (what the renderer uses): x right, y up, z backwards.
  ``c2w_gl``: columns [right, up, backwards, centre].
- transforms.json (nerfstudio / instant-ngp): ``transform_matrix`` is ``c2w_gl`` as 4x4; intrinsics
  ``fl_x, fl_y, cx, cy, w, h`` in pixels of the images the frames name (OpenCV pixel convention:
  the image spans [0, w], so a centred principal point is at w / 2), distortion ``k1, k2, p1, p2``
  as in OpenCV. nerfpipe adds per-frame ``near`` and ``far`` (the LLFF bounds, depths along the
  viewing axis in the file's world units) so that poses_bounds.npy -> transforms.json -> poses_bounds.npy
  is exact; other readers ignore them.

Every pose function takes (..., 3, 4) or (..., 4, 4) and returns (..., 3, 4); extra columns (the
hwf column of a 3x5 LLFF pose) are ignored. Each conversion has its inverse beside it.

Alignment of two camera sets (``umeyama``, ``best_rotation``, ``compare_cameras``) answers "how far
are these poses from those, up to the similarity that SfM cannot fix" (world origin, orientation and
scale are arbitrary in SfM).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

# --------------------------------------------------------------------------------------------------
# Rigid transforms


def to_homogeneous(pose: np.ndarray) -> np.ndarray:
    """(..., 3, 4) or (..., 4, 4) -> (..., 4, 4) with a [0, 0, 0, 1] last row."""
    pose = np.asarray(pose, dtype=np.float64)[..., :3, :4]
    out = np.zeros(pose.shape[:-2] + (4, 4))
    out[..., :3, :4] = pose
    out[..., 3, 3] = 1.0
    return out


def invert_rigid(pose: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform [R | t]: (..., 3, 4) -> (..., 3, 4) [R^T | -R^T t].

    Turns ``w2c_cv`` into ``c2w_cv`` and back.
    """
    pose = np.asarray(pose, dtype=np.float64)
    rot = pose[..., :3, :3]
    t = pose[..., :3, 3:4]
    rot_t = np.swapaxes(rot, -1, -2)
    return np.concatenate([rot_t, -rot_t @ t], axis=-1)


# --------------------------------------------------------------------------------------------------
# COLMAP (world-to-camera, OpenCV axes) <-> LLFF (camera-to-world, [down, right, back])


def llff_from_colmap(w2c_cv: np.ndarray) -> np.ndarray:
    """COLMAP world-to-camera (..., 3, 4) -> LLFF ``pose_llff`` (..., 3, 4) [down, right, back, centre].

    This is imgs2poses' conversion: invert, then reorder the OpenCV axes [right, down, forward] to
    [down, right, -forward].
    """
    c2w_cv = invert_rigid(np.asarray(w2c_cv)[..., :3, :4])
    right, down, forward, centre = (c2w_cv[..., i : i + 1] for i in range(4))
    return np.concatenate([down, right, -forward, centre], axis=-1)


def colmap_from_llff(pose_llff: np.ndarray) -> np.ndarray:
    """Inverse of :func:`llff_from_colmap`: (..., 3, 4|5) LLFF pose -> (..., 3, 4) COLMAP ``w2c_cv``."""
    p = np.asarray(pose_llff, dtype=np.float64)[..., :3, :4]
    down, right, back, centre = (p[..., i : i + 1] for i in range(4))
    c2w_cv = np.concatenate([right, down, -back, centre], axis=-1)
    return invert_rigid(c2w_cv)


# --------------------------------------------------------------------------------------------------
# LLFF <-> OpenGL camera-to-world


def gl_from_llff(pose_llff: np.ndarray) -> np.ndarray:
    """LLFF [down, right, back, centre] -> OpenGL camera-to-world [right, up, back, centre].

    pose_llff: (..., 3, 4) or (..., 3, 5); returns (..., 3, 4) ``c2w_gl`` (hwf column dropped).
    """
    p = np.asarray(pose_llff)[..., :4]
    return np.concatenate([p[..., 1:2], -p[..., 0:1], p[..., 2:3], p[..., 3:4]], axis=-1)


def llff_from_gl(c2w_gl: np.ndarray) -> np.ndarray:
    """Inverse of :func:`gl_from_llff`: (..., 3, 4) ``c2w_gl`` -> (..., 3, 4) LLFF pose (no hwf)."""
    p = np.asarray(c2w_gl)[..., :4]
    return np.concatenate([-p[..., 1:2], p[..., 0:1], p[..., 2:3], p[..., 3:4]], axis=-1)


# --------------------------------------------------------------------------------------------------
# COLMAP world-to-camera <-> OpenGL camera-to-world (transforms.json)


def gl_from_colmap(w2c_cv: np.ndarray) -> np.ndarray:
    """COLMAP world-to-camera (..., 3, 4) -> OpenGL ``c2w_gl`` (..., 3, 4): invert, flip y and z."""
    c2w_cv = invert_rigid(np.asarray(w2c_cv)[..., :3, :4])
    right, down, forward, centre = (c2w_cv[..., i : i + 1] for i in range(4))
    return np.concatenate([right, -down, -forward, centre], axis=-1)


def colmap_from_gl(c2w_gl: np.ndarray) -> np.ndarray:
    """Inverse of :func:`gl_from_colmap`: (..., 3, 4|4x4) ``c2w_gl`` -> (..., 3, 4) COLMAP ``w2c_cv``."""
    p = np.asarray(c2w_gl, dtype=np.float64)[..., :3, :4]
    right, up, back, centre = (p[..., i : i + 1] for i in range(4))
    return invert_rigid(np.concatenate([right, -up, -back, centre], axis=-1))


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


# --------------------------------------------------------------------------------------------------
# Aligning two camera sets


@dataclass(frozen=True)
class Similarity:
    """x_dst = scale * rotation @ x_src + translation."""

    scale: float
    rotation: np.ndarray
    """(3, 3)"""
    translation: np.ndarray
    """(3,)"""

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) -> (..., 3)"""
        return self.scale * np.asarray(points) @ self.rotation.T + self.translation


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> Similarity:
    """Least-squares similarity taking the points ``src`` (N, 3) onto ``dst`` (N, 3) (Umeyama 1991)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or src.shape[0] < 3:
        raise ValueError(f"need two (N>=3, 3) point sets of the same shape, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / src.shape[0]
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1.0
    rot = u @ np.diag(d) @ vt
    var_s = (xs**2).sum() / src.shape[0]
    scale = float((sig * d).sum() / var_s) if with_scale else 1.0
    return Similarity(scale, rot, mu_d - scale * rot @ mu_s)


def best_rotation(rot_src: np.ndarray, rot_dst: np.ndarray) -> np.ndarray:
    """The one rotation G (3, 3) minimising sum_i ||G @ rot_src[i] - rot_dst[i]||_F; rot_*: (N, 3, 3)."""
    m = np.einsum("nij,nkj->ik", np.asarray(rot_dst, dtype=np.float64), np.asarray(rot_src, dtype=np.float64))
    u, _, vt = np.linalg.svd(m)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    return u @ d @ vt


def rotation_angle_deg(rot_a: np.ndarray, rot_b: np.ndarray) -> np.ndarray:
    """Angle in degrees of rot_a @ rot_b^T for each pair: (..., 3, 3), (..., 3, 3) -> (...,)."""
    rel = np.asarray(rot_a) @ np.swapaxes(np.asarray(rot_b), -1, -2)
    cos = (np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


@dataclass(frozen=True)
class CameraComparison:
    """How far a set of LLFF cameras is from a reference set (figures as fractions or degrees)."""

    cameras: int
    scale: float
    """Scale that takes the compared set's units to the reference's."""
    spread: float
    """RMS distance of the reference camera centres from their mean (reference units)."""
    centre_error_mean: float
    """Mean camera-centre distance after the similarity alignment, as a fraction of ``spread``."""
    centre_error_max: float
    rotation_error_mean_deg: float
    """Per-camera orientation error once the one best global rotation is removed."""
    rotation_error_max_deg: float
    rotation_error_sim3_mean_deg: float
    """The same with the rotation of the centre alignment (ill-conditioned for near-planar layouts)."""
    focal_error: float
    """|focal / W - reference focal / reference W| / (reference focal / reference W), mean over cameras:
    focal lengths in units of the image width, so photos at another resolution compare fairly."""
    near_error_mean: float
    """|near * scale - reference near| / reference near, mean over cameras (NaN without bounds)."""
    far_error_mean: float

    def to_json(self) -> dict[str, float | int]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def compare_cameras(
    poses: np.ndarray,
    reference: np.ndarray,
    bounds: np.ndarray | None = None,
    reference_bounds: np.ndarray | None = None,
) -> CameraComparison:
    """Compare LLFF poses (N, 3, 5) with reference LLFF poses (N, 3, 5), row by row.

    The centres are aligned with a similarity (:func:`umeyama`); rotations are compared both with that
    similarity's rotation and with :func:`best_rotation` of the orientations. Bounds (N, 2), if given,
    are compared after multiplying by the similarity's scale.
    """
    poses = np.asarray(poses, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if poses.shape[0] != reference.shape[0]:
        raise ValueError(f"{poses.shape[0]} cameras against {reference.shape[0]} reference cameras")
    centres, ref_centres = poses[:, :, 3], reference[:, :, 3]
    sim = umeyama(centres, ref_centres)
    spread = float(np.sqrt(((ref_centres - ref_centres.mean(0)) ** 2).sum(1).mean()))
    centre_err = np.linalg.norm(sim.apply(centres) - ref_centres, axis=1) / spread
    rots, ref_rots = poses[:, :, :3], reference[:, :, :3]
    err_sim = rotation_angle_deg(sim.rotation @ rots, ref_rots)
    err_best = rotation_angle_deg(best_rotation(rots, ref_rots) @ rots, ref_rots)
    focal_err = float("nan")
    if poses.shape[2] >= 5 and reference.shape[2] >= 5:
        rel = poses[:, 2, 4] / poses[:, 1, 4]
        ref_rel = reference[:, 2, 4] / reference[:, 1, 4]
        focal_err = float(np.mean(np.abs(rel - ref_rel) / ref_rel))
    near_err = far_err = float("nan")
    if bounds is not None and reference_bounds is not None:
        rel = np.abs(np.asarray(bounds) * sim.scale - reference_bounds) / np.asarray(reference_bounds)
        near_err, far_err = (float(x) for x in rel.mean(0))
    return CameraComparison(
        cameras=int(poses.shape[0]),
        scale=float(sim.scale),
        spread=spread,
        centre_error_mean=float(centre_err.mean()),
        centre_error_max=float(centre_err.max()),
        rotation_error_mean_deg=float(err_best.mean()),
        rotation_error_max_deg=float(err_best.max()),
        rotation_error_sim3_mean_deg=float(err_sim.mean()),
        focal_error=focal_err,
        near_error_mean=near_err,
        far_error_mean=far_err,
    )
