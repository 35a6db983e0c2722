"""Small file primitives shared by every layer: atomic writes, PNG encoding, relative paths.

An atomic write goes to a temporary file beside the target and is renamed over it, so a reader (or
a run killed half-way) sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np


def relative_path(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` (with .. where needed), with forward slashes, as transforms.json
    and PLY references are written."""
    return Path(os.path.relpath(Path(path).absolute(), Path(folder).absolute())).as_posix()


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` writes the content into ``tmp``; then it replaces ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_json_atomic(path: Path, data: Any, indent: int = 1) -> None:
    """JSON (values it cannot write as JSON become strings) replacing ``path`` whole."""
    write_bytes_atomic(path, json.dumps(data, indent=indent, default=str).encode())


PNG_COMPRESSION = 3
"""zlib level of the image folders nerfpipe writes (images_<k>/, masks/): smaller than OpenCV's 1, still fast."""


def encode_png(rgb: np.ndarray, compression: int | None = None) -> bytes:
    """(H, W, 3) uint8 RGB (or float in [0, 1], rounded) -> PNG bytes; ``compression`` 0-9 (OpenCV's default: 1)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        rgb = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    params = [cv2.IMWRITE_PNG_COMPRESSION, compression] if compression is not None else []
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb, params)
    if not ok:
        raise OSError(f"an image of shape {rgb.shape} could not be encoded as PNG")
    return buf.tobytes()


def write_png(path: Path, rgb: np.ndarray, compression: int | None = None) -> None:
    Path(path).write_bytes(encode_png(rgb, compression))
