"""The capture report: what is wrong with the photos, each problem one sentence saying what to do.

``run(ReportParams(scene), reporter)`` reads an ingested, posed scene and writes two files into it:

- ``report.json``: per photo (1-based number in dataset order, name) its sharpness, exposure, whether
  it registered, the photos it matched and the 3D points it sees; the problems, each with its
  photos and its sentence; the figures and thresholds behind them.
- ``report.png``: a top-down view (onto the plane orthogonal to the cameras' mean up vector) of the
  sparse points, each registered camera a numbered dot with a short line in its viewing direction,
  the unregistered photos listed below.

What each measure is:

- sharpness: variance of the Laplacian (:func:`nerfpipe.frames.sharpness`, the measure ingest uses
  to pick video frames) of a grey copy ``SHARPNESS_LONG_SIDE`` pixels on its long side, so that
  captures of any resolution compare; ``relative_sharpness`` divides it by the median photo's.
- exposure: mean luminance (0 to 1) and the fractions of pixels at most ``DARK_LEVEL`` (black) and at
  least ``BRIGHT_LEVEL`` (blown white) on the same grey copy.
- neighbours: the photos it shares at least ``NEIGHBOUR_MIN_INLIERS`` geometrically verified matches
  with (the two-view geometries of ``colmap/database.db``).
- camera positions, viewing directions and 3D points from ``colmap/sparse/0``.

The stage is cached like the others (upstream: ingest and poses); the rules in
:func:`find_problems` take plain numbers and are tested with hand-made ones.

When the poses stage stops because too few photos registered, it writes the same report for the
failed run (:func:`write_failure_report`) as ``report.failed.json`` and ``report.failed.png``: the
finished report of an earlier run is never overwritten, and a later successful poses run removes them.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import cv2
import numpy as np

from nerfpipe import colmap
from nerfpipe import scene as scene_layout
from nerfpipe.cache import StageResult, StageSpec, manifest_path, run_stage
from nerfpipe.errors import NerfpipeError
from nerfpipe.frames import SHARPNESS_LONG_SIDE, sharpness  # photos are measured as ingest measures video frames
from nerfpipe.io import encode_png, write_bytes_atomic
from nerfpipe.progress import Reporter
from nerfpipe.stages.results import IngestResult, PoseCheck, PosesResult, ReportResult, load_result

STAGE = "report"
VERSION = "2"
"""2: the pose check's problems; exposure of the object only for photos cut out on white."""
REPORT_JSON = "report.json"
REPORT_PNG = "report.png"
OUTPUTS = [REPORT_JSON, REPORT_PNG]
FAILED_JSON = "report.failed.json"
FAILED_PNG = "report.failed.png"
FAILED_OUTPUTS = [FAILED_JSON, FAILED_PNG]

MIN_REDUCTION = 2
"""Photos are read from the smallest images folder at least this many times longer than the measuring
copy (decoding less than images/ would). An area reduction by less than 2 blurs like a
half-pixel shift: a 504 px fern photo measures half as sharp as the same photo at 1008 px, while from
1008, 2016 or 4032 px the same photo measures within 25%."""
BLURRED_BELOW = 0.4
"""A photo is blurred below this fraction of the median photo's sharpness. Measured on the 20 fern
photos (1008x756): the sharp ones lie between 0.76 and 1.23 of their median (what they show differs);
a Gaussian blur of sigma 1 px (about 4 px on the 4032 px original) brings a photo to 0.32, a 15 px
motion blur to 0.2, sigma 2 px to 0.06. 0.4 flags all of those and none of the sharp ones."""
DARK_LEVEL = 8
"""Grey levels (0-255) at or under this are black: no detail for matching or for the NeRF."""
BRIGHT_LEVEL = 247
"""Grey levels at or over this are blown white (fern's sky: 3 to 5% of each photo)."""
CLIPPED_FRACTION = 0.25
"""More than this fraction of black (or white) pixels makes a photo under- (or over-) exposed."""
UNDER_EXPOSED_MEAN = 0.15
OVER_EXPOSED_MEAN = 0.85
"""Mean luminance (0 to 1) under / over which a photo is under- / over-exposed (fern: 0.51 to 0.55)."""
EXPOSURE_STEP_STOPS = 1.0
"""A photo whose brightness differs from the median photo's by more than this many stops stands out:
the NeRF sees one surface with two brightnesses (auto-exposure between shots)."""
DISPLAY_GAMMA = 2.2
"""Stops from encoded (sRGB-like) means: a stop doubles linear light, i.e. encoded values x 2^(1/2.2)."""
NEIGHBOUR_MIN_INLIERS = 30
"""Two photos are neighbours with at least this many verified matches: COLMAP registers a photo only
with at least 30 inlier correspondences (mapper.abs_pose_min_num_inliers), so fewer hardly help."""
FEW_NEIGHBOURS = 3
"""A registered photo matched with fewer other photos hangs on one or two links (fern: 19 each)."""
STILL_OF_DEPTH = 0.01
"""A step between consecutive cameras shorter than this fraction of the scene depth gives under 0.6
degrees of parallax (COLMAP triangulates from 1.5): the camera hardly moved (fern: 0.025 to 0.10)."""
STILL_OF_SPACING = 0.2
"""...or a step shorter than this fraction of the median distance from a camera to its nearest other
camera (fern's shortest step is 0.65 of it): a pause in an otherwise moving capture."""
STILL_MIN_STEPS = 2
"""Runs of at least this many still steps (3 photos) are reported; two photos from one spot are harmless."""
TURNED_DEGREES = 10.0
"""A still run whose viewing direction changed more than this turned on the spot."""
FEW_POINTS_PER_PHOTO = 100
"""A registered photo that sees fewer 3D points has an uncertain pose (fern: 970 to 1320 each)."""
MIN_SCENE_POINTS = 200
"""Fewer 3D points in the whole model mean little texture or little overlap (fern at 1008 px: 4122; six
fern photos at 504 px: 378)."""
MAX_NAMES_CHARS = 60
"""Sentences name the files too when the names take at most this many characters."""
FINE = "No problem found: every photo is sharp, evenly exposed and registered, and the camera moved between shots."

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


