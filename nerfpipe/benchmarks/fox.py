"""A phone video sweeping a wide arc, end to end: the fox frames as an mp4, through ``nerfpipe all``.

    python -m nerfpipe.benchmarks.fox [--fox ../shared/data/fox] [--work DIR] [--skip-train] [--skip-reference]

Prints one JSON object. The benchmark encodes the 50 portrait frames of ``fox/images`` (sorted order)
as an H.264 mp4 at FPS frames per second, then runs the real stages with their defaults:

- ``poses``: frames registered (target >= 45 of 50), wall time of the whole stage (target <= 120 s),
  and the cameras against ``transforms.reference.json`` (instant-ngp's COLMAP run): rotation error
  after the best global rotation (target <= 0.2 deg mean), centre error after a similarity. Video
  frame k is matched to the k-th reference image through the frame index ingest records.
- ``all`` with its defaults (scene type decided from the cameras, fast recipe, training size from
  the photos, 8 minutes of training on a CPU): held-out PSNR/SSIM and the render; the arc check
  says whether every frame of the path lies inside the azimuth range the cameras covered.
- the upper bound: the same images and held-out views with the reference poses (a transforms.json
  scene, the same recipe, overrides and time budget).

The fox frames are for tests and benchmarks only (see ../shared/data/README.md): everything written
goes to the work folder, never into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

FPS = 10
"""Frames per second of the benchmark's clip (50 frames: a 5 s clip, every frame distinct)."""
TARGETS = {"registered": 45, "rotation_error_mean_deg": 0.2, "poses_stage_s": 120.0, "train_minutes": 10.0}
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def make_clip(images: list[Path], path: Path, fps: int = FPS) -> None:
    """Encode ``images`` (same size) as an H.264 mp4, one video frame per image."""
    from nerfpipe.photos import read_rgb8
    from nerfpipe.video import VideoWriter

    with VideoWriter(path, fps=fps, quality=9) as writer:
        for image in images:
            writer.write(read_rgb8(image)[0])


def reference_cameras(fox: Path, names: list[str]) -> np.ndarray:
    """(N, 3, 4) OpenGL camera-to-world of the reference frames named ``names`` (in that order)."""
    from nerfpipe.cameras.formats import read_transforms

    ref = read_transforms(fox / "transforms.reference.json")
    by_name = {Path(p).name: i for i, p in enumerate(ref.file_paths)}
    return ref.c2w_gl[[by_name[n] for n in names], :3]


def compare_with_reference(scene: Path, fox: Path, sources: list[str]) -> dict:
    """Our registered cameras against the reference ones of the same frames."""
    from nerfpipe import scene as scene_layout
    from nerfpipe.cameras.conventions import llff_from_gl
    from nerfpipe.cameras.formats import read_poses_bounds
    from nerfpipe.cameras.similarity import compare_cameras
    from nerfpipe.stages.results import require_result

    frames = require_result(scene, "ingest", "The fox benchmark").frames
    registered = require_result(scene, "poses", "The fox benchmark").images
    names = [sources[frames[n]["index"]] for n in registered]
    ours, _ = read_poses_bounds(scene / scene_layout.POSES_BOUNDS)
    ref = llff_from_gl(reference_cameras(fox, names))
    c = compare_cameras(ours[:, :, :4], ref).to_json()
    return {k: c[k] for k in ("cameras", "centre_error_mean", "centre_error_max", "rotation_error_mean_deg",
                              "rotation_error_max_deg", "rotation_error_sim3_mean_deg")}


def held_out(scene: Path, run: str) -> list[str]:
    """Names of the views the run's evaluation scored."""
    from nerfpipe.stages.runs import run_dir
    from nerfpipe.stages.evaluation import EVAL_METRICS

    return [Path(v["name"]).name for v in json.loads((run_dir(scene, run) / EVAL_METRICS).read_text())["views"]]


