"""The ingest stage: user photos -> ``images/``, ``images_4/``, ``images_8/``.

Every usable photo comes out upright (EXIF orientation applied), RGB, 8-bit. ``images/`` keeps full
resolution (a JPEG that is already upright and RGB is copied byte for byte, EXIF and all; anything
else is re-encoded, JPEG as JPEG with its EXIF, other formats as PNG). ``images_k/`` holds PNGs
downsampled by exactly k with an area filter after a centre crop chosen so that both sides of the
result are multiples of 16 (fern's 4032x3024 gives 1008x752 at k=4 and 496x368 at k=8). Cropping
before resizing keeps the geometry exact: focal length divides by k and the principal point stays
at the centre.

Photos cut out on white or on transparency (see :func:`nerfpipe.photos.object_mask`): when at least 90%
of the photos are, the scene is an object on white. Ingest says so once, writes each photo's object
mask to ``masks/<stem>.png`` (255 = object; an all-object mask for a photo of such a scene that is not
cut out) and records ``background`` in its manifest; the poses stage gives the masks to SfM, the report
measures exposure on the object, and train uses a white background and the box of the object's
points. Otherwise ``masks/`` stays empty. Photos are in natural name order (``2.jpg`` before ``10.jpg``).

Masks given with ``masks`` (one per photo, from a segmentation tool) make the same scene: each photo is
cut out on white with its mask before anything is written (the photo folder is left as it is), SfM
sees the object only and train uses the white background and the object's box. A turntable capture
needs both: the object turned while the room stood still, so no set of cameras fits the room and the
object, and a field trained on the whole photos paints the room as fog around the object.
``keep_background`` keeps the whole photos for training (a scene whose background stood still).

What stops and what warns (one sentence each, naming the file):

| input | what happens |
| --- | --- |
| missing photo folder, empty folder, no photo in it | stop |
| the photo folder is one ingest writes to (``images/``) | stop: photos are never overwritten |
| a file that is not a photo (``notes.txt``) or a format we cannot read (RAW) | warn, skip |
| a zero-byte, truncated or corrupt photo | warn, skip |
| an exact copy of another photo (same bytes) | warn, skip the later name |
| photos of another size or camera than most (portrait among landscape, a second phone) | warn, skip them |
| fewer than 3 usable photos left | stop |
| a scene folder that cannot be written | stop |
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from nerfpipe import scene as scene_layout
from nerfpipe.cache import StageResult, StageSpec, run_stage
from nerfpipe.errors import NerfpipeError
from nerfpipe.frames import DEFAULT_FRAMES, VIDEO_SUFFIXES, VideoError, extract_frames
from nerfpipe.photos import (CROP_MULTIPLE, HEIF_FORMATS, PHOTO_SUFFIXES, UNSUPPORTED_PHOTO_SUFFIXES, Background, PhotoError,
                             downsample, object_mask, open_photo, probe, read_photo)
from nerfpipe.io import PNG_COMPRESSION, write_png
from nerfpipe.scene import natural_key
from nerfpipe.progress import Reporter
from nerfpipe.stages.results import IngestResult

STAGE = "ingest"
VERSION = "2"
"""2: photos in natural name order; masks/ for photos cut out on white or on transparency."""
MIN_PHOTOS = 3
JPEG_QUALITY = 95
ON_WHITE_SCENE = 0.9
"""The scene is cut out on white when at least this fraction of its photos is (on white or transparent)."""


@dataclass(frozen=True)
class IngestParams:
    photos: Path
    """Folder holding the photos (may be the scene folder itself)."""
    scene: Path = Path(".")
    """Scene folder that receives images/, images_4/, images_8/."""
    factors: tuple[int, ...] = (4, 8)
    """Downsampling factors; each gives an images_<k>/ folder."""
    force: bool = False
    """Redo the stage even if it is up to date."""
    frames: int = DEFAULT_FRAMES
    """Frames kept from each video (the sharpest of each of this many windows)."""
    workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    """Threads decoding and encoding photos."""
    masks: Path | None = None
    """Folder of object masks, one per photo named by its stem (``IMG_1.png`` for ``IMG_1.jpg``; grey >= 128
    = object), as a segmentation tool writes them: SfM then sees only the objects, and training sees
    them cut out on white (a turntable capture, where the room stands still while the object turns,
    needs both)."""
    keep_background: bool = False
    """With ``masks``: keep each photo whole for training (SfM still sees only the objects)."""


def list_candidates(photos: Path) -> tuple[list[Path], list[Path], list[tuple[str, str]]]:
    """Photo files and video files in ``photos`` (a folder, top level, sorted by name, or one video
    file), and (file, reason) for files skipped by name."""
    if photos.is_file():
        return [], [photos], []
    photos_files, videos, skipped = [], [], []
    for path in sorted(photos.iterdir(), key=lambda p: p.name):
        if path.name.startswith(".") or not path.is_file():
            continue
        suffix = path.suffix.lower()
        if suffix in PHOTO_SUFFIXES:
            photos_files.append(path)
        elif suffix in VIDEO_SUFFIXES:
            videos.append(path)
        elif suffix in UNSUPPORTED_PHOTO_SUFFIXES:
            skipped.append((path.name, UNSUPPORTED_PHOTO_SUFFIXES[suffix]))
        else:
            skipped.append((path.name, "it is not a photo"))
    return photos_files, videos, skipped


def _output_stems(paths: list[Path]) -> dict[Path, str]:
    """Each photo's output stem: its own stem, or stem_ext when two photos share a stem."""
    counts = Counter(p.stem for p in paths)
    return {p: (p.stem if counts[p.stem] == 1 else f"{p.stem}_{p.suffix[1:].lower()}") for p in paths}