@dataclass(frozen=True)
class ReportParams:
    scene: Path = Path(".")
    """Scene folder (ingested and posed)."""
    force: bool = False
    """Write the report again even if it is up to date."""
    workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    """Threads decoding photos."""


@dataclass
class PhotoStats:
    """One photo's figures (JSON-able once ``centre`` and ``forward`` are lists)."""

    number: int
    """1-based position in dataset (sorted name) order."""
    name: str
    """File name in images/."""
    sharpness: float
    relative_sharpness: float
    """sharpness / the median photo's sharpness."""
    mean_luminance: float
    """0 to 1."""
    dark_fraction: float
    bright_fraction: float
    registered: bool
    neighbours: list[int]
    """Numbers of the photos it shares at least NEIGHBOUR_MIN_INLIERS verified matches with."""
    points3D: int | None = None
    """3D points of the sparse model it sees (registered photos)."""
    centre: list[float] | None = None
    """Camera centre in COLMAP's world frame (registered photos)."""
    forward: list[float] | None = None
    """Viewing direction (unit) in COLMAP's world frame."""
    video: dict | None = None
    """For a video frame: the clip, frame index and time ingest recorded."""


ProblemKind = Literal["unregistered", "doubtful_poses", "inconsistent_poses", "blurred", "under_exposed",
                      "over_exposed", "darker", "brighter", "hardly_moved", "few_neighbours", "few_points",
                      "few_scene_points"]


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    photos: tuple[int, ...]
    """Photo numbers (1-based) it is about; empty for the whole scene."""
    sentence: str


# --------------------------------------------------------------------------------------------------
# Wording (pure)


