"""Frames from a phone video: the sharpest frame of each window, spread through the clip.

Decoding goes through imageio-ffmpeg (its own ffmpeg binary), which applies the video's rotation
metadata, so a portrait phone video gives portrait frames. Two passes keep memory small whatever
the clip's length: the first scores every frame (variance of the Laplacian of a downscaled grey
copy) and keeps a tiny thumbnail of it; the second writes the chosen frames.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from nerfpipe.io import write_png
from nerfpipe.progress import Task


VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm"}
DEFAULT_FRAMES = 100
"""Frames kept from a clip by default."""
MIN_DISTINCT_FRAMES = 10
"""A clip that gives fewer distinct frames than this cannot make a scene."""
SHARPNESS_LONG_SIDE = 480
"""Frames are scored at this size (long side, pixels): fast, and blur still shows."""
THUMB_SIZE = (48, 48)
DISTINCT_MEAN_ABS_DIFF = 3.0
"""Two kept frames whose 48x48 grey thumbnails differ by less than this (0-255 levels) are one view."""


class VideoError(Exception):
    """A clip that cannot give frames; the message says why in a few words."""


@dataclass(frozen=True)
class VideoFrame:
    index: int
    """Frame number in the clip (0-based, decoding order)."""
    time: float
    """Seconds from the start (index / fps)."""
    sharpness: float
    path: Path
    """Where the frame was written (PNG)."""


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of a downscaled grey copy: higher is sharper."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    scale = SHARPNESS_LONG_SIDE / max(h, w)
    if scale < 1:
        grey = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


class Clip:
    """A clip being decoded: ``meta`` (fps, duration, codec, pix_fmt, size after rotation), iterate
    for (H, W, 3) uint8 frames, ``close()`` to stop ffmpeg. Raises VideoError when nothing decodes.

    imageio-ffmpeg reads the metadata (its parser knows ffmpeg's output); the frames come from our
    own ffmpeg process, whose pipes are closed here (imageio-ffmpeg's generator leaves them open
    when ffmpeg has already exited).
    """

    def __init__(self, path: Path):
        import imageio_ffmpeg  # here, not at the top: training and rendering import this module without videos

        logger = logging.getLogger("imageio_ffmpeg")
        level = logger.level
        logger.setLevel(logging.ERROR)  # a rotated clip is expected, not a warning (restored below)
        try:
            probe_gen = imageio_ffmpeg.read_frames(str(path))
            try:
                self.meta = next(probe_gen)
            finally:
                probe_gen.close()
        except (RuntimeError, OSError, StopIteration) as e:
            first = str(e).splitlines()[0] if str(e) else "unreadable"
            raise VideoError(f"no frame can be decoded ({first})") from None
        finally:
            logger.setLevel(level)
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-nostdin", "-i", str(path),
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def __iter__(self):
        w, h = self.meta["size"]
        size = w * h * 3
        while True:
            buf = self._proc.stdout.read(size)
            if len(buf) < size:
                return  # the end, or a damaged tail: keep what decoded
            yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)

    def close(self) -> None:
        self._proc.stdout.close()
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()

    def __enter__(self) -> "Clip":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def pick_frames(scores: np.ndarray, thumbs: np.ndarray, target: int) -> list[int]:
    """Indices of the sharpest frame in each of ``target`` equal windows, near-duplicates dropped.

    scores: (frames,); thumbs: (frames, 48, 48) uint8.
    """
    n = len(scores)
    picked = [int(w[np.argmax(scores[w])]) for w in np.array_split(np.arange(n), min(target, n)) if len(w)]
    kept: list[int] = []
    for i in picked:
        if kept and np.abs(thumbs[i].astype(np.int16) - thumbs[kept[-1]]).mean() < DISTINCT_MEAN_ABS_DIFF:
            if scores[i] > scores[kept[-1]]:
                kept[-1] = i  # the same view: keep the sharper one
            continue
        kept.append(i)
    return kept


def extract_frames(video: Path, out_dir: Path, prefix: str, target: int = DEFAULT_FRAMES,
                   task: Task | None = None) -> list[VideoFrame]:
    """Write the chosen frames of ``video`` as ``out_dir/<prefix>_<index:05d>.png``.

    Raises VideoError when the clip has no decodable frame or fewer than MIN_DISTINCT_FRAMES distinct ones.
    """
    scores, thumbs = [], []
    with Clip(video) as clip:
        fps = float(clip.meta.get("fps") or 30.0)
        if task is not None:
            duration = float(clip.meta.get("duration") or 0.0)
            task.set_total(2 * max(1, round(duration * fps)) or None)
        for rgb in clip:
            scores.append(sharpness(rgb))
            thumbs.append(cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), THUMB_SIZE, interpolation=cv2.INTER_AREA))
            if task is not None:
                task.advance(1)
    if not scores:
        raise VideoError("no frame can be decoded")
    chosen = pick_frames(np.asarray(scores), np.stack(thumbs), target)
    if len(chosen) < MIN_DISTINCT_FRAMES:
        raise VideoError(
            f"it gives only {len(chosen)} distinct frame{'s' if len(chosen) != 1 else ''} "
            f"(at least {MIN_DISTINCT_FRAMES} are needed): film a longer, slow sweep around the subject"
        )
    wanted = set(chosen)
    out: list[VideoFrame] = []
    with Clip(video) as clip:
        for index, rgb in enumerate(clip):
            if index in wanted:
                path = out_dir / f"{prefix}_{index:05d}.png"
                write_png(path, rgb, compression=1)
                out.append(VideoFrame(index, round(index / fps, 4), round(scores[index], 2), path))
            if task is not None:
                task.advance(1)
            if index >= max(wanted):
                break
    return out


def video_size(video: Path) -> tuple[int, int]:
    """(width, height) of the video's frames as decoded (rotation applied)."""
    with Clip(video) as clip:
        w, h = clip.meta["size"]
    return int(w), int(h)
