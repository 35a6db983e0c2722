"""Can the result be trusted? Object captures, the pose check and the verdict, on real data (issue 12).

    python -m nerfpipe.benchmarks.trust [--data ../shared/data] [--work DIR] [--minutes 4] [--cases a,b]

Prints one JSON object with a line per case. Every case runs the real stages (ingest, poses with its
pose check, report, train with the fast recipe for ``--minutes``, eval with its verdict):

- ``head_on_white``: the 66 museum photos cut out on white (``head/photos_on_white``): must be
  recognised as cut out (masks for SfM, white background, the box of the sparse points);
- ``head_photos``: the same photos with their background (a turntable cloth, the room);
- ``head_masked``: those photos again with the capture's own masks (``head/masks``, ``--masks``): SfM on
  the object only, training on the photos cut out on white by those masks;
- ``fern``: the 20 original fern photos (nerfpipe's own poses), factor 8;
- ``fox``: the 50 frames of the fox video as photos, factor 4;
- ``fern_wrong``: the fern scene with 5 of its 20 cameras (0, 4, 8, 12, 16) turned 30 degrees on
  purpose: the pose check on its turned COLMAP model, the training on its turned poses_bounds.npy
  (a published-LLFF copy of the scene, since a nerfpipe scene refuses edited outputs).

For each: photos registered, the pose check's result (fraction of verified matches the cameras leave
unexplained, the photos it names), the poses against the reference (head: its photogrammetry; fern:
the LLFF authors'; fox: instant-ngp's), cameras more than 5 degrees off, the training views' and the
held-out views' PSNR, the gap and the verdict. The data are for tests and benchmarks only (see
../shared/data/README.md): everything is written to the work folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CASES = ("head_on_white", "head_photos", "fern", "fox", "fern_wrong", "head_masked")
WRONG_ROWS = (0, 4, 8, 12, 16)
WRONG_DEGREES = 30.0
POSE_CHECK_FIGURES = ("result", "unexplained", "unexplained_in_fitted_pairs", "wrong_pairs", "pairs", "median_photo",
                      "doubtful")
OFF_DEGREES = 5.0
"""A camera more than this far from the reference's orientation (after a robust alignment) is 'off'."""