def photo_ranges(numbers: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive numbers grouped: [3, 4, 5, 9, 12, 13] -> [(3, 5), (9, 9), (12, 13)]."""
    out: list[tuple[int, int]] = []
    for n in sorted(set(numbers)):
        if out and n == out[-1][1] + 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


def join_and(items: Sequence[str]) -> str:
    """['a'] -> 'a'; ['a', 'b', 'c'] -> 'a, b and c'."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _range_items(ranges: list[tuple[int, int]], label) -> list[str]:
    items: list[str] = []
    for a, b in ranges:
        if b - a >= 2:
            items.append(f"{label(a)} to {label(b)}")
        else:
            items.extend(label(n) for n in range(a, b + 1))
    return items


def numbers_text(numbers: Sequence[int]) -> str:
    """'photos 12 to 15', 'photo 7', 'photos 3, 4 and 20 to 31': consecutive numbers become ranges."""
    ranges = photo_ranges(numbers)
    count = sum(b - a + 1 for a, b in ranges)
    return ("photo " if count == 1 else "photos ") + join_and(_range_items(ranges, str))


def names_text(numbers: Sequence[int], names: dict[int, str], max_chars: int = MAX_NAMES_CHARS) -> str | None:
    """'IMG_12.jpg to IMG_15.jpg' (ranged as :func:`numbers_text`), or None when longer than max_chars."""
    named = join_and(_range_items(photo_ranges(numbers), lambda n: names.get(n, str(n))))
    return named if len(named) <= max_chars else None


def describe_photos(numbers: Sequence[int], names: dict[int, str]) -> str:
    """'photos 12 to 15 (IMG_12.jpg to IMG_15.jpg)', 'photo 7 (IMG_7.jpg)', 'photos 3, 7 and 20 to 31'
    (the file names when they are short)."""
    named = names_text(numbers, names)
    return numbers_text(numbers) + (f" ({named})" if named else "")


def _capital(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def _forms(count: int) -> dict[str, str]:
    one = count == 1
    return {"is": "is" if one else "are", "them": "it" if one else "them", "their": "its" if one else "their"}


def _percent_span(values: Sequence[float]) -> str:
    lo, hi = round(100 * min(values)), round(100 * max(values))
    return f"{lo}%" if lo == hi else f"{lo}% to {hi}%"


# --------------------------------------------------------------------------------------------------
# The rules (pure: hand-made numbers in, sentences out)


def _runs_of(photos: Sequence[PhotoStats], flagged) -> list[list[PhotoStats]]:
    """Consecutive (by number) flagged photos, grouped."""
    picked = [p for p in photos if flagged(p)]
    groups: list[list[PhotoStats]] = []
    for p in picked:
        if groups and p.number == groups[-1][-1].number + 1:
            groups[-1].append(p)
        else:
            groups.append([p])
    return groups


def unregistered_problems(photos: Sequence[PhotoStats]) -> list[Problem]:
    """Photos that did not register, grouped by what the matches say about why.

    - no match with any other photo (or only one or two with the registered ones): they face away
      from the rest, or show something else;
    - matches only among themselves: a separate group that no photo links to the rest;
    - matched with several registered photos yet not placed: moving things, reflections or repeated
      patterns make their matches disagree with the model.
    """
    names = {p.number: p.name for p in photos}
    registered = {p.number for p in photos if p.registered}
    total = len(photos)
    groups: dict[str, list[PhotoStats]] = {"apart": [], "separate": [], "disagree": []}
    for p in photos:
        if p.registered:
            continue
        with_registered = [n for n in p.neighbours if n in registered]
        if len(with_registered) >= FEW_NEIGHBOURS:
            groups["disagree"].append(p)
        elif not with_registered and p.neighbours:
            groups["separate"].append(p)
        else:
            groups["apart"].append(p)
    out = []
    for reason, group in groups.items():
        if not group:
            continue
        numbers = [p.number for p in group]
        f = _forms(len(group))
        named = names_text(numbers, names)
        who = f"{len(group)} of {total} photos did not register ({numbers_text(numbers)}{', ' + named if named else ''})"
        they_match = "it matches" if len(group) == 1 else "they match"
        if reason == "apart":
            why = (f" because {they_match} too few other photos, as if facing away from the rest or showing something "
                   f"else: take photos in between that overlap both, or drop {f['them']}")
        elif reason == "separate":
            why = (" because they match each other but none of the rest, a separate group: take photos that link the "
                   f"two groups, or drop {f['them']}")
        else:
            least = min(sum(n in registered for n in p.neighbours) for p in group)
            why = (f" although {they_match} {'at least ' if len(group) > 1 else ''}{least} registered photos (moving "
                   f"things, reflections or repeated patterns can cause this): retake {f['them']} or drop {f['them']}")
        out.append(Problem("unregistered", tuple(numbers), _capital(f"{who}{why}.")))
    return out


def blurred_problems(photos: Sequence[PhotoStats]) -> list[Problem]:
    names = {p.number: p.name for p in photos}
    out = []
    for group in _runs_of(photos, lambda p: p.relative_sharpness < BLURRED_BELOW):
        numbers = [p.number for p in group]
        f = _forms(len(group))
        span = _percent_span([p.relative_sharpness for p in group])
        out.append(Problem("blurred", tuple(numbers), _capital(
            f"{describe_photos(numbers, names)} {f['is']} blurred (sharpness {span} of the median photo's): "
            f"retake {f['them']} or drop {f['them']}.")))
    return out


def stops_from_median(mean: float, median: float) -> float:
    """log2 of the linear-light ratio of two encoded mean luminances (positive: brighter)."""
    return DISPLAY_GAMMA * math.log2(max(mean, 1e-4) / max(median, 1e-4))


def exposure_problems(photos: Sequence[PhotoStats]) -> list[Problem]:
    """Under- and over-exposed photos (absolute), then photos a stop or more off the median (relative)."""
    names = {p.number: p.name for p in photos}
    median = float(np.median([p.mean_luminance for p in photos])) if photos else 0.0

    def under(p):
        return p.dark_fraction > CLIPPED_FRACTION or p.mean_luminance < UNDER_EXPOSED_MEAN

    def over(p):
        return p.bright_fraction > CLIPPED_FRACTION or p.mean_luminance > OVER_EXPOSED_MEAN

    out = []
    for group in _runs_of(photos, under):
        numbers = [p.number for p in group]
        f = _forms(len(group))
        what = f"{_percent_span([p.dark_fraction for p in group])} of the pixels black, mean brightness " \
               f"{_percent_span([p.mean_luminance for p in group])}"
        out.append(Problem("under_exposed", tuple(numbers), _capital(
            f"{describe_photos(numbers, names)} {f['is']} under-exposed ({what}): retake {f['them']} with more light "
            f"or the exposure locked on the subject, or drop {f['them']}.")))
    for group in _runs_of(photos, over):
        numbers = [p.number for p in group]
        f = _forms(len(group))
        what = f"{_percent_span([p.bright_fraction for p in group])} of the pixels blown white"
        out.append(Problem("over_exposed", tuple(numbers), _capital(
            f"{describe_photos(numbers, names)} {f['is']} over-exposed ({what}): retake {f['them']} with the exposure "
            f"locked on the subject, or drop {f['them']}.")))
    sides: tuple[tuple[ProblemKind, int], ...] = (("darker", -1), ("brighter", 1))
    for kind, sign in sides:
        def off(p, sign=sign):
            return (not under(p) and not over(p)
                    and sign * stops_from_median(p.mean_luminance, median) > EXPOSURE_STEP_STOPS)

        for group in _runs_of(photos, off):
            numbers = [p.number for p in group]
            f = _forms(len(group))
            stops = max(abs(stops_from_median(p.mean_luminance, median)) for p in group)
            out.append(Problem(kind, tuple(numbers), _capital(
                f"{describe_photos(numbers, names)} {f['is']} up to {stops:.1f} stops {kind} than the median photo "
                f"(the exposure changed between shots): lock the exposure (press and hold on the subject) and retake "
                f"{f['them']}, or drop {f['them']}.")))
    return out


def still_runs(centres: np.ndarray, forwards: np.ndarray, scene_depth: float | None,
               min_steps: int = STILL_MIN_STEPS) -> list[tuple[int, int, float]]:
    """Runs of consecutive cameras that hardly moved: (first, last, degrees turned) as row indices.

    centres, forwards: (N, 3) in capture order. A step is still when it is shorter than
    STILL_OF_DEPTH x scene_depth (when known) or STILL_OF_SPACING x the median nearest-camera distance.
    """
    n = len(centres)
    if n < min_steps + 1:
        return []
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    dist = np.linalg.norm(centres[:, None] - centres[None], axis=2)
    np.fill_diagonal(dist, np.inf)
    spacing = float(np.median(dist.min(axis=1)))
    still = steps < STILL_OF_SPACING * spacing
    if scene_depth is not None and scene_depth > 0:
        still |= steps < STILL_OF_DEPTH * scene_depth
    runs = []
    i = 0
    while i < len(still):
        if not still[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(still) and still[j + 1]:
            j += 1
        if j - i + 1 >= min_steps:
            first, last = i, j + 1
            f = forwards[first:last + 1]
            cosines = np.clip(f @ f.T, -1.0, 1.0)
            runs.append((first, last, float(np.degrees(np.arccos(cosines.min())))))
        i = j + 1
    return runs


def hardly_moved_problems(photos: Sequence[PhotoStats], scene_depth: float | None) -> list[Problem]:
    names = {p.number: p.name for p in photos}
    placed = [p for p in photos if p.registered and p.centre is not None]
    if not placed:
        return []
    centres = np.array([p.centre for p in placed], dtype=np.float64)
    forwards = np.array([p.forward for p in placed], dtype=np.float64)
    out = []
    for first, last, turned in still_runs(centres, forwards, scene_depth):
        a, b = placed[first].number, placed[last].number
        named = f"{names[a]} and {names[b]}"
        where = f"photos {a} and {b}" + (f" ({named})" if len(named) <= MAX_NAMES_CHARS else "")
        how = f", turning {turned:.0f} degrees on the spot" if turned > TURNED_DEGREES else ""
        out.append(Problem("hardly_moved", tuple(p.number for p in placed[first:last + 1]), _capital(
            f"the camera hardly moved between {where}{how}: step sideways between shots (about a hand's width for "
            f"a close subject) so that each photo sees the scene from a new place.")))
    return out


def few_neighbours_problems(photos: Sequence[PhotoStats]) -> list[Problem]:
    names = {p.number: p.name for p in photos}
    out = []
    for group in _runs_of(photos, lambda p: p.registered and len(p.neighbours) < FEW_NEIGHBOURS):
        numbers = [p.number for p in group]
        f = _forms(len(group))
        counts = sorted({len(p.neighbours) for p in group})
        k = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
        out.append(Problem("few_neighbours", tuple(numbers), _capital(
            f"{describe_photos(numbers, names)} match{'es' if len(group) == 1 else ''} only {k} other photo"
            f"{'' if k == '1' else 's'}{'' if len(group) == 1 else ' each'}, so {f['their']} camera position rests on "
            f"few links: take more photos around {f['them']} that overlap {f['their']} neighbours.")))
    return out


def few_points_problems(photos: Sequence[PhotoStats], scene_points: int) -> list[Problem]:
    names = {p.number: p.name for p in photos}
    out = []
    for group in _runs_of(photos, lambda p: p.registered and p.points3D is not None
                          and p.points3D < FEW_POINTS_PER_PHOTO):
        numbers = [p.number for p in group]
        f = _forms(len(group))
        out.append(Problem("few_points", tuple(numbers), _capital(
            f"{describe_photos(numbers, names)} see{'s' if len(group) == 1 else ''} fewer than {FEW_POINTS_PER_PHOTO} "
            f"3D points, so {f['their']} camera pose is uncertain: take more photos of that part of the scene, with "
            f"detail in view.")))
    if scene_points < MIN_SCENE_POINTS:
        out.append(Problem("few_scene_points", (), (
            f"Structure-from-motion found only {scene_points} 3D points (under {MIN_SCENE_POINTS}): the scene shows "
            "little texture or the photos overlap little; put detailed things in view (no plain walls or glossy "
            "surfaces) and take more photos with smaller steps between them.")))
    return out


def pose_problems(photos: Sequence[PhotoStats], checked: PoseCheck | None) -> list[Problem]:
    """The poses stage's check of the cameras against the matches (poses.pose_check), as a problem."""
    if checked is None or not checked.sentence:
        return []
    number = {p.name: p.number for p in photos}
    kind: ProblemKind = "inconsistent_poses" if checked.result == "inconsistent" else "doubtful_poses"
    return [Problem(kind, tuple(number[n] for n in checked.doubtful if n in number), checked.sentence)]


def find_problems(photos: Sequence[PhotoStats], scene_points: int, scene_depth: float | None,
                  pose_check: PoseCheck | None = None) -> list[Problem]:
    """Every problem of a capture, most serious first; [] when the capture looks fine."""
    return (
        unregistered_problems(photos)
        + pose_problems(photos, pose_check)
        + blurred_problems(photos)
        + exposure_problems(photos)
        + hardly_moved_problems(photos, scene_depth)
        + few_neighbours_problems(photos)
        + few_points_problems(photos, scene_points)
    )


def sentences(problems: Sequence[Problem]) -> list[str]:
    """The problems' sentences, or the one saying the capture looks fine."""
    return [p.sentence for p in problems] or [FINE]


# --------------------------------------------------------------------------------------------------
# Measuring


@dataclass(frozen=True)
class PhotoMeasure:
    sharpness: float
    mean_luminance: float
    dark_fraction: float
    bright_fraction: float


def measure(rgb: np.ndarray, mask: np.ndarray | None = None) -> PhotoMeasure:
    """Sharpness and exposure of an (H, W, 3) uint8 RGB image, on a copy SHARPNESS_LONG_SIDE px long.
    ``mask`` (any size, nonzero = object): exposure of the object only (a photo cut out on white is not
    over-exposed for its white background)."""
    h, w = rgb.shape[:2]
    scale = SHARPNESS_LONG_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size != (w, h):
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    exposed = grey.reshape(-1)
    if mask is not None:
        inside = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).reshape(-1) > 0
        if inside.any():
            exposed = exposed[inside]
    return PhotoMeasure(
        sharpness=sharpness(rgb),  # no further resize: the copy already has the measuring size
        mean_luminance=float(exposed.mean()) / 255.0,
        dark_fraction=float(np.mean(exposed <= DARK_LEVEL)),
        bright_fraction=float(np.mean(exposed >= BRIGHT_LEVEL)),
    )


def read_rgb(path: Path) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise NerfpipeError(f"{path} is missing: run `nerfpipe ingest` again.") from None
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise NerfpipeError(f"{path} cannot be read: run `nerfpipe ingest` again.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def measuring_folder(sizes: dict[str, Sequence[int]]) -> str:
    """The smallest images folder at least MIN_REDUCTION x SHARPNESS_LONG_SIDE long (else images/)."""
    fits = [(max(size), folder) for folder, size in sizes.items() if max(size) >= MIN_REDUCTION * SHARPNESS_LONG_SIDE]
    return min(fits)[1] if fits else scene_layout.IMAGES


@dataclass
class Geometry:
    """The registered cameras of the sparse model, by image name."""

    centres: dict[str, np.ndarray]
    forwards: dict[str, np.ndarray]
    ups: dict[str, np.ndarray]
    points_seen: dict[str, int]
    points: np.ndarray
    """(P, 3)."""
    scene_depth: float | None
    """Median over cameras of the median depth of the points each sees."""


def camera_geometry(model: colmap.SparseModel) -> Geometry:
    """Centres, viewing and up directions (COLMAP world), points seen and the scene depth of a model."""
    rot = model.w2c_cv[:, :, :3]  # (N, 3, 3) world -> camera
    t = model.w2c_cv[:, :, 3]
    centres = -np.einsum("nji,nj->ni", rot, t)  # -R^T t
    forwards = rot[:, 2, :]  # camera +z in world
    ups = -rot[:, 1, :]  # camera -y (y points down)
    n = len(model.names)
    seen = np.zeros(n, dtype=np.int64)
    depth = None
    if len(model.points):
        counts = np.array([len(r) for r in model.point_images])
        obs_point = np.repeat(np.arange(len(model.points)), counts)
        obs_cam = np.concatenate(model.point_images)
        seen = np.bincount(obs_cam, minlength=n)
        z = np.einsum("mi,mi->m", model.points[obs_point], rot[obs_cam, 2]) + t[obs_cam, 2]
        medians = [float(np.median(z[obs_cam == i])) for i in range(n) if seen[i]]
        depth = float(np.median(medians)) if medians else None
    return Geometry(
        centres=dict(zip(model.names, centres)),
        forwards=dict(zip(model.names, forwards)),
        ups=dict(zip(model.names, ups)),
        points_seen=dict(zip(model.names, (int(s) for s in seen))),
        points=model.points,
        scene_depth=depth,
    )


def neighbours_of(names: Sequence[str], inliers: dict[tuple[str, str], int],
                  min_inliers: int = NEIGHBOUR_MIN_INLIERS) -> dict[str, list[int]]:
    """{name: sorted 1-based numbers of the photos it shares >= min_inliers verified matches with}."""
    number = {name: i + 1 for i, name in enumerate(names)}
    out: dict[str, set[int]] = {name: set() for name in names}
    for (a, b), n in inliers.items():
        if n >= min_inliers and a in number and b in number:
            out[a].add(number[b])
            out[b].add(number[a])
    return {name: sorted(v) for name, v in out.items()}


# --------------------------------------------------------------------------------------------------
# The figure (OpenCV only)


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


# --------------------------------------------------------------------------------------------------
# The stage


def _inputs(scene: Path) -> tuple[IngestResult, PosesResult]:
    """(ingest result, poses result), or one sentence saying which stage to run first."""
    scene_layout.require_folder(scene, "The scene folder", "pass the folder you ran `nerfpipe ingest` into")
    ingest = load_result(scene, "ingest")
    if ingest is None:
        raise NerfpipeError(f"{scene} has no ingested photos yet: run `nerfpipe ingest PHOTOS --scene {scene}` first.")
    posed = load_result(scene, "poses")
    if posed is None:
        raise NerfpipeError(f"{scene} has no camera poses yet: run `nerfpipe poses {scene}` first.")
    return ingest, posed


def read_colmap(scene: Path) -> tuple[colmap.SparseModel, dict[tuple[str, str], int]]:
    """(the sparse model, the verified inliers of each photo pair) the poses stage left in colmap/."""
    colmap_dir = scene / scene_layout.COLMAP
    database, model_dir = colmap_dir / "database.db", colmap_dir / "sparse" / "0"
    if not database.is_file() or not model_dir.is_dir():
        raise NerfpipeError(f"{database if not database.is_file() else model_dir} is missing: run "
                            f"`nerfpipe poses --force {scene}`.")
    try:
        model, inliers = colmap.read_sparse_model(model_dir), colmap.pair_inliers(database)
    except (RuntimeError, ValueError, OSError) as e:
        what = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NerfpipeError(f"{colmap_dir} is damaged (pycolmap cannot read it: {what}): run "
                            f"`nerfpipe poses {scene} --force` to redo it.") from None
    return model, inliers


def build(scene: Path, ingest: IngestResult, posed: PosesResult, workers: int = 1,
          reporter: Reporter | None = None) -> tuple[list[PhotoStats], list[Problem], Geometry]:
    """Measure every photo of an ingested, posed scene and find the problems (writes nothing)."""
    model, inliers = read_colmap(scene)
    return assess(scene, ingest, model, inliers, set(posed.images), workers, reporter, pose_check=posed.pose_check)


def no_geometry() -> Geometry:
    """The geometry of a run that placed no camera."""
    return Geometry(centres={}, forwards={}, ups={}, points_seen={}, points=np.zeros((0, 3)), scene_depth=None)


def assess(scene: Path, ingest: IngestResult, model: colmap.SparseModel | None, inliers: dict[tuple[str, str], int],
           registered_names: set[str], workers: int = 1,
           reporter: Reporter | None = None, pose_check: PoseCheck | None = None,
           ) -> tuple[list[PhotoStats], list[Problem], Geometry]:
    """Measure the ingested photos and find the problems, given the sparse model (None: no camera was
    placed) and the verified inlier counts of the photo pairs, both in the photos' names."""
    reporter = reporter or Reporter()
    names: list[str] = list(ingest.images)
    stems = ingest.stem_of
    folder = measuring_folder(ingest.sizes)
    files = [
        scene / folder / (name if folder == scene_layout.IMAGES else f"{stems[name]}.png") for name in names
    ]
    with reporter.task("measuring photos", total=len(files), unit="images") as task:
        masks = ingest.mask_folder if ingest.background_kind in ("white", "cut_out") else None

        mask_files = [scene / masks / f"{stems[name]}.png" if masks else None for name in names]

        def one(job: tuple[Path, Path | None]) -> PhotoMeasure:
            path, mask_file = job  # with a mask: exposure of the object, the white around it is not over-exposure
            mask = cv2.imread(str(mask_file), cv2.IMREAD_GRAYSCALE) if mask_file is not None else None
            m = measure(read_rgb(path), mask)
            task.advance(1)
            return m

        with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
            measures = list(ex.map(one, zip(files, mask_files)))
    geometry = camera_geometry(model) if model is not None else no_geometry()
    neighbours = neighbours_of(names, inliers)
    registered = set(registered_names) & set(geometry.centres)
    median_sharpness = float(np.median([m.sharpness for m in measures])) or 1.0
    frames = ingest.frames

    photos = []
    for i, (name, m) in enumerate(zip(names, measures)):
        reg = name in registered
        photos.append(PhotoStats(
            number=i + 1,
            name=name,
            sharpness=round(m.sharpness, 2),
            relative_sharpness=round(m.sharpness / median_sharpness, 4),
            mean_luminance=round(m.mean_luminance, 4),
            dark_fraction=round(m.dark_fraction, 4),
            bright_fraction=round(m.bright_fraction, 4),
            registered=reg,
            neighbours=neighbours.get(name, []),
            points3D=geometry.points_seen[name] if reg else None,
            centre=[round(float(v), 6) for v in geometry.centres[name]] if reg else None,
            forward=[round(float(v), 6) for v in geometry.forwards[name]] if reg else None,
            video=frames.get(name),
        ))
    problems = find_problems(photos, int(len(geometry.points)), geometry.scene_depth, pose_check)
    return photos, problems, geometry


def figure(photos: Sequence[PhotoStats], problems: Sequence[Problem], geometry: Geometry) -> np.ndarray:
    """report.png's image (BGR)."""
    placed = [p for p in photos if p.registered]
    flagged = {n for pr in problems if pr.kind != "hardly_moved" for n in pr.photos}
    missing = [p.number for p in photos if not p.registered]
    title = (f"Top-down view: {len(placed)} of {len(photos)} photos registered (numbered dots, lines = viewing "
             f"directions; red = a problem), {len(geometry.points)} 3D points (grey)")
    footer = ("Not registered: " + join_and(_range_items(photo_ranges(missing), str)) + "."
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


def _report_body(scene: Path, ingest: IngestResult, posed: PosesResult, params: ReportParams, reporter: Reporter):
    def body(out: Path) -> ReportResult:
        photos, problems, geometry = build(scene, ingest, posed, params.workers, reporter)
        report = report_data(photos, problems, geometry, ingest, posed.mean_reprojection_error_px)
        (out / REPORT_JSON).write_text(json.dumps(report, indent=1))
        (out / REPORT_PNG).write_bytes(figure_png(photos, problems, geometry))
        return ReportResult(photos=len(photos), registered=report["summary"]["registered"], problems=len(problems),
                            sentences=report["sentences"], files=list(OUTPUTS))

    return body


def figure_png(photos: Sequence[PhotoStats], problems: Sequence[Problem], geometry: Geometry) -> bytes:
    return encode_png(np.ascontiguousarray(figure(photos, problems, geometry)[..., ::-1]))  # drawn in OpenCV's BGR


def report_data(photos: Sequence[PhotoStats], problems: Sequence[Problem], geometry: Geometry, ingest: IngestResult,
                reprojection_error_px: float | None, figure_name: str = REPORT_PNG) -> dict:
    """report.json's content."""
    said = sentences(problems)
    return {
        "photos": [asdict(p) for p in photos],
        "problems": [{"kind": p.kind, "photos": list(p.photos),
                      "names": [photos[n - 1].name for n in p.photos], "sentence": p.sentence} for p in problems],
        "sentences": said,
        "summary": {
            "photos": len(photos),
            "registered": sum(p.registered for p in photos),
            "points3D": int(len(geometry.points)),
            "scene_depth": None if geometry.scene_depth is None else round(geometry.scene_depth, 6),
            "mean_reprojection_error_px": reprojection_error_px,
            "median_sharpness": round(float(np.median([p.sharpness for p in photos])), 2),
            "measured_on": measuring_folder(ingest.sizes),
        },
        "thresholds": {
            "sharpness_long_side_px": SHARPNESS_LONG_SIDE, "blurred_below": BLURRED_BELOW,
            "dark_level": DARK_LEVEL, "bright_level": BRIGHT_LEVEL, "clipped_fraction": CLIPPED_FRACTION,
            "under_exposed_mean": UNDER_EXPOSED_MEAN, "over_exposed_mean": OVER_EXPOSED_MEAN,
            "exposure_step_stops": EXPOSURE_STEP_STOPS, "neighbour_min_inliers": NEIGHBOUR_MIN_INLIERS,
            "few_neighbours": FEW_NEIGHBOURS, "still_of_depth": STILL_OF_DEPTH,
            "still_of_spacing": STILL_OF_SPACING, "still_min_steps": STILL_MIN_STEPS,
            "few_points_per_photo": FEW_POINTS_PER_PHOTO, "min_scene_points": MIN_SCENE_POINTS,
        },
        "figure": figure_name,
    }


def write_failure_report(scene: Path, ingest: IngestResult, model: colmap.SparseModel | None,
                         inliers: dict[tuple[str, str], int], workers: int = 1,
                         reporter: Reporter | None = None) -> list[str]:
    """The report of a poses run that stopped (``report.failed.json`` and ``.png`` in the scene; each
    file replaced whole, so a reader never sees half of one). Returns its sentences."""
    registered = set(model.names) if model is not None else set()
    photos, problems, geometry = assess(scene, ingest, model, inliers, registered, workers, reporter)
    data = report_data(photos, problems, geometry, ingest, None, FAILED_PNG)
    data["poses_failed"] = True
    for name, payload in ((FAILED_JSON, json.dumps(data, indent=1).encode()), (FAILED_PNG, figure_png(photos, problems, geometry))):
        write_bytes_atomic(scene / name, payload)
    return data["sentences"]


def remove_failure_report(scene: Path) -> None:
    """A successful poses run makes the failed run's report stale."""
    for name in FAILED_OUTPUTS:
        (Path(scene) / name).unlink(missing_ok=True)


def stage_spec(scene: Path) -> StageSpec:
    """The report depends on the finished ingest and poses stages: their fingerprints (upstream) and
    their manifests' content (inputs), since a forced poses run keeps its fingerprint but may place
    the cameras differently."""
    return StageSpec(
        name=STAGE,
        version=VERSION,
        inputs=[manifest_path(scene, "ingest"), manifest_path(scene, "poses")],
        upstream=["ingest", "poses"],
        outputs=OUTPUTS,
        staged=True,
    )


def run(params: ReportParams, reporter: Reporter | None = None) -> StageResult:
    """Write report.json and report.png for the scene ``params.scene``; cached (see nerfpipe.cache)."""
    reporter = reporter or Reporter()
    scene = Path(params.scene)
    ingest, posed = _inputs(scene)
    return run_stage(scene, stage_spec(scene), _report_body(scene, ingest, posed, params, reporter), force=params.force,
                     reporter=reporter, result_type=ReportResult)


def load(scene: Path) -> dict:
    """The scene's report.json, as written by :func:`run`."""
    path = Path(scene) / REPORT_JSON
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise NerfpipeError(f"{path} cannot be read: run `nerfpipe report --force {scene}`.") from None
