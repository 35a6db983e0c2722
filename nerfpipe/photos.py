"""Reading user photos (upright by EXIF orientation, RGB, 8-bit, whatever came in) and making their downsampled copies.

Pillow reads every format here; it is what imageio itself reads images with.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps


try:  # iPhones save HEIC by default: pillow-heif (a wheel with libheif inside) teaches Pillow to read it
    import pillow_heif

    pillow_heif.register_heif_opener()  # libheif turns the image upright and sets EXIF orientation to 1
    HEIF_SUFFIXES = {".heic", ".heif"}
except ImportError:  # pragma: no cover - a platform without its wheel
    HEIF_SUFFIXES = set()

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"} | HEIF_SUFFIXES
"""Suffixes read as photos (any case)."""
HEIF_FORMATS = {"HEIF"}
"""Pillow format names of HEIC / HEIF photos (re-encoded as JPEG with their EXIF, for SfM's focal length)."""
UNSUPPORTED_PHOTO_SUFFIXES = {
    **({} if HEIF_SUFFIXES else {
        ".heic": "HEIC photos cannot be read here (pillow-heif is not installed): pip install pillow-heif, or export "
        "them as JPEG (on an iPhone: Settings > Camera > Formats > Most Compatible), and ingest again",
        ".heif": "HEIF photos cannot be read here (pillow-heif is not installed): pip install pillow-heif, or export "
        "them as JPEG, and ingest again"}),
    ".dng": "RAW (DNG) photos cannot be read: export them as JPEG or PNG and ingest again",
    ".cr2": "RAW photos cannot be read: export them as JPEG or PNG and ingest again",
    ".nef": "RAW photos cannot be read: export them as JPEG or PNG and ingest again",
    ".arw": "RAW photos cannot be read: export them as JPEG or PNG and ingest again",
}

Image.MAX_IMAGE_PIXELS = 300_000_000  # panoramas are fine; a decompression bomb is not


class PhotoError(Exception):
    """A photo that cannot be used; the message says why in a few words."""


@dataclass(frozen=True)
class PhotoInfo:
    """What ingest needs to know about a photo before deciding to keep it."""

    width: int
    """Upright width in pixels (after EXIF orientation)."""
    height: int
    camera: str
    """'Make Model @ focal mm' from EXIF, or '' when the photo has no EXIF."""
    orientation: int
    """EXIF orientation tag (1 = already upright)."""
    format: str
    """Pillow's format name: 'JPEG', 'PNG', ..."""
    mode: str
    """Pillow's mode: 'RGB', 'L', 'I;16', 'RGBA', 'CMYK', ..."""
    exif_damaged: bool = False
    """The EXIF block is unreadable: the photo is used as stored (no rotation, no focal length)."""


@contextlib.contextmanager
def open_photo(path) -> Iterator[tuple[Image.Image, Image.Exif | None]]:
    """``with open_photo(path) as (img, exif)``: the Pillow image and its EXIF (empty when it has none;
    None when the EXIF block is damaged). Pillow's warnings about a damaged EXIF block are caught
    here, never shown; other warnings while opening mean a damaged file (PhotoError)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = Image.open(path)
        exif = img.getexif()
        try:
            dict(exif)  # parse every tag now
        except Exception:  # malformed EXIF must not reject a good photo
            exif = None
    try:
        messages = [str(w.message) for w in caught]
        if any("exif" in m.lower() for m in messages):
            exif = None
        others = [m for m in messages if "exif" not in m.lower()]
        if others:
            raise PhotoError(f"it is truncated or corrupt ({others[0].strip()})")
        yield img, exif
    finally:
        img.close()


def _exif_camera(exif: Image.Exif) -> tuple[str, int]:
    try:
        orientation = int(exif.get(ExifTags.Base.Orientation, 1) or 1)
    except (TypeError, ValueError):
        orientation = 1
    make = str(exif.get(ExifTags.Base.Make, "") or "").strip("\x00 ")
    model = str(exif.get(ExifTags.Base.Model, "") or "").strip("\x00 ")
    focal = ""
    try:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        f = sub.get(ExifTags.Base.FocalLength)
        if f:
            focal = f"{float(f):.2f}mm"
    except Exception:  # malformed EXIF must not reject a good photo
        pass
    camera = " ".join(p for p in (make, model, focal) if p)
    return camera, orientation


def probe(path: Path) -> PhotoInfo:
    """Header-only look at a photo (fast); raises PhotoError if it is not a readable image."""
    try:
        with open_photo(path) as (img, exif):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                camera, orientation = _exif_camera(exif) if exif is not None else ("", 1)
            w, h = img.size
            if orientation in (5, 6, 7, 8):
                w, h = h, w
            return PhotoInfo(w, h, camera, orientation, img.format or "", img.mode, exif_damaged=exif is None)
    except Image.DecompressionBombError:
        raise PhotoError("it is too large to be a photo") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise PhotoError(f"it is not a readable image ({e})") from None


def first_size(paths) -> tuple[int, int] | None:
    """(width, height) of the first of ``paths`` that :func:`probe` can read (upright), or None."""
    for path in paths:
        try:
            info = probe(path)
        except PhotoError:
            continue
        return info.width, info.height
    return None


def _alpha8(img: Image.Image) -> np.ndarray | None:
    """(H, W) uint8 alpha of a photo that has transparency (some pixel below 255), else None."""
    mode = img.mode
    if not (mode in ("RGBA", "LA", "PA", "RGBa", "La", "RGBA;16B") or (mode == "P" and "transparency" in img.info)):
        return None
    alpha = np.asarray(img.convert("RGBA"), dtype=np.uint8)[..., 3]
    return alpha if int(alpha.min()) < 255 else None


def _to_rgb8(img: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 from any Pillow mode: 16-bit scaled down, alpha composited on white."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(np.round(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if arr.max() <= 1.0 else 255.0
        grey = np.clip(np.round(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    if mode in ("RGB;16", "RGB;16B", "RGBA;16B") or mode.endswith(";16"):
        arr = np.asarray(img).astype(np.float64)
        return np.clip(np.round(arr[..., :3] / 257.0), 0, 255).astype(np.uint8)
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def read_rgb8(path: Path) -> tuple[np.ndarray, bytes | None]:
    """The whole photo, upright, as (H, W, 3) uint8, and its EXIF (orientation reset) if any.

    See :func:`read_photo`, which also returns the alpha channel of a cut-out photo.
    """
    rgb, _alpha, exif = read_photo(path)
    return rgb, exif


def read_photo(path: Path) -> tuple[np.ndarray, np.ndarray | None, bytes | None]:
    """The whole photo, upright: RGB (H, W, 3) uint8 (transparent pixels composited on white), its
    alpha (H, W) uint8 when it has transparency (a cut-out photo; else None), and its EXIF
    (orientation reset) if any.

    Raises PhotoError for a truncated or corrupt file: Pillow is told not to paper over missing
    data, and its warnings about bad pixel data are errors here. A damaged EXIF block alone is not:
    the photo is read as stored, without EXIF.
    """
    try:
        with open_photo(path) as (img, photo_exif), warnings.catch_warnings():
            warnings.simplefilter("error")
            img.load()
            if photo_exif is None:
                upright, exif = img, None
            else:
                upright = ImageOps.exif_transpose(img)
                exif = upright.info.get("exif")
            arr = _to_rgb8(upright)
            alpha = _alpha8(upright)
    except Image.DecompressionBombError:
        raise PhotoError("it is too large to be a photo") from None
    except (OSError, ValueError, SyntaxError, Warning) as e:
        raise PhotoError(f"it is truncated or corrupt ({e})") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise PhotoError(f"it decoded to an unexpected shape {arr.shape}")
    return np.ascontiguousarray(arr), alpha, exif if isinstance(exif, bytes) else None


# --------------------------------------------------------------------------------------------------
# Photos cut out on white (a background-removal app, a light box) or on transparency

WHITE_LEVEL = 245
"""A pixel whose every channel is at least this is white background (JPEG leaves 250-255 on a white field)."""
ON_WHITE_BORDER = 0.97
"""A photo is on white when at least this fraction of its border pixels is white ..."""
ON_WHITE_MIN_BACKGROUND = 0.10
"""... and the white connected to the border covers at least this fraction of the photo."""


@dataclass(frozen=True)
class Background:
    """What surrounds the subject of one photo."""

    kind: str
    """'cut_out' (transparent background), 'white' (on a white field), 'photo' (anything else); ingest also
    says 'masked' for a photo whose mask the user gave."""
    border_white: float
    """Fraction of the border pixels that are white (or transparent)."""
    background: float
    """Fraction of the photo that is background (white connected to the border, or transparent)."""


def object_mask(rgb: np.ndarray, alpha: np.ndarray | None = None) -> tuple[np.ndarray, Background]:
    """The subject of a photo as an (H, W) bool mask (True = object) and what its background is.

    A cut-out photo (alpha given): the object is alpha >= 128. Otherwise the background is the white
    (every channel >= WHITE_LEVEL) connected to the photo's border, so white parts inside the object
    (a label, a highlight) stay object. A photo that is not on white gets an all-True mask.
    """
    h, w = rgb.shape[:2]
    if alpha is not None:
        obj = alpha >= 128
        border = np.concatenate([obj[0], obj[-1], obj[:, 0], obj[:, -1]])
        return obj, Background("cut_out", round(float(1.0 - border.mean()), 4), round(float(1.0 - obj.mean()), 4))
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])  # (2W + 2H, 3): decided before the whole photo
    border_white = float((border.min(axis=1) >= WHITE_LEVEL).mean())
    if border_white < ON_WHITE_BORDER:
        return np.ones((h, w), dtype=bool), Background("photo", round(border_white, 4), 0.0)
    white = (rgb.min(axis=2) >= WHITE_LEVEL).astype(np.uint8)
    _n, labels = cv2.connectedComponents(white, connectivity=4)
    edge_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge_labels = edge_labels[edge_labels > 0]
    background = np.isin(labels, edge_labels) & (white > 0)
    fraction = float(background.mean())
    if fraction < ON_WHITE_MIN_BACKGROUND or fraction > 0.995:
        return np.ones((h, w), dtype=bool), Background("photo", round(border_white, 4), round(fraction, 4))
    return ~background, Background("white", round(border_white, 4), round(fraction, 4))


# --------------------------------------------------------------------------------------------------
# Downsampled copies (ingest's images_<k>/, undistort's images_undistorted_<k>/)

CROP_MULTIPLE = 16
"""Both sides of every downsampled image are a multiple of this (NeRF code and video encoders like it)."""


def crop_box(width: int, height: int, factor: int, multiple: int = CROP_MULTIPLE) -> tuple[int, int, int, int]:
    """Centre crop (x0, y0, w, h) in full-resolution pixels so that (w/factor, h/factor) are multiples of ``multiple``."""
    out_w = (width // factor) // multiple * multiple
    out_h = (height // factor) // multiple * multiple
    if out_w == 0 or out_h == 0:
        raise ValueError("too small")
    w, h = out_w * factor, out_h * factor
    return (width - w) // 2, (height - h) // 2, w, h


def downsample(rgb: np.ndarray, factor: int) -> np.ndarray:
    """(H, W, 3) uint8 -> centre-cropped, area-downsampled (h, w, 3) uint8, h and w multiples of 16."""
    height, width = rgb.shape[:2]
    x0, y0, w, h = crop_box(width, height, factor)
    crop = rgb[y0 : y0 + h, x0 : x0 + w]
    return cv2.resize(crop, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