def _check_photos_dir(params: IngestParams) -> Path:
    photos = Path(params.photos)
    if not photos.exists():
        raise NerfpipeError(f"The photo folder {photos} does not exist: check the path.")
    if photos.is_file() and photos.suffix.lower() not in VIDEO_SUFFIXES:
        raise NerfpipeError(
            f"{photos} is a file, not a folder or a video: pass the folder that holds the photos, or a "
            f"video ({', '.join(sorted(VIDEO_SUFFIXES))})."
        )
    scene = Path(params.scene).resolve()
    owned = {(scene / name).resolve() for name in scene_layout.output_names(params.factors)}
    if photos.resolve() in owned:
        raise NerfpipeError(
            f"Your photos are in {photos}, a folder that ingest writes: move them to "
            f"{scene / scene_layout.PHOTOS} and run ingest on that folder."
        )
    return photos


def _check_factors(factors) -> tuple[int, ...]:
    out = tuple(sorted({int(k) for k in factors}))
    bad = [k for k in out if k < 2]
    if bad:
        raise NerfpipeError(f"Factor {bad[0]} is not a downsampling factor: use whole numbers of 2 or more, such as 4 8.")
    return out


MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def find_mask(masks: Path, photo: Path) -> Path | None:
    """The user's mask of ``photo`` in ``masks``: ``<stem>.<any image suffix>`` (or ``<name>.png``, COLMAP's naming)."""
    for candidate in [masks / f"{photo.stem}{suffix}" for suffix in MASK_SUFFIXES] + [masks / f"{photo.name}.png"]:
        if candidate.is_file():
            return candidate
    return None


