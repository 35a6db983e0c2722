"""From a transforms.json camera (OPENCV distortion, fl_x != fl_y, any principal point) to the
renderer's camera: one focal length, principal point at the image centre, no distortion.

The renderer (:mod:`nerfpipe.cameras.rays`) shoots pixel (u, v) of a W x H image through
``((u - W/2) / f, -(v - H/2) / f, -1)``. An image is resampled onto that camera by looking up, for
each target pixel, where its ray lands in the source photo: normalised point
``x = (u - W/2) / f, y = (v - H/2) / f``, OpenCV's distortion (:func:`distort`), then source pixel
``fl_x * x_d + cx, fl_y * y_d + cy``. The pixel convention is the same on both sides (the reference
code's, PIXEL_OFFSET 0), so a centred pinhole camera with f = fl_x = fl_y maps every pixel to itself.
The camera's rotation is unchanged: the poses of the transforms.json stay valid.
"""

from __future__ import annotations

import cv2
import numpy as np

from nerfpipe.cameras.formats import CENTRE_TOLERANCE_PX, PinholeCamera


def distort(x: np.ndarray, y: np.ndarray, cam: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
    """Normalised undistorted coordinates (any shape) -> distorted ones (OpenCV's k1, k2, p1, p2 model)."""
    r2 = x * x + y * y
    radial = 1.0 + r2 * (cam.k1 + r2 * cam.k2)
    xd = x * radial + 2.0 * cam.p1 * x * y + cam.p2 * (r2 + 2.0 * x * x)
    yd = y * radial + cam.p1 * (r2 + 2.0 * y * y) + 2.0 * cam.p2 * x * y
    return xd, yd


def is_plain(cam: PinholeCamera) -> bool:
    """True when the camera already is the renderer's: no distortion, fl_x == fl_y, centred principal point."""
    return (
        not any((cam.k1, cam.k2, cam.p1, cam.p2))
        and cam.fl_x == cam.fl_y
        and abs(cam.cx - cam.w / 2) <= CENTRE_TOLERANCE_PX
        and abs(cam.cy - cam.h / 2) <= CENTRE_TOLERANCE_PX
    )


def common_focal(cameras: list[PinholeCamera]) -> float:
    """The one focal length (pixels of the source images) of the resampled images: the mean of every
    frame's (fl_x + fl_y) / 2, so the field of view stays as close as can be to the photos'."""
    return float(np.mean([(c.fl_x + c.fl_y) / 2 for c in cameras]))


def source_pixels(cam: PinholeCamera, focal: float, width: int, height: int, u: np.ndarray, v: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Target pixels (u, v) of a centred width x height pinhole image of focal ``focal`` -> the source
    photo's pixel coordinates (float64, same shape) that see the same ray."""
    x = (np.asarray(u, dtype=np.float64) - width / 2) / focal
    y = (np.asarray(v, dtype=np.float64) - height / 2) / focal
    xd, yd = distort(x, y, cam)
    return cam.fl_x * xd + cam.cx, cam.fl_y * yd + cam.cy


def border_inside(cam: PinholeCamera, focal: float, width: int, height: int) -> bool:
    """True when every pixel on the border of the target image looks up a point inside the photo
    (so no target pixel has to be invented; the distortion of real lenses is monotonic out to the corners)."""
    us, vs = np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64)
    u = np.concatenate([us, us, np.zeros(height), np.full(height, width - 1.0)])
    v = np.concatenate([np.zeros(width), np.full(width, height - 1.0), vs, vs])
    xs, ys = source_pixels(cam, focal, width, height, u, v)
    return bool(np.all((xs >= 0) & (xs <= cam.w - 1) & (ys >= 0) & (ys <= cam.h - 1)))


def resample(rgb: np.ndarray, cam: PinholeCamera, focal: float, width: int, height: int) -> np.ndarray:
    """(h, w, C) photo of camera ``cam`` -> (height, width, C) image of the centred pinhole camera of
    focal ``focal`` (bilinear; pixels outside the photo repeat its edge)."""
    v, u = np.mgrid[0:height, 0:width]
    xs, ys = source_pixels(cam, focal, width, height, u, v)
    return cv2.remap(rgb, xs.astype(np.float32), ys.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