def arc_check(scene: Path, run: str) -> dict:
    """Does the rendered path stay inside the azimuth range that the training cameras covered, and how far
    is each frame from the nearest camera (a fraction of the cameras' mean distance from the up axis)?"""
    from nerfpipe.cameras.paths import Ring, azimuths, covered_arc
    from nerfpipe.stages.render import camera_path
    from nerfpipe.stages.runs import run_dir

    meta = json.loads((run_dir(scene, run) / "dataset.json").read_text())
    cams = np.asarray(meta["c2w"], dtype=np.float64)
    kind, path = camera_path(meta, None)
    start, span = covered_arc(azimuths(cams))
    # the path's azimuths in the cameras' own frame
    offsets = np.mod(Ring.of(cams).azimuths(path[:, :3, 3]) - start, 2 * np.pi)
    offsets = np.where(offsets > np.pi + span / 2, offsets - 2 * np.pi, offsets)  # just before start: negative
    gap = np.linalg.norm(path[:, None, :3, 3] - cams[None, :, :3, 3], axis=-1).min(1) / Ring.of(cams).radius
    return {"nearest_camera_median": round(float(np.median(gap)), 3), "nearest_camera_max": round(float(gap.max()), 3),
            "path": kind, "cameras_arc_deg": round(float(np.degrees(span)), 1),
            "path_from_deg": round(float(np.degrees(offsets.min())), 1),
            "path_to_deg": round(float(np.degrees(offsets.max())), 1),
            "inside": bool(offsets.min() >= -np.radians(1.0) and offsets.max() <= span + np.radians(1.0))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fox", type=Path, default=Path(os.environ.get("NERFPIPE_FOX", DATA / "fox")))
    ap.add_argument("--work", type=Path, default=None, help="folder for the clip and the scenes (default: temporary)")
    ap.add_argument("--skip-train", action="store_true", help="only the clip and the poses stage")
    ap.add_argument("--skip-reference", action="store_true", help="no training with the reference poses")
    args = ap.parse_args()

    from nerfpipe.progress import Reporter
    from nerfpipe.stages import ingest, pipeline, poses

    work = args.work or Path(tempfile.mkdtemp(prefix="nerfpipe-fox-"))
    work.mkdir(parents=True, exist_ok=True)
    out: dict = {"targets": TARGETS, "cores": os.cpu_count()}
    try:
        sources = sorted(p.name for p in (args.fox / "images").glob("*.jpg"))
        clip = work / "fox.mp4"
        t0 = time.perf_counter()
        make_clip([args.fox / "images" / n for n in sources], clip)
        out["clip"] = {"frames": len(sources), "fps": FPS, "bytes": clip.stat().st_size,
                       "encode_s": round(time.perf_counter() - t0, 2)}
        scene = work / "fox"
        t0 = time.perf_counter()
        res = ingest.run(ingest.IngestParams(photos=clip, scene=scene), Reporter())
        out["ingest"] = {"s": round(time.perf_counter() - t0, 2), "frames": len(res.value.images)}
        t0 = time.perf_counter()
        res = poses.run(poses.PosesParams(scene=scene), Reporter())
        r = res.result
        out["poses"] = {"stage_s": round(time.perf_counter() - t0, 2) if res.ran else None, "ran": res.ran,
                        "steps_s": r["seconds"], "steps_total_s": round(sum(r["seconds"].values()), 2),
                        "registered": r["registered"], "frames": out["ingest"]["frames"],
                        "matcher": r.get("matcher"), "points3D": r["points3D"],
                        "mean_reprojection_error_px": r["mean_reprojection_error_px"],
                        **compare_with_reference(scene, args.fox, sources)}
        if not args.skip_train:
            t0 = time.perf_counter()
            lines = pipeline.run(pipeline.AllParams(source=clip, scene=scene), Reporter())
            from nerfpipe.cache import load_manifest

            run = next(m for m in sorted((scene / ".nerfpipe").glob("train-*.json"))).stem.removeprefix("train-")
            train = load_manifest(scene, f"train-{run}")["result"]
            ev = load_manifest(scene, f"eval-{run}")["result"]
            out["all"] = {"wall_s": round(time.perf_counter() - t0, 1),
                          "stages": {line.stage: {"ran": line.ran, "s": round(line.seconds, 1), "result": line.figure}
                                     for line in lines},
                          "train": {k: train[k] for k in ("steps", "stopped", "train_seconds", "s_per_it", "images")},
                          "psnr": ev["mean"]["psnr"], "ssim": ev["mean"]["ssim"],
                          "held_out": held_out(scene, run),
                          "arc": arc_check(scene, run)}
            if not args.skip_reference:
                out["reference_poses"] = reference_upper_bound(scene, args.fox, sources, run, work)
    finally:
        out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=1))


def reference_upper_bound(scene: Path, fox: Path, sources: list[str], run: str, work: Path) -> dict:
    """Train the same recipe at the same factor on the same registered frames (the decoded video frames
    of ``scene/images``), with the reference cameras (distortion included) as a transforms.json scene."""
    from nerfpipe import scene as scene_layout
    from nerfpipe.cache import load_manifest
    from nerfpipe.cameras.formats import read_transforms, write_transforms
    from nerfpipe.progress import Reporter
    from nerfpipe.stages import train
    from nerfpipe.stages.results import require_result

    frames = require_result(scene, "ingest", "The fox benchmark").frames
    registered = require_result(scene, "poses", "The fox benchmark").images
    ref = read_transforms(fox / "transforms.reference.json")
    by_name = {Path(p).name: i for i, p in enumerate(ref.file_paths)}
    sub = ref.subset([by_name[sources[frames[n]["index"]]] for n in registered])
    folder = work / "fox_reference"
    folder.mkdir(exist_ok=True)
    paths = [os.path.relpath(scene / scene_layout.IMAGES / n, folder) for n in registered]
    write_transforms(folder / scene_layout.TRANSFORMS, paths, sub.c2w_gl, list(sub.cameras), camera_model=sub.camera_model)
    factor = load_manifest(scene, f"train-{run}")["params"]["recipe"]["data"]["factor"]
    t0 = time.perf_counter()
    outcome = train.run(train.TrainParams(scene=folder, overrides=(f"data.factor={factor}",), run=run), Reporter())
    r, ev = outcome.train.result, outcome.eval.result
    return {"wall_s": round(time.perf_counter() - t0, 1),
            "train": {k: r[k] for k in ("steps", "stopped", "train_seconds", "s_per_it", "images")},
            "psnr": ev["mean"]["psnr"], "ssim": ev["mean"]["ssim"],
            "held_out": held_out(folder, run)}


if __name__ == "__main__":
    main()
