"""Writing videos and depth maps: H.264 yuv420p through imageio-ffmpeg (no system ffmpeg)."""

from __future__ import annotations

from pathlib import Path

import cv2
import imageio.v2 as imageio
import numpy as np

from nerfpipe.frames import Clip

DEPTH_LOW_PERCENTILE, DEPTH_HIGH_PERCENTILE = 1.0, 99.0
"""Depth range mapped to the colour map, robust to a few stray far or near pixels."""


def even_pad(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> padded by edge replication to even H and W (yuv420p needs both even)."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


class VideoWriter:
    """``with VideoWriter(path, fps) as v: v.write(frame)``; frames (H, W, 3) uint8, any size."""

    def __init__(self, path: Path, fps: float = 30.0, quality: int = 8):
        self.path = Path(path)
        self._writer = imageio.get_writer(
            self.path, format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat="yuv420p",
            quality=quality, macro_block_size=1, ffmpeg_log_level="error",
        )

    def write(self, frame: np.ndarray) -> None:
        self._writer.append_data(even_pad(np.ascontiguousarray(frame)))

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self._writer.close()


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> uint8."""
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def depth_range(depths: list[np.ndarray]) -> tuple[float, float]:
    """One (near, far) for a whole video, so that brightness means the same depth in every frame."""
    values = np.concatenate([d.reshape(-1) for d in depths])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [DEPTH_LOW_PERCENTILE, DEPTH_HIGH_PERCENTILE])
    return float(lo), float(max(hi, lo + 1e-6))


def colorize_depth(depth: np.ndarray, near: float, far: float) -> np.ndarray:
    """(H, W) depth -> (H, W, 3) uint8 RGB, near = bright (inferno colour map)."""
    t = np.clip((far - depth) / (far - near), 0.0, 1.0)  # 1 at near, 0 at far
    t = np.nan_to_num(t, nan=0.0)
    bgr = cv2.applyColorMap((t * 255.0 + 0.5).astype(np.uint8), cv2.COLORMAP_INFERNO)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_video(path: Path) -> tuple[list[np.ndarray], dict]:
    """All frames of a video as (H, W, 3) uint8 and its metadata (codec, pix_fmt, fps, size...)."""
    with Clip(path) as clip:
        return [frame.copy() for frame in clip], clip.meta
