"""Which kind of capture a set of cameras is: forward-facing, a wide arc, or all the way round.

- forward: every camera looks within FORWARD_MAX_VIEW_ANGLE_DEG of the mean viewing direction
  (fern: 9.5 degrees at most). NDC rays and the LLFF spiral.
- 360: the cameras surround the point they look at, covering at least FULL_CIRCLE_MIN_DEG of
  azimuth around their mean up axis (lego: 333 degrees). Spherified world, a full circle.
- arc: anything between (fox: views up to 53 degrees apart over 93 degrees of azimuth). Spherified
  world, a path along the covered arc and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from nerfpipe.cameras.normalize import closest_point_to_axes, normalize
from nerfpipe.cameras.paths import azimuths, covered_arc

FORWARD_MAX_VIEW_ANGLE_DEG = 30.0
FULL_CIRCLE_MIN_DEG = 270.0

SceneKind = Literal["forward", "arc", "360"]
SCENE_KINDS: tuple[str, ...] = ("forward", "arc", "360")


@dataclass(frozen=True)
class SceneType:
    kind: SceneKind
    max_view_angle_deg: float
    """Largest angle between a camera's viewing direction and the mean one."""
    azimuth_deg: float
    """Azimuth covered by the camera centres around the point they look at."""

    @property
    def reason(self) -> str:
        what = {"forward": "forward-facing", "arc": "a wide arc", "360": "all the way round"}[self.kind]
        return (f"{what}: the cameras' viewing directions are at most {self.max_view_angle_deg:.0f} degrees apart "
                f"from their mean and they cover {self.azimuth_deg:.0f} degrees around the scene")


def classify(c2w_gl: np.ndarray) -> SceneType:
    """(N, 3, 4) OpenGL camera-to-world -> the kind of capture (any world frame, any scale)."""
    forward = -c2w_gl[:, :3, 2] / np.linalg.norm(c2w_gl[:, :3, 2], axis=1, keepdims=True)
    mean = normalize(forward.sum(0))
    max_angle = float(np.degrees(np.arccos(np.clip(forward @ mean, -1.0, 1.0))).max())
    centre = closest_point_to_axes(c2w_gl[:, :3, 3], -forward)
    moved = c2w_gl.copy()
    moved[:, :3, 3] -= centre
    _start, span = covered_arc(azimuths(moved))
    azimuth = float(np.degrees(span))
    if max_angle <= FORWARD_MAX_VIEW_ANGLE_DEG:
        kind: SceneKind = "forward"
    elif azimuth >= FULL_CIRCLE_MIN_DEG:
        kind = "360"
    else:
        kind = "arc"
    return SceneType(kind, round(max_angle, 2), round(azimuth, 1))