def robust_errors(ours_llff: np.ndarray, ref_llff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-camera rotation error (degrees) and centre error (fraction of the reference's spread) after a
    similarity fitted to the cameras that agree (refitted without those 3x the median error away)."""
    from nerfpipe.cameras.similarity import rotation_angle_deg, umeyama

    centres, ref_centres = ours_llff[:, :, 3], ref_llff[:, :, 3]
    spread = float(np.sqrt(((ref_centres - ref_centres.mean(0)) ** 2).sum(1).mean()))
    keep = np.arange(len(centres))
    for _ in range(5):
        sim = umeyama(centres[keep], ref_centres[keep])
        err = np.linalg.norm(sim.apply(centres) - ref_centres, axis=1)
        keep = np.where(err <= 3 * np.median(err) + 1e-12)[0]
    rot = rotation_angle_deg(sim.rotation @ ours_llff[:, :, :3], ref_llff[:, :, :3])
    return rot, err / spread


def turn_llff(poses_llff: np.ndarray, rows, degrees: float) -> np.ndarray:
    """LLFF poses (N, 3, 5) with the cameras of ``rows`` turned ``degrees`` about their own up axis."""
    out = poses_llff.copy()
    a = np.radians(degrees)
    turn = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])  # about LLFF 'down'
    for i in rows:
        out[i, :, :3] = out[i, :, :3] @ turn.T
    return out


def turn_cameras(rec, names: set[str], degrees: float) -> None:
    """Turn the cameras of ``names`` in the pycolmap Reconstruction ``rec`` by ``degrees`` about their own
    vertical (COLMAP y, down) axis, centres kept: wrong on purpose."""
    import pycolmap

    a = np.radians(degrees)
    turn = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    for i in rec.reg_image_ids():
        if rec.images[i].name in names:
            frame = rec.frames[rec.images[i].frame_id]
            rot = np.asarray(frame.rig_from_world.rotation.matrix())
            centre = -rot.T @ np.asarray(frame.rig_from_world.translation)
            frame.rig_from_world = pycolmap.Rigid3d(pycolmap.Rotation3d(turn @ rot), -(turn @ rot) @ centre)


def _stages(photos: Path, scene: Path, factor: int, minutes: float, masks: Path | None = None) -> dict:
    from nerfpipe.progress import Reporter
    from nerfpipe.stages import ingest, poses, report, train

    reporter = Reporter()
    t0 = time.perf_counter()
    ing = ingest.run(ingest.IngestParams(photos=photos, scene=scene, factors=tuple(sorted({4, 8, factor})), masks=masks), reporter).result
    t1 = time.perf_counter()
    posed = poses.run(poses.PosesParams(scene=scene), reporter).result
    t2 = time.perf_counter()
    rep = report.run(report.ReportParams(scene=scene), reporter).result
    outcome = train.run(train.TrainParams(scene=scene, recipe="fast", run="bench",
                                          overrides=(f"data.factor={factor}", f"training.minutes={minutes}")), reporter)
    t3 = time.perf_counter()
    return {"scene": scene, "ingest": ing, "poses": posed, "report": rep, "outcome": outcome,
            "seconds": {"ingest": round(t1 - t0, 1), "poses": round(t2 - t1, 1), "train_eval": round(t3 - t2, 1)}}


def _pose_check(scene: Path, names: list[str]):
    """The poses stage's check of the scene's model, with today's thresholds (a cached SfM keeps the check it
    was made with)."""
    import pycolmap

    from nerfpipe import colmap
    from nerfpipe.stages import poses

    rec = pycolmap.Reconstruction(scene / "colmap" / "sparse" / "0")
    return poses.pose_check(colmap.unexplained_matches(scene / "colmap" / "database.db", rec), names)


def _metrics(scene: Path) -> dict:
    """The eval's metrics.json of the benchmark's run (its per-view figures are not in the manifest)."""
    return json.loads((scene / "runs" / "bench" / "metrics.json").read_text())


def _figures(done: dict, ours_llff: np.ndarray | None, ref_llff: np.ndarray | None) -> dict:
    posed, outcome = done["poses"], done["outcome"]
    check = _pose_check(done["scene"], posed["images"])
    ev = _metrics(done["scene"])
    verdict = ev.get("verdict") or {}
    out = {
        "background": (done["ingest"].get("background") or {}).get("kind"),
        "registered": posed["registered"], "photos": posed["photos"], "matcher": posed["matcher"],
        "masks_for_sfm": posed.get("masks") is not None,
        "pose_check": {k: getattr(check, k) for k in POSE_CHECK_FIGURES},
        "scene_type": outcome.train.result.get("scene_type"),
        "scene_box": outcome.train.result.get("scene_box", {}).get("kind"),
        "white_background": outcome.train.result.get("scene_box", {}).get("white_background"),
        "steps": outcome.train.value.steps,
        "train_psnr": verdict.get("train_psnr"), "test_psnr": verdict.get("test_psnr"),
        "ssim": ev.get("mean", {}).get("ssim"), "lpips": ev.get("mean", {}).get("lpips"),
        "gap_db": verdict.get("gap_db"), "verdict": verdict.get("result"), "worst_views": verdict.get("worst_views"),
        "views": {v["name"]: v["psnr"] for v in ev.get("views", [])},
        "seconds": done["seconds"],
    }
    if ours_llff is not None and ref_llff is not None:
        rot, centre = robust_errors(ours_llff, ref_llff)
        out["against_reference"] = {
            "rotation_error_median_deg": round(float(np.median(rot)), 3), "rotation_error_max_deg": round(float(rot.max()), 3),
            "centre_error_median": round(float(np.median(centre)), 4),
            "cameras_off": int((rot > OFF_DEGREES).sum()), "off_degrees": OFF_DEGREES,
        }
    return out


def _ours(scene: Path) -> tuple[list[str], np.ndarray]:
    from nerfpipe.cameras.formats import read_poses_bounds
    from nerfpipe.stages.results import require_result

    names = require_result(scene, "poses", "The trust benchmark").images
    return names, read_poses_bounds(scene / "poses_bounds.npy")[0]


def _reference_llff(path: Path, names: list[str], all_names: list[str]) -> np.ndarray:
    from nerfpipe.cameras.formats import read_poses_bounds

    ref = read_poses_bounds(path)[0]
    row = {Path(n).stem: i for i, n in enumerate(all_names)}
    return ref[[row[Path(n).stem] for n in names]]


def head(data: Path, work: Path, minutes: float, case: str) -> dict:
    folder = data / "head" / ("photos_on_white" if case == "head_on_white" else "photos")
    masks = data / "head" / "masks" if case == "head_masked" else None
    done = _stages(folder, work / case, 4, minutes, masks)
    names, ours = _ours(work / case)
    all_names = sorted(p.name for p in folder.iterdir())  # the reference's rows: the photos in sorted order
    return _figures(done, ours, _reference_llff(data / "head" / "poses_bounds.reference.npy", names, all_names))


def fern(data: Path, work: Path, minutes: float) -> dict:
    folder = data / "fern" / "images"
    done = _stages(folder, work / "fern", 8, minutes)
    names, ours = _ours(work / "fern")
    all_names = sorted(p.name for p in folder.iterdir())
    return _figures(done, ours, _reference_llff(data / "fern" / "poses_bounds.reference.npy", names, all_names))


def fox(data: Path, work: Path, minutes: float) -> dict:
    from nerfpipe.benchmarks.fox import reference_cameras
    from nerfpipe.cameras.conventions import llff_from_gl

    done = _stages(data / "fox" / "images", work / "fox", 4, minutes)
    names, ours = _ours(work / "fox")
    ref = llff_from_gl(reference_cameras(data / "fox", names))
    return _figures(done, ours[:, :, :4], ref)


def fern_wrong(data: Path, work: Path, minutes: float) -> dict:
    """fern's scene (the ``fern`` case first) with WRONG_ROWS turned WRONG_DEGREES."""
    import pycolmap

    from nerfpipe import colmap
    from nerfpipe.cameras.formats import read_poses_bounds, write_poses_bounds
    from nerfpipe.progress import Reporter
    from nerfpipe.stages import poses, train

    scene = work / "fern"
    names, ours = _ours(scene)
    wrong = {names[i] for i in WRONG_ROWS}
    rec = pycolmap.Reconstruction(scene / "colmap" / "sparse" / "0")
    turn_cameras(rec, wrong, WRONG_DEGREES)
    check = poses.pose_check(colmap.unexplained_matches(scene / "colmap" / "database.db", rec), names)

    copy = work / "fern_wrong"  # rebuilt only when fern's poses changed (else its run is up to date)
    poses_llff, bounds = read_poses_bounds(scene / "poses_bounds.npy")
    turned = turn_llff(poses_llff, WRONG_ROWS, WRONG_DEGREES)
    if not (copy / "poses_bounds.npy").exists() or not np.allclose(read_poses_bounds(copy / "poses_bounds.npy")[0], turned):
        if copy.exists():
            shutil.rmtree(copy)
        (copy / "images_8").mkdir(parents=True)
        for n in names:
            shutil.copy(scene / "images_8" / f"{Path(n).stem}.png", copy / "images_8" / f"{Path(n).stem}.png")
        write_poses_bounds(copy / "poses_bounds.npy", turned, bounds)
    t0 = time.perf_counter()
    outcome = train.run(train.TrainParams(scene=copy, recipe="fast", run="bench",
                                          overrides=("data.factor=8", f"training.minutes={minutes}")), Reporter())
    ev = _metrics(copy)
    verdict = ev["verdict"]
    return {
        "turned": sorted(wrong), "degrees": WRONG_DEGREES,
        "pose_check": {k: getattr(check, k) for k in POSE_CHECK_FIGURES},
        "pose_check_names_exactly_the_turned": set(check.doubtful) == wrong,
        "steps": outcome.train.value.steps, "train_psnr": verdict["train_psnr"], "test_psnr": verdict["test_psnr"],
        "gap_db": verdict["gap_db"], "verdict": verdict["result"], "worst_views": verdict["worst_views"],
        "views": {v["name"]: v["psnr"] for v in ev["views"]},
        "seconds": {"train_eval": round(time.perf_counter() - t0, 1)},
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--work", type=Path, default=None, help="Folder for the scenes (kept; default: a temporary one).")
    ap.add_argument("--minutes", type=float, default=4.0, help="Training minutes per case (fast recipe).")
    ap.add_argument("--cases", default=",".join(CASES), help=f"Comma-separated subset of {', '.join(CASES)}.")
    args = ap.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case {unknown[0]!r}: choose from {', '.join(CASES)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="nerfpipe-trust-"))
    work.mkdir(parents=True, exist_ok=True)
    runners = {
        "head_on_white": lambda: head(args.data, work, args.minutes, "head_on_white"),
        "head_photos": lambda: head(args.data, work, args.minutes, "head_photos"),
        "head_masked": lambda: head(args.data, work, args.minutes, "head_masked"),
        "fern": lambda: fern(args.data, work, args.minutes),
        "fox": lambda: fox(args.data, work, args.minutes),
        "fern_wrong": lambda: fern_wrong(args.data, work, args.minutes),
    }
    out = {"minutes": args.minutes, "work": str(work), "cases": {}}
    for case in cases:
        t0 = time.perf_counter()
        out["cases"][case] = {**runners[case](), "wall_s": round(time.perf_counter() - t0, 1)}
        print(json.dumps({case: out["cases"][case]}), flush=True)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
