"""The capture report's rules: per-photo figures in, problems out, each one sentence saying what to do.

Pure functions over :class:`PhotoStats` (hand-made numbers in the tests); :func:`find_problems` runs
them all, most serious first. The thresholds below say what each was measured on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol, Sequence

import numpy as np

from nerfpipe.capture.wording import MAX_NAMES_CHARS, capital, describe_photos, forms, names_text, numbers_text, percent_span

BLURRED_BELOW = 0.4
"""A photo is blurred below this fraction of the median photo's sharpness. Measured on the 20 fern
photos (1008x756): the sharp ones lie between 0.76 and 1.23 of their median (what they show differs);
a Gaussian blur of sigma 1 px (about 4 px on the 4032 px original) brings a photo to 0.32, a 15 px
motion blur to 0.2, sigma 2 px to 0.06. 0.4 flags all of those and none of the sharp ones."""
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
FINE = "No problem found: every photo is sharp, evenly exposed and registered, and the camera moved between shots."


class CheckedPoses(Protocol):
    """What the rules read of the poses stage's check of the cameras against the matches
    (:class:`nerfpipe.stages.results.PoseCheck`)."""

    result: str
    """"consistent", "doubtful_photos" or "inconsistent"."""
    doubtful: Sequence[str]
    """Names of the photos whose poses the matches do not explain."""
    sentence: str | None


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
        f = forms(len(group))
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
        out.append(Problem("unregistered", tuple(numbers), capital(f"{who}{why}.")))
    return out


def blurred_problems(photos: Sequence[PhotoStats]) -> list[Problem]:
    names = {p.number: p.name for p in photos}
    out = []
    for group in _runs_of(photos, lambda p: p.relative_sharpness < BLURRED_BELOW):
        numbers = [p.number for p in group]
        f = forms(len(group))
        span = percent_span([p.relative_sharpness for p in group])
        out.append(Problem("blurred", tuple(numbers), capital(
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
        f = forms(len(group))
        what = f"{percent_span([p.dark_fraction for p in group])} of the pixels black, mean brightness " \
               f"{percent_span([p.mean_luminance for p in group])}"
        out.append(Problem("under_exposed", tuple(numbers), capital(
            f"{describe_photos(numbers, names)} {f['is']} under-exposed ({what}): retake {f['them']} with more light "
            f"or the exposure locked on the subject, or drop {f['them']}.")))
    for group in _runs_of(photos, over):
        numbers = [p.number for p in group]
        f = forms(len(group))
        what = f"{percent_span([p.bright_fraction for p in group])} of the pixels blown white"
        out.append(Problem("over_exposed", tuple(numbers), capital(
            f"{describe_photos(numbers, names)} {f['is']} over-exposed ({what}): retake {f['them']} with the exposure "
            f"locked on the subject, or drop {f['them']}.")))
    sides: tuple[tuple[ProblemKind, int], ...] = (("darker", -1), ("brighter", 1))
    for kind, sign in sides:
        def off(p, sign=sign):
            return (not under(p) and not over(p)
                    and sign * stops_from_median(p.mean_luminance, median) > EXPOSURE_STEP_STOPS)

        for group in _runs_of(photos, off):
            numbers = [p.number for p in group]
            f = forms(len(group))
            stops = max(abs(stops_from_median(p.mean_luminance, median)) for p in group)
            out.append(Problem(kind, tuple(numbers), capital(
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
        out.append(Problem("hardly_moved", tuple(p.number for p in placed[first:last + 1]), capital(
            f"the camera hardly moved between {where}{how}: step sideways between shots (about a hand's width for "
            f"a close subject) so that each photo sees the scene from a new place.")))
    return out


def few_neighbours_problems(photos: Sequence[PhotoStats]) -> list[Problem]:
    names = {p.number: p.name for p in photos}
    out = []
    for group in _runs_of(photos, lambda p: p.registered and len(p.neighbours) < FEW_NEIGHBOURS):
        numbers = [p.number for p in group]
        f = forms(len(group))
        counts = sorted({len(p.neighbours) for p in group})
        k = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
        out.append(Problem("few_neighbours", tuple(numbers), capital(
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
        f = forms(len(group))
        out.append(Problem("few_points", tuple(numbers), capital(
            f"{describe_photos(numbers, names)} see{'s' if len(group) == 1 else ''} fewer than {FEW_POINTS_PER_PHOTO} "
            f"3D points, so {f['their']} camera pose is uncertain: take more photos of that part of the scene, with "
            f"detail in view.")))
    if scene_points < MIN_SCENE_POINTS:
        out.append(Problem("few_scene_points", (), (
            f"Structure-from-motion found only {scene_points} 3D points (under {MIN_SCENE_POINTS}): the scene shows "
            "little texture or the photos overlap little; put detailed things in view (no plain walls or glossy "
            "surfaces) and take more photos with smaller steps between them.")))
    return out


def pose_problems(photos: Sequence[PhotoStats], checked: CheckedPoses | None) -> list[Problem]:
    """The poses stage's check of the cameras against the matches (poses.pose_check), as a problem."""
    if checked is None or not checked.sentence:
        return []
    number = {p.name: p.number for p in photos}
    kind: ProblemKind = "inconsistent_poses" if checked.result == "inconsistent" else "doubtful_poses"
    return [Problem(kind, tuple(number[n] for n in checked.doubtful if n in number), checked.sentence)]


def find_problems(photos: Sequence[PhotoStats], scene_points: int, scene_depth: float | None,
                  pose_check: CheckedPoses | None = None) -> list[Problem]:
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
