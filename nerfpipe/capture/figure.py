"""The capture report's figure: a top-down view of the sparse points and the numbered cameras (OpenCV only).

The view is onto the plane orthogonal to the cameras' mean up vector; each registered camera is a
numbered dot with a short line in its viewing direction, red when a problem names it; the
unregistered photos are listed below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from nerfpipe.capture.measurements import Geometry
from nerfpipe.capture.rules import PhotoStats, Problem
from nerfpipe.capture.wording import join_and, photo_ranges, range_items
from nerfpipe.io import encode_png

FIGURE_SIZE = (1000, 1000)
"""(width, height) of report.png."""
POINT_PERCENTILES = (2.0, 98.0)
"""The figure frames the sparse points between these percentiles (outliers would shrink the rest)."""
MAX_POINTS_DRAWN = 20000
VIEW_LINE_PX = 36
"""Length of a camera's viewing-direction line when that direction lies in the figure's plane."""
INSET_BELOW = 0.25
"""When the cameras span less than this fraction of the figure, an inset shows them enlarged."""
INSET_FRACTION = 0.42
"""Side of the inset, as a fraction of the figure's width."""


def plane_basis(ups: np.ndarray, forwards: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(right, ahead, up): up is the cameras' mean up; ahead their mean viewing direction flattened onto
    the plane orthogonal to up (the figure's vertical axis); right = ahead x up (seen from above)."""
    up = ups.mean(axis=0)
    up = up / (np.linalg.norm(up) or 1.0)
    ahead = forwards.mean(axis=0)
    ahead = ahead - (ahead @ up) * up
    if np.linalg.norm(ahead) < 0.1:  # cameras all around: take the longest extent of their centres
        flat = centres - centres.mean(axis=0)
        flat = flat - np.outer(flat @ up, up)
        ahead = np.linalg.svd(flat, full_matrices=False)[2][0] if len(flat) > 1 else np.zeros(3)
        ahead = ahead - (ahead @ up) * up
    if np.linalg.norm(ahead) < 1e-6:  # anything orthogonal to up
        ahead = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
    ahead = ahead / np.linalg.norm(ahead)
    right = np.cross(ahead, up)
    return right, ahead, up


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + ([line] if line else [])


@dataclass
class _Panel:
    """A rectangle of the figure showing the plane region [lo, hi] (isotropic scale, centred)."""

    x0: int
    y0: int
    x1: int
    y1: int
    lo: np.ndarray
    hi: np.ndarray

    def __post_init__(self) -> None:
        span = np.maximum(self.hi - self.lo, 1e-12)
        self.scale = min((self.x1 - self.x0) / span[0], (self.y1 - self.y0) / span[1])
        self.mid = (self.lo + self.hi) / 2

    def px(self, uv: np.ndarray) -> np.ndarray:
        x = (self.x0 + self.x1) / 2 + (uv[..., 0] - self.mid[0]) * self.scale
        y = (self.y0 + self.y1) / 2 - (uv[..., 1] - self.mid[1]) * self.scale  # ahead points up
        return np.stack([x, y], axis=-1)

    def inside(self, p: np.ndarray) -> np.ndarray:
        return (p[:, 0] > self.x0) & (p[:, 0] < self.x1) & (p[:, 1] > self.y0) & (p[:, 1] < self.y1)


LABEL_SIDES = [np.array(v) / np.linalg.norm(v) for v in
               ([1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0])]


def _draw_panel(img, panel: _Panel, pts_uv, cam_uv, flat_dir, flagged, labels=None, font_scale: float = 0.45) -> None:
    """Points, the capture path, cameras with their viewing lines and (given labels) the labels that
    fit where they overlap no other label or camera."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.rectangle(img, (panel.x0, panel.y0), (panel.x1, panel.y1), (200, 200, 200), 1)
    if len(pts_uv):
        p = np.round(panel.px(pts_uv)).astype(int)
        p = p[panel.inside(p)]
        for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):  # 2x2 pixel dots
            img[np.minimum(p[:, 1] + dy, panel.y1), np.minimum(p[:, 0] + dx, panel.x1)] = (160, 160, 160)
    cam_px = panel.px(cam_uv)
    cv2.polylines(img, [np.round(cam_px).astype(np.int32).reshape(-1, 1, 2)], False, (235, 200, 170), 1, cv2.LINE_AA)
    colours = [(40, 40, 220) if f else (170, 90, 20) for f in flagged]
    for c, d, colour in zip(cam_px, flat_dir, colours):
        start = tuple(int(round(v)) for v in c)
        cv2.line(img, start, tuple(int(round(v)) for v in c + VIEW_LINE_PX * d), colour, 2, cv2.LINE_AA)
        cv2.circle(img, start, 4, colour, -1, cv2.LINE_AA)
    if labels is None:
        return
    # flagged cameras first, then the rest; each label on the first side where it fits
    taken: list[tuple[float, float, float, float]] = []
    dots = [(c[0] - 5, c[1] - 5, c[0] + 5, c[1] + 5) for c in cam_px]
    dots += [(x - 2, y - 2, x + 2, y + 2) for c, d in zip(cam_px, flat_dir)  # the viewing lines
             for x, y in (c + VIEW_LINE_PX * d * t for t in (0.25, 0.5, 0.75, 1.0))]
    for i in sorted(range(len(cam_px)), key=lambda i: (not flagged[i], i)):
        (tw, th), _ = cv2.getTextSize(labels[i], font, font_scale, 1)
        c, d = cam_px[i], flat_dir[i]
        away = -d / np.linalg.norm(d) if np.linalg.norm(d) > 0.2 else np.array([0.0, 1.0])
        for direction, reach in [(v, r) for r in (9, 22) for v in [away] + LABEL_SIDES]:
            cx, cy = c + direction * (reach + max(tw, th) / 2)
            box = (cx - tw / 2, cy - th / 2, cx + tw / 2, cy + th / 2)
            clear = all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in taken + dots)
            if clear and panel.x0 < box[0] and box[2] < panel.x1 and panel.y0 < box[1] and box[3] < panel.y1:
                taken.append(box)
                cv2.putText(img, labels[i], (int(box[0]), int(box[3])), font, font_scale, colours[i], 1, cv2.LINE_AA)
                break


def draw_topdown(
    points: np.ndarray,
    centres: np.ndarray,
    forwards: np.ndarray,
    ups: np.ndarray,
    labels: Sequence[str],
    flagged: Sequence[bool],
    title: str,
    footer: str,
    size: tuple[int, int] = FIGURE_SIZE,
    seed: int = 0,
) -> np.ndarray:
    """The top-down figure as an (H, W, 3) uint8 BGR image.

    points: (P, 3) sparse points; centres, forwards, ups: (N, 3) registered cameras in capture order;
    labels: N texts drawn beside the cameras; flagged: N booleans (drawn red). When the cameras take
    a small part of the view (a forward-facing capture), an inset shows them enlarged.
    """
    width, height = size
    img = np.full((height, width, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    top, bottom, side = 56, 74, 24
    for k, line in enumerate(_wrap(title, 95)[:2]):
        cv2.putText(img, line, (side, 22 + 20 * k), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for k, line in enumerate(_wrap(footer, 105)[:3]):
        cv2.putText(img, line, (side, height - bottom + 20 + 20 * k), font, 0.45, (40, 40, 40), 1, cv2.LINE_AA)
    if len(centres) == 0:
        return img

    right, ahead, up = plane_basis(ups, forwards, centres)
    cam_uv = np.stack([centres @ right, centres @ ahead], axis=1)
    pts = points
    if len(pts) > MAX_POINTS_DRAWN:
        pts = pts[np.random.default_rng(seed).choice(len(pts), MAX_POINTS_DRAWN, replace=False)]
    pts_uv = np.stack([pts @ right, pts @ ahead], axis=1) if len(pts) else np.zeros((0, 2))
    flat_dir = np.stack([forwards @ right, -(forwards @ ahead)], axis=1)  # in-plane part, in pixel axes
    cam_lo, cam_hi = cam_uv.min(axis=0), cam_uv.max(axis=0)
    lo, hi = cam_lo.copy(), cam_hi.copy()
    if len(pts_uv):
        lo = np.minimum(lo, np.percentile(pts_uv, POINT_PERCENTILES[0], axis=0))
        hi = np.maximum(hi, np.percentile(pts_uv, POINT_PERCENTILES[1], axis=0))
    pad = 0.06 * (float(max(hi - lo)) or 1.0)
    main = _Panel(side, top, width - side, height - bottom, lo - pad, hi + pad)
    cam_extent_px = float(max(cam_hi - cam_lo)) * main.scale
    if len(centres) < 2 or cam_extent_px > INSET_BELOW * (main.x1 - main.x0):
        _draw_panel(img, main, pts_uv, cam_uv, flat_dir, flagged, labels)
        return img

    # The cameras are a small cluster: the main panel shows them unlabelled, an inset enlarges them.
    _draw_panel(img, main, pts_uv, cam_uv, flat_dir, flagged)
    cam_pad = 0.25 * float(max(cam_hi - cam_lo)) + 1e-9
    zoom_lo, zoom_hi = cam_lo - cam_pad, cam_hi + cam_pad
    (x0, y1), (x1, y0) = np.round(main.px(np.array([zoom_lo, zoom_hi]))).astype(int)
    x0, y0, x1, y1 = max(x0, main.x0), max(y0, main.y0), min(x1, main.x1), min(y1, main.y1)
    cv2.rectangle(img, (x0, y0), (x1, y1), (120, 120, 120), 1)
    side_px = int(INSET_FRACTION * (main.x1 - main.x0))
    corners = [(main.x0 + 8, main.y0 + 8), (main.x1 - 8 - side_px, main.y0 + 8),
               (main.x0 + 8, main.y1 - 8 - side_px), (main.x1 - 8 - side_px, main.y1 - 8 - side_px)]
    pts_px = main.px(pts_uv)

    def covered(corner) -> tuple[int, int]:  # (hides the cameras' box, points it hides)
        x, y = corner
        hides_box = int(x < x1 and x0 < x + side_px and y < y1 and y0 < y + side_px)
        inside = (pts_px[:, 0] > x) & (pts_px[:, 0] < x + side_px) & (pts_px[:, 1] > y) & (pts_px[:, 1] < y + side_px)
        return hides_box, int(np.sum(inside))

    x, y = min(corners, key=covered)
    img[y:y + side_px, x:x + side_px] = 255
    inset = _Panel(x, y, x + side_px, y + side_px, zoom_lo, zoom_hi)
    _draw_panel(img, inset, pts_uv, cam_uv, flat_dir, flagged, labels, 0.4)
    cv2.putText(img, "cameras, enlarged", (x + 6, y + 16), font, 0.45, (90, 90, 90), 1, cv2.LINE_AA)
    return img


def figure(photos: Sequence[PhotoStats], problems: Sequence[Problem], geometry: Geometry) -> np.ndarray:
    """report.png's image (BGR)."""
    placed = [p for p in photos if p.registered]
    flagged = {n for pr in problems if pr.kind != "hardly_moved" for n in pr.photos}
    missing = [p.number for p in photos if not p.registered]
    title = (f"Top-down view: {len(placed)} of {len(photos)} photos registered (numbered dots, lines = viewing "
             f"directions; red = a problem), {len(geometry.points)} 3D points (grey)")
    footer = ("Not registered: " + join_and(range_items(photo_ranges(missing), str)) + "."
              if missing else "Every photo registered.")
    return draw_topdown(
        geometry.points,
        np.array([geometry.centres[p.name] for p in placed]).reshape(-1, 3),
        np.array([geometry.forwards[p.name] for p in placed]).reshape(-1, 3),
        np.array([geometry.ups[p.name] for p in placed]).reshape(-1, 3),
        [str(p.number) for p in placed],
        [p.number in flagged for p in placed],
        title,
        footer,
    )


def figure_png(photos: Sequence[PhotoStats], problems: Sequence[Problem], geometry: Geometry) -> bytes:
    return encode_png(np.ascontiguousarray(figure(photos, problems, geometry)[..., ::-1]))  # drawn in OpenCV's BGR