def _user_mask(path: Path | None, size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool object mask from the user's mask file ``path`` (grey >= 128 = object) for a photo of ``size``."""
    if path is None:
        raise PhotoError("it has no mask in the masks folder (give every photo one, named by its stem)")
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise PhotoError(f"its mask {path.name} cannot be read")
    if (mask.shape[1], mask.shape[0]) != size:
        raise PhotoError(f"its mask {path.name} is {mask.shape[1]}x{mask.shape[0]} while the upright photo is "
                         f"{size[0]}x{size[1]}")
    return mask >= 128


def _process_one(path: Path, stem: str, factors: tuple[int, ...], out: Path, mask_file: Path | None = None,
                 user_masks: bool = False, on_white: bool = False) -> dict:
    """Write one photo upright into images/ and images_k/ (with ``on_white``, cut out on white with the
    user's mask first) and its mask into masks/ where the scene keeps one."""
    data = path.read_bytes()
    if not data:
        raise PhotoError("it is empty (0 bytes)")
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    rgb, alpha, exif = read_photo(io.BytesIO(data))
    height, width = rgb.shape[:2]
    if user_masks:
        mask = _user_mask(mask_file, (width, height))
        background = Background("masked", 0.0, round(float(1.0 - mask.mean()), 4))
        if on_white:
            rgb = np.where(mask[..., None], rgb, np.uint8(255))
    else:
        mask, background = object_mask(rgb, alpha)
    with open_photo(io.BytesIO(data)) as (img, photo_exif):
        fmt, mode = img.format, img.mode
    upright = photo_exif is not None and photo_exif.get(0x0112, 1) in (1, None)  # damaged EXIF: re-encoded
    if fmt == "JPEG" and mode == "RGB" and upright and not on_white:
        full_name = f"{stem}.jpg"
        (out / scene_layout.IMAGES / full_name).write_bytes(data)
    elif fmt == "JPEG" or fmt in HEIF_FORMATS:
        full_name = f"{stem}.jpg"
        Image.fromarray(rgb).save(
            out / scene_layout.IMAGES / full_name, quality=JPEG_QUALITY, **({"exif": exif} if exif else {})
        )
    else:
        full_name = f"{stem}.png"
        _write_png(out / scene_layout.IMAGES / full_name, rgb)
    sizes = {scene_layout.IMAGES: [width, height]}
    for k in factors:
        try:
            small = downsample(rgb, k)
        except ValueError:
            raise PhotoError(
                f"at {width}x{height} it is too small for factor {k} (each side needs {CROP_MULTIPLE * k} pixels)"
            ) from None
        _write_png(out / scene_layout.images_dir_name(k) / f"{stem}.png", small)
        sizes[scene_layout.images_dir_name(k)] = [small.shape[1], small.shape[0]]
    if background.kind != "photo":  # kept only if most photos of the scene are cut out (see _ingest_body)
        write_png(out / scene_layout.MASKS / f"{stem}.png", mask.astype(np.uint8) * 255, PNG_COMPRESSION)
    return {"name": full_name, "stem": stem, "source": path.name, "hash": digest, "sizes": sizes,
            "background": background.kind, "background_fraction": background.background}


def _scene_background(done: list[dict], out: Path, reporter: Reporter) -> dict:
    """Whether the scene's photos are cut out (on white or on transparency): said once, and their
    object masks kept in masks/ (else masks/ stays empty)."""
    kinds = Counter(r["background"] for r in done)
    cut = kinds["white"] + kinds["cut_out"]
    if cut < ON_WHITE_SCENE * len(done):
        for mask in (out / scene_layout.MASKS).iterdir():
            mask.unlink()
        return {"kind": "photo", "cut_out_photos": cut, "masks": None}
    kind = "cut_out" if kinds["cut_out"] >= kinds["white"] else "white"
    for rec in done:  # a photo of such a scene that is not cut out: an all-object mask, SfM sees all of it
        if rec["background"] == "photo":
            width, height = rec["sizes"][scene_layout.IMAGES]
            write_png(out / scene_layout.MASKS / f"{rec['stem']}.png", np.full((height, width), 255, np.uint8),
                      PNG_COMPRESSION)
    what = "cut out on white" if kind == "white" else "cut out (transparent background, composited on white)"
    fractions = [r["background_fraction"] for r in done if r["background"] != "photo"]
    reporter.info(
        f"The photos are {what} ({cut} of {len(done)}; background {min(fractions):.0%} to {max(fractions):.0%} of each): "
        f"training with a white background around the object, SfM on the object only (masks in {scene_layout.MASKS}/)."
    )
    return {"kind": kind, "cut_out_photos": cut, "masks": scene_layout.MASKS}


def _masked_background(done: list[dict], params: IngestParams, reporter: Reporter) -> dict:
    """The scene of photos with the user's masks: said once (what SfM and training will see)."""
    fractions = [r["background_fraction"] for r in done]
    if params.keep_background:
        kind, training = "masked", "training on the whole photos (--keep-background)"
    else:
        kind, training = "masked_on_white", ("training on the objects cut out on white, with a white background "
                                             "around them (--keep-background trains on the whole photos)")
    reporter.info(f"Masks from {params.masks} ({len(done)} photos; background {min(fractions):.0%} to "
                  f"{max(fractions):.0%} of each): SfM on the objects only, {training}.")
    return {"kind": kind, "cut_out_photos": 0, "masks": scene_layout.MASKS, "from": str(params.masks)}


def _write_png(path: Path, rgb: np.ndarray) -> None:
    write_png(path, rgb, PNG_COMPRESSION)


_COPY_NAME = re.compile(r"copy|kopie|copie|\(\d+\)", re.IGNORECASE)
"""Names that say 'a copy of': 'IMG_1 copy', 'Copy of IMG_1', 'IMG_1 - Copy', 'IMG_1 (1)'."""


def _original_first(path: Path) -> tuple:
    """Sort key putting the original of identical photos first: a name that does not read as a copy,
    then the older file (a copy is written later), then the earlier name in natural order."""
    return (bool(_COPY_NAME.search(path.stem)), path.stat().st_mtime_ns, natural_key(path.name))


def _select(candidates: list[Path], reporter: Reporter) -> tuple[list[Path], list[tuple[str, str]]]:
    """Drop empty, unreadable, duplicate and odd-sized photos; return the kept ones and (file, reason)."""
    skipped: list[tuple[str, str]] = []
    readable: list[Path] = []
    for path in candidates:
        if path.stat().st_size == 0:
            skipped.append((path.name, "it is empty (0 bytes): copy it from the phone again"))
        else:
            readable.append(path)
    # Exact copies: keep the original (see _original_first).
    by_hash: dict[str, list[Path]] = {}
    for path in readable:
        by_hash.setdefault(hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest(), []).append(path)
    copies = {}
    for same in by_hash.values():
        keep = min(same, key=_original_first)
        copies.update({p: keep for p in same if p != keep})
    infos: dict[Path, tuple] = {}
    for path in readable:
        if path in copies:
            skipped.append((path.name, f"it is an exact copy of {copies[path].name}"))
            continue
        try:
            info = probe(path)
        except PhotoError as e:
            skipped.append((path.name, str(e)))
            continue
        if info.exif_damaged:
            reporter.warn(f"{path.name} has a damaged EXIF block: it is used as stored (not turned by its EXIF "
                          "orientation, no focal length for SfM).")
        infos[path] = (info.width, info.height, info.camera)
    if not infos:
        return [], skipped
    # A photo without EXIF (an export, a screenshot) cannot be told apart by camera: it joins the
    # most common camera of its size.
    known = Counter(key for key in infos.values() if key[2])
    for path, (w, h, camera) in infos.items():
        if not camera:
            same_size = [key for key in known if key[:2] == (w, h)]
            if same_size:
                infos[path] = max(same_size, key=known.__getitem__)
    groups = Counter(infos.values())  # in name order: on a tie the group of the first photo wins
    best = max(groups, key=groups.__getitem__)
    w, h, camera = best
    kept = []
    for path, key in infos.items():
        if key == best:
            kept.append(path)
            continue
        ow, oh, ocam = key
        if (ow, oh) != (w, h):
            why = f"it is {ow}x{oh} while most photos are {w}x{h}"
        else:
            why = f"it was taken with another camera ({ocam or 'no EXIF'}) than most photos ({camera or 'no EXIF'})"
        skipped.append((path.name, why + ": one scene needs one camera, so retake it like the others or ingest it as a separate scene"))
    return kept, skipped


def _expand_videos(videos: list[Path], out: Path, params: IngestParams, reporter: Reporter,
                   single: bool) -> tuple[list[Path], dict, list[tuple[str, str]]]:
    """Frames of each video written as PNG files under ``out/.frames``: (files, {name: info}, skipped)."""
    frame_dir = out / ".frames"
    frame_dir.mkdir()
    files, info, skipped = [], {}, []
    for video in videos:
        try:
            with reporter.task(f"frames of {video.name}", unit="frames") as task:
                frames = extract_frames(video, frame_dir, video.stem, params.frames, task)
        except VideoError as e:
            if single:
                raise NerfpipeError(f"The video {video} cannot be used: {e}.") from None
            skipped.append((video.name, str(e)))
            continue
        for f in frames:
            files.append(f.path)
            info[f.path.name] = {"video": video.name, "index": f.index, "time": f.time, "sharpness": f.sharpness}
    return files, info, skipped


def _ingest_body(photos: Path, candidates: list[Path], videos: list[Path], params: IngestParams, reporter: Reporter):
    factors = params.factors

    def body(out: Path) -> IngestResult:
        t0 = time.perf_counter()
        for name in scene_layout.output_names(factors):
            (out / name).mkdir(parents=True)
        frame_files, frame_info, skipped_videos = _expand_videos(
            videos, out, params, reporter, single=not candidates and len(videos) == 1
        )
        kept, skipped = _select(sorted(candidates + frame_files, key=lambda p: natural_key(p.name)), reporter)
        skipped += skipped_videos
        stems = _output_stems(kept)
        done: list[dict] = []
        with reporter.task("ingest", total=len(kept), unit="images") as task:
            ex = ThreadPoolExecutor(max_workers=params.workers)
            try:
                masks = params.masks
                on_white = masks is not None and not params.keep_background
                futures = [(p, ex.submit(_process_one, p, stems[p], factors, out,
                                         find_mask(masks, p) if masks else None, masks is not None, on_white))
                           for p in kept]
                for path, fut in futures:
                    try:
                        done.append(fut.result())
                    except PhotoError as e:
                        skipped.append((path.name, str(e)))
                    task.advance(1)
            except BaseException:
                ex.shutdown(wait=True, cancel_futures=True)
                raise
            ex.shutdown(wait=True)
        skipped.sort()
        for name, why in skipped:
            reporter.warn(f"Skipped {name}: {why}.")
        if len(done) < MIN_PHOTOS:
            raise NerfpipeError(
                f"Only {len(done)} usable photo{'s' if len(done) != 1 else ''} in {photos} "
                f"({len(skipped)} skipped): a scene needs at least {MIN_PHOTOS}, and 20 or more "
                "overlapping photos give a good result."
            )
        sizes = {}
        for rec in done:
            for folder, size in rec["sizes"].items():
                sizes.setdefault(folder, size)
                if sizes[folder] != size:  # guarded by _select; a bug if it happens
                    raise RuntimeError(f"mixed sizes in {folder}")
        done.sort(key=lambda r: natural_key(r["name"]))
        background = (_scene_background(done, out, reporter) if params.masks is None
                      else _masked_background(done, params, reporter))
        return IngestResult(
            photos_dir=str(photos),
            images=[r["name"] for r in done],
            stems=[r["stem"] for r in done],
            sources={r["name"]: r["source"] for r in done},
            videos=[v.name for v in videos],
            frames={r["name"]: frame_info[r["source"]] for r in done if r["source"] in frame_info},
            skipped=[{"file": n, "reason": w} for n, w in skipped],
            sizes=sizes,
            factors=list(factors),
            background=background,
            body_seconds=round(time.perf_counter() - t0, 3),
        )

    return body


def run(params: IngestParams, reporter: Reporter | None = None) -> StageResult:
    """Ingest the photos of ``params.photos`` into ``params.scene``; cached (see nerfpipe.cache)."""
    reporter = reporter or Reporter()
    factors = _check_factors(params.factors)
    params = dataclasses.replace(params, factors=factors)
    if params.keep_background and params.masks is None:
        raise NerfpipeError("--keep-background goes with --masks DIR (what SfM should see): without masks the photos "
                            "are trained on whole anyway.")
    photos = _check_photos_dir(params)
    scene = Path(params.scene)
    if not scene.exists():
        try:
            scene.mkdir(parents=True)
        except OSError as e:
            raise NerfpipeError(
                f"Cannot create the scene folder {scene} ({e.strerror or e}): choose a folder you can write to with --scene."
            ) from None
    if params.masks is not None:
        masks = Path(params.masks)
        if not masks.is_dir():
            raise NerfpipeError(f"The masks folder {masks} {scene_layout.missing(masks)}: pass the folder that holds "
                                "one mask per photo, named by the photo's stem.")
        if masks.resolve() == (scene / scene_layout.MASKS).resolve():
            raise NerfpipeError(f"Your masks are in {masks}, a folder that ingest writes: move them to another "
                                "folder (such as masks_in/) and pass that one.")
    candidates, videos, skipped_by_name = list_candidates(photos)
    if not candidates and not videos:
        others = len(skipped_by_name)
        if others == 0:
            raise NerfpipeError(f"The photo folder {photos} is empty: copy your photos into it.")
        raise NerfpipeError(
            f"The folder {photos} holds no photos ({others} other file{'s' if others != 1 else ''}, "
            f"such as {skipped_by_name[0][0]}): nerfpipe reads {', '.join(sorted(PHOTO_SUFFIXES | VIDEO_SUFFIXES))}."
        )
    if params.masks is not None and candidates and not any(find_mask(Path(params.masks), p) for p in candidates):
        raise NerfpipeError(f"None of the {len(candidates)} photos has a mask in {params.masks} (for {candidates[0].name}, "
                            f"{candidates[0].stem}.png was looked for): name each mask by its photo's stem.")
    for name, why in skipped_by_name:
        reporter.warn(f"Skipped {name}: {why}.")
    try:
        photos_key = photos.resolve().relative_to(scene.resolve()).as_posix()
    except ValueError:
        photos_key = str(photos.resolve())
    spec = StageSpec(
        name=STAGE,
        version=VERSION,
        params={"factors": list(factors), "photos": photos_key, **({"frames": params.frames} if videos else {}),
                **({"masks": str(Path(params.masks).resolve()),
                    "background": "kept" if params.keep_background else "white"} if params.masks else {})},
        inputs=candidates + videos + ([m for m in (find_mask(Path(params.masks), p) for p in candidates) if m]
                                      if params.masks else []),
        outputs=scene_layout.output_names(factors),
    )
    return run_stage(scene, spec, _ingest_body(photos, candidates, videos, params, reporter), force=params.force,
                     reporter=reporter, result_type=IngestResult)

