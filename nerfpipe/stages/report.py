"""The capture report: what is wrong with the photos, each problem one sentence saying what to do.

``run(ReportParams(scene), reporter)`` reads an ingested, posed scene and writes two files into it:

- ``report.json``: per photo (1-based number in dataset order, name) its sharpness, exposure, whether
  it registered, the photos it matched and the 3D points it sees; the problems, each with its
  photos and its sentence; the figures and thresholds behind them.
- ``report.png``: a top-down view (onto the plane orthogonal to the cameras' mean up vector) of the
  sparse points, each registered camera a numbered dot with a short line in its viewing direction,
  the unregistered photos listed below.

How each figure is measured: :mod:`nerfpipe.capture.measurements`; the rules and their thresholds:
:mod:`nerfpipe.capture.rules`; the figure: :mod:`nerfpipe.capture.figure`.

The stage is cached like the others (upstream: ingest and poses).

When the poses stage stops because too few photos registered, it writes the same report for the
failed run (:func:`write_failure_report`) as ``report.failed.json`` and ``report.failed.png``: the
finished report of an earlier run is never overwritten, and a later successful poses run removes them.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from nerfpipe import colmap
from nerfpipe import scene as scene_layout
from nerfpipe.cache import StageResult, StageSpec, manifest_path, run_stage
from nerfpipe.capture.figure import figure_png
from nerfpipe.capture.measurements import (
    BRIGHT_LEVEL, DARK_LEVEL, NEIGHBOUR_MIN_INLIERS, Geometry, PhotoMeasure, camera_geometry,
    measure, measuring_folder, neighbours_of, no_geometry, read_rgb,
)
from nerfpipe.capture.rules import (
    BLURRED_BELOW, CLIPPED_FRACTION, EXPOSURE_STEP_STOPS, FEW_NEIGHBOURS, FEW_POINTS_PER_PHOTO, MIN_SCENE_POINTS,
    OVER_EXPOSED_MEAN, STILL_MIN_STEPS, STILL_OF_DEPTH, STILL_OF_SPACING, UNDER_EXPOSED_MEAN, PhotoStats, Problem,
    find_problems, sentences,
)
from nerfpipe.errors import NerfpipeError
from nerfpipe.frames import SHARPNESS_LONG_SIDE
from nerfpipe.io import write_bytes_atomic
from nerfpipe.progress import Reporter
from nerfpipe.stages.results import IngestResult, ON_WHITE_KINDS, PoseCheck, PosesResult, ReportResult, load_result

STAGE = "report"
VERSION = "2"
"""2: the pose check's problems; exposure of the object only for photos cut out on white."""
REPORT_JSON = "report.json"
REPORT_PNG = "report.png"
OUTPUTS = [REPORT_JSON, REPORT_PNG]
FAILED_JSON = "report.failed.json"
FAILED_PNG = "report.failed.png"
FAILED_OUTPUTS = [FAILED_JSON, FAILED_PNG]

@dataclass(frozen=True)
class ReportParams:
    scene: Path = Path(".")
    """Scene folder (ingested and posed)."""
    force: bool = False
    """Write the report again even if it is up to date."""
    workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    """Threads decoding photos."""


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
        masks = ingest.mask_folder if ingest.background_kind in ON_WHITE_KINDS else None

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


def _report_body(scene: Path, ingest: IngestResult, posed: PosesResult, params: ReportParams, reporter: Reporter):
    def body(out: Path) -> ReportResult:
        photos, problems, geometry = build(scene, ingest, posed, params.workers, reporter)
        report = report_data(photos, problems, geometry, ingest, posed.mean_reprojection_error_px)
        (out / REPORT_JSON).write_text(json.dumps(report, indent=1))
        (out / REPORT_PNG).write_bytes(figure_png(photos, problems, geometry))
        return ReportResult(photos=len(photos), registered=report["summary"]["registered"], problems=len(problems),
                            sentences=report["sentences"], files=list(OUTPUTS))

    return body


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
