"""Quality per minute of the fast recipe: held-out PSNR of fern (factor 8) after 2, 5 and 10 minutes
of training, of lego (half resolution, recipe fast_blender) after 15 minutes, render time, memory.

    python -m nerfpipe.benchmarks.fast [--fern DIR] [--lego DIR] [--only fern|lego]
        [--fern-minutes 2,5,10] [--fern-iters 5400] [--fern-factor 8] [--lego-minutes 15] [--lego-iters 6000]
        [--set key=value ...] [--work DIR]

Prints one JSON object. Everything goes through the real stages: fern is ingested at factor 8
(496x368; ``--fern-factor 4``: 1008x752) with the LLFF authors' poses (published layout), lego is read in place through a folder
of links (its runs are written in the work folder, never into the shared data). Each scene trains
in one run of the real trainer with the schedule of ``--*-iters`` steps, in sessions that stop at
the cumulative minutes given (the trainer's time budget; the session resumes from its checkpoint),
and after each session the real evaluation (``nerfpipe eval``: held-out views 0, 8, 16 of fern, the
25 test views of lego) gives PSNR, SSIM and LPIPS. ``render_s`` times one held-out view with the real
chunking, cold (the dense density volume is built first) and warm. Each scene runs in its own
process so that ``peak_rss_gb`` is its own; ``peak_gpu_gb`` when on CUDA.

Machines of one kind differ in speed from one session to the next (2x seen): ``machine.reference_workload_s``
times a fixed workload shaped like a training step (:func:`~nerfpipe.benchmarks.contention.reference_workload_s`),
so that figures in minutes from two machines can be compared. The machine is shared: ``other_processes_cpu_s`` is the CPU time that other processes used while
a scene ran (from /proc/stat), per session and in all. With two cores and two torch threads, a second busy process slows
each step several times over, so figures taken while it is well above 0 are not this model's.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

from nerfpipe.benchmarks.contention import machine_busy_s, own_cpu_s, reference_workload_s

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
ANCHORS = {
    "fern_plain_dense_grid_psnr": {"2.5": 19.2, "5": 19.8, "7.5": 20.3, "10": 20.5,
                                   "what": "16x128^3 grid_sample grid, small MLP, 48 samples, 2048 rays, Adam 1e-2 (issue)"},
    "fern_paper_nerf_psnr_day": 25.17,
    "fern_paper_recipe_cpu_psnr_5min": 12.8,
    "lego_paper_nerf_psnr": 32.54,
}



def prepare_fern(fern: Path, work: Path, factor: int = 8) -> Path:
    from nerfpipe.stages import ingest

    scene = work / f"fern_f{factor}"
    ingest.run(ingest.IngestParams(photos=fern / "images", scene=scene, factors=(factor,)))
    shutil.copy(fern / "poses_bounds.reference.npy", scene / "poses_bounds.npy")
    return scene


def prepare_lego(lego: Path, work: Path) -> Path:
    """A folder that reads as the lego scene (links to its images, copies of its transforms)."""
    scene = work / "lego"
    scene.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        if (lego / split).is_dir() and not (scene / split).exists():
            (scene / split).symlink_to((lego / split).resolve(), target_is_directory=True)
        if (lego / f"transforms_{split}.json").exists():
            shutil.copyfile(lego / f"transforms_{split}.json", scene / f"transforms_{split}.json")
    return scene


def _render_seconds(scene: Path, run: str) -> dict:
    import torch

    from nerfpipe.nerf.chunking import chunk_size, model_device, render_image
    from nerfpipe.stages.runs import load_run
    from nerfpipe.stages.sources import detect_source, load_scene

    model, recipe, meta = load_run(scene, run)
    data = load_scene(scene, recipe, detect_source(scene, recipe))
    rays = data.image_rays(data.i_test[0])
    chunk = chunk_size(model, model_device(model))
    times = []
    with torch.no_grad():
        for _ in range(2):
            t0 = time.perf_counter()
            render_image(model, rays, chunk)
            times.append(time.perf_counter() - t0)
    return {"size": [data.width, data.height], "chunk": chunk, "cold": round(times[0], 3), "warm": round(times[1], 3)}


def run_scene(kind: str, scene: str, recipe: str, minutes: list[float], iters: int, extra: tuple[str, ...], queue) -> None:
    """Train ``recipe`` (with the ``extra`` overrides) on ``scene`` in sessions ending at the cumulative
    ``minutes``; evaluate after each."""
    import torch

    from nerfpipe.stages import train as stage

    busy0, own0 = machine_busy_s(), own_cpu_s()
    scene_path = Path(scene)
    points, done, used = [], 0.0, set()
    for i, total in enumerate(minutes):
        session = round(total - done, 4)
        while session in used:  # the same recipe twice would be "up to date": nudge by 0.06 s
            session = round(session + 1e-3, 4)
        used.add(session)
        overrides = (f"iters={iters}", f"minutes={session}", *extra)
        params = stage.TrainParams(scene=scene_path, recipe=recipe, overrides=overrides, run="bench", fresh=(i == 0))
        busy, own = machine_busy_s(), own_cpu_s()
        out = stage.run(params)
        others = (machine_busy_s() - busy) - (own_cpu_s() - own)
        done = total
        r, e = out.train.result, out.eval.result
        points.append({
            "minutes": total,
            "steps": r["steps"],
            "stopped": r["stopped"],
            "session_train_s": r["train_seconds"],
            "s_per_it": r["s_per_it"],
            "train_psnr": r["last"].get("psnr"),
            "psnr": e["mean"]["psnr"],
            "ssim": e["mean"]["ssim"],
            "lpips": e["mean"].get("lpips"),
            "eval_views": e["count"],
            "eval_s_per_view": e["s_per_view"],
            "other_processes_cpu_s": round(others, 1),
        })
        if r["stopped"] == "iters":
            break
    result = {
        "scene": kind,
        "recipe": recipe,
        "overrides": list(extra),
        "iters_schedule": iters,
        "points": points,
        "render_s": _render_seconds(scene_path, "bench"),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "other_processes_cpu_s": round((machine_busy_s() - busy0) - (own_cpu_s() - own0), 1),
    }
    if torch.cuda.is_available():
        result["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 1024**3, 2)
    queue.put(result)


def _in_process(*args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=run_scene, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fern", type=Path, default=Path(os.environ.get("NERFPIPE_FERN", DATA / "fern")))
    ap.add_argument("--lego", type=Path, default=Path(os.environ.get("NERFPIPE_LEGO", DATA / "lego")))
    ap.add_argument("--only", choices=("fern", "lego"), default=None)
    ap.add_argument("--fern-minutes", default="2,5,10", help="cumulative training minutes at which to evaluate")
    ap.add_argument("--fern-factor", type=int, default=8, help="downsampling of the photos: 8 (496x368) or 4 (1008x752, the published tables')")
    ap.add_argument("--fern-iters", type=int, default=5400,
                    help="schedule length (about 10 CPU minutes at 0.11 s a step; 3600 on a machine of 0.17 s)")
    ap.add_argument("--lego-minutes", default="15")
    ap.add_argument("--lego-iters", type=int, default=6000,
                    help="schedule length (the budget stopped it at 5452 at 0.165 s a step; the recipe's own: 3000)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="a recipe override for every scene, as `nerfpipe train --set` (repeatable)")
    ap.add_argument("--work", type=Path, default=None, help="folder for the scenes and runs (default: a temporary one)")
    args = ap.parse_args()

    import torch

    work = args.work or Path(tempfile.mkdtemp(prefix="nerfpipe-fast-"))
    work.mkdir(parents=True, exist_ok=True)
    out: dict = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "reference_workload_s": reference_workload_s()},
        "anchors": ANCHORS,
    }
    try:
        if args.only in (None, "fern"):
            minutes = [float(m) for m in args.fern_minutes.split(",")]
            scene = str(prepare_fern(args.fern, work, args.fern_factor))
            out["fern"] = _in_process("fern", scene, "fast", minutes, args.fern_iters,
                                     (f"factor={args.fern_factor}", *args.overrides))
        if args.only in (None, "lego"):
            minutes = [float(m) for m in args.lego_minutes.split(",")]
            out["lego"] = _in_process("lego", str(prepare_lego(args.lego, work)), "fast_blender", minutes, args.lego_iters,
                                     tuple(args.overrides))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
