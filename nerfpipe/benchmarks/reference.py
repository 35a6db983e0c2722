"""The paper recipe against the reference code (yenchenlin/nerf-pytorch), step for step, in one run.

    python -m nerfpipe.benchmarks.reference --reference PATH [--scene fern|lego] [--factor 8]
        [--iters 10] [--every 1] [--eval] [--device auto] [--work DIR] [--json FILE]

PATH is a checkout of https://github.com/yenchenlin/nerf-pytorch that you fetched yourself
(``git clone`` it anywhere; nerfpipe never ships it). Its Python needs ``configargparse``,
``matplotlib``, ``tqdm`` and ``imageio`` (``pip install configargparse matplotlib tqdm``).

Prints one JSON object. What it does:

1. Prepares one scene folder both programs read. fern: nerfpipe's ingest of ``../shared/data/fern``
   (``images/`` and ``images_<factor>/``, cropped to multiples of 16: 496x368 at factor 8) with the
   LLFF authors' poses as ``poses_bounds.npy``, the layout the reference's ``load_llff.py`` reads.
   lego: the Blender folder as it is (both read ``transforms_*.json`` and the PNGs; half resolution).
2. Copies the reference into the work folder and applies the patches of :data:`PATCHES`, each
   reported in the JSON: modern imageio has no ``ignoregamma``, the CUDA default tensor type only
   where CUDA is, the hard-coded 200k steps read from the environment, and one line printing each
   step's own time (the reference computes it and throws it away). Nothing else of its code changes.
3. Runs both for ``--iters`` steps with the same recipe values (the reference's ``configs/fern.txt``
   or ``configs/lego.txt``; nerfpipe's ``llff`` or ``blender`` recipe), each in its own process, one
   after the other, and reports: seconds per step (median after ``--warmup`` steps) of each and their
   ratio, the training loss and PSNR every ``--every`` steps of each, peak memory (RSS of the process;
   CUDA peak on a GPU), and the recipe values each used, side by side.
4. With ``--eval``: renders the held-out views with each (fern: images 0, 8, 16; lego: the 25 test
   views) and scores both renders, read back from their 8-bit PNGs, against the same images with
   nerfpipe's PSNR and SSIM. On the 2-core CPU one 496x368 view of the paper's network takes about 10
   minutes each: use it on a GPU.

``other_processes_cpu_s``: CPU time other processes used meanwhile (well above 0: the figures are
inflated). Each side starts from its own random initial weights (the reference seeds only numpy).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfpipe.benchmarks.contention import machine_busy_s, own_cpu_s
from nerfpipe.errors import NerfpipeError

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
ITERS_ENV = "NERFPIPE_REFERENCE_ITERS"
STEP_LINE = re.compile(r"\[STEP\] (\d+) ([\d.eE+-]+) (\d+)")
TRAIN_LINE = re.compile(r"\[TRAIN\] Iter: (\d+) Loss: ([\d.eE+-]+|nan)\s+PSNR: ([\d.eE+-]+|nan)")
CPU_TARGET = 0.8
"""s/step of nerfpipe's llff recipe over the reference's, on the 2-core CPU at fern factor 8 (issue 17)."""
REFERENCE_NEEDS = ("configargparse", "matplotlib", "tqdm", "imageio")


@dataclass(frozen=True)
class Patch:
    file: str
    old: str
    new: str
    why: str


PATCHES = (
    Patch("load_llff.py", "return imageio.imread(f, ignoregamma=True)", "return imageio.imread(f)",
          "imageio 2.16 and later have no ignoregamma (PNG gamma is ignored anyway)"),
    Patch("run_nerf.py", "    torch.set_default_tensor_type('torch.cuda.FloatTensor')",
          "    if torch.cuda.is_available(): torch.set_default_tensor_type('torch.cuda.FloatTensor')",
          "the CUDA default tensor type only where there is CUDA (the reference cannot start on a CPU otherwise)"),
    Patch("run_nerf.py", "    N_iters = 200000 + 1", f"    N_iters = int(os.environ['{ITERS_ENV}']) + 1",
          "the number of steps, hard-coded to 200k, from the benchmark"),
    Patch("run_nerf.py", '        # print(f"Step: {global_step}, Loss: {loss}, Time: {dt}")',
          '        print(f"[STEP] {i} {dt} {torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0}", '
          "flush=True)",
          "print each step's own time (computed by the reference as dt, then unused) and the CUDA peak"),
)
"""What the benchmark changes in its temporary copy of the reference, each line found exactly once."""


def prepare_reference(reference: Path, work: Path) -> tuple[Path, list[dict]]:
    """A patched copy of the reference checkout under ``work``; the patches as applied (file, line, why)."""
    reference = Path(reference)
    if not (reference / "run_nerf.py").is_file():
        raise NerfpipeError(f"{reference} has no run_nerf.py: pass a checkout of yenchenlin/nerf-pytorch with --reference.")
    copy = work / "reference"
    shutil.copytree(reference, copy, ignore=shutil.ignore_patterns(".git", "logs", "data", "__pycache__"))
    applied = []
    for patch in PATCHES:
        path = copy / patch.file
        text = path.read_text()
        if text.count(patch.old) != 1:
            raise NerfpipeError(
                f"{reference / patch.file} does not hold the line {patch.old.strip()!r} exactly once: this benchmark "
                "knows the reference at commit 63a5a63 (its master since 2022); check out that commit."
            )
        line = text[: text.index(patch.old)].count("\n") + 1
        path.write_text(text.replace(patch.old, patch.new))
        applied.append({"file": patch.file, "line": line, "was": patch.old.strip(), "now": patch.new.strip(),
                        "why": patch.why})
    return copy, applied


def prepare_fern(fern: Path, work: Path, factor: int) -> Path:
    """``work/fern``: nerfpipe's ingest of the fern photos at ``factor`` and the authors' poses, in the
    layout the reference's ``load_llff.py`` reads (``images/``, ``images_<factor>/``, ``poses_bounds.npy``)."""
    from nerfpipe.stages import ingest

    scene = work / "fern"
    ingest.run(ingest.IngestParams(photos=Path(fern) / "images", scene=scene, factors=(factor,)))
    shutil.copy(Path(fern) / "poses_bounds.reference.npy", scene / "poses_bounds.npy")
    check_llff_layout(scene, factor)
    return scene


def check_llff_layout(scene: Path, factor: int) -> dict:
    """What the reference's ``_load_data`` reads, checked as it reads it; returns the shapes."""
    poses = np.load(scene / "poses_bounds.npy")
    if poses.ndim != 2 or poses.shape[1] != 17:
        raise NerfpipeError(f"{scene / 'poses_bounds.npy'} has shape {poses.shape}, not (N, 17).")
    firsts = sorted(f for f in os.listdir(scene / "images") if f.endswith(("JPG", "jpg", "png")))
    if not firsts:
        raise NerfpipeError(f"{scene / 'images'} holds no JPG or png: the reference reads its first image's size.")
    folder = scene / f"images_{factor}"
    files = sorted(f for f in os.listdir(folder) if f.endswith(("JPG", "jpg", "png")))
    if len(files) != poses.shape[0]:
        raise NerfpipeError(f"{folder} has {len(files)} images for {poses.shape[0]} poses: the reference stops on that.")
    from PIL import Image

    with Image.open(folder / files[0]) as img:
        size = img.size
    return {"poses": list(poses.shape), "images": len(files), "size": list(size), "folder": folder.name}


def prepare_lego(lego: Path, work: Path) -> Path:
    """``work/lego``: the lego folder's transforms files, and links to its image folders (nerfpipe
    writes its run beside them; the reference only reads)."""
    scene = work / "lego"
    scene.mkdir(parents=True)
    for split in ("train", "val", "test"):
        shutil.copy(Path(lego) / f"transforms_{split}.json", scene / f"transforms_{split}.json")
        (scene / split).symlink_to((Path(lego) / split).resolve(), target_is_directory=True)
    return scene


def _missing_modules() -> list[str]:
    import importlib.util

    return [name for name in REFERENCE_NEEDS if importlib.util.find_spec(name) is None]


def _run(cmd: list[str], cwd: Path, log: Path, env: dict) -> tuple[int, float, float]:
    """(return code, peak RSS in GB, wall seconds) of a child process, its output into ``log``."""
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024**2, time.perf_counter() - t0


def _median_after(times: list[float], warmup: int) -> float | None:
    timed = times[warmup:] or times
    return round(statistics.median(timed), 4) if timed else None


def run_reference(ref: Path, scene_kind: str, scene: Path, factor: int, iters: int, every: int, evaluate: bool,
                  work: Path, warmup: int, device: str) -> dict:
    basedir = work / "reference_logs"
    args = [sys.executable, "run_nerf.py", "--config", f"configs/{scene_kind}.txt", "--datadir", str(scene),
            "--basedir", str(basedir), "--expname", "bench", "--i_print", str(every), "--i_weights", str(iters + 1),
            "--i_video", str(iters + 1), "--i_testset", str(iters if evaluate else iters + 1)]
    args += ["--factor", str(factor)] if scene_kind == "fern" else ["--testskip", "1"]
    env = {**os.environ, ITERS_ENV: str(iters)}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    log = work / "reference.log"
    code, rss, wall = _run(args, ref, log, env)
    text = log.read_text(errors="replace")
    if code != 0:
        tail = " | ".join(text.strip().splitlines()[-3:])
        raise NerfpipeError(f"The reference stopped with status {code} (its log: {log}): {tail}")
    steps, curve, cuda_peak = [], [], 0
    for m in STEP_LINE.finditer(text):  # tqdm's bar shares the log: lines are not lines
        steps.append(float(m.group(2)))
        cuda_peak = max(cuda_peak, int(m.group(3)))
    for m in TRAIN_LINE.finditer(text):
        curve.append({"step": int(m.group(1)), "loss": float(m.group(2)), "psnr": float(m.group(3))})
    values = {}
    args_txt = basedir / "bench" / "args.txt"
    for line in args_txt.read_text().splitlines() if args_txt.exists() else []:
        key, _, value = line.partition(" = ")
        values[key.strip()] = value.strip()
    out = {"s_per_step": _median_after(steps, warmup), "s_per_step_all": [round(t, 4) for t in steps],
           "steps": len(steps), "curve": curve, "peak_rss_gb": round(rss, 3), "wall_s": round(wall, 1),
           "peak_cuda_gb": round(cuda_peak / 1024**3, 3) if cuda_peak else None, "values": values, "log": str(log)}
    if evaluate:
        test_dir = basedir / "bench" / f"testset_{iters:06d}"
        out["renders"] = sorted(str(p) for p in test_dir.glob("*.png"))
    return out


_NERFPIPE_SIDE = """
import json, sys, torch
from pathlib import Path
from nerfpipe.progress import Reporter
from nerfpipe.stages import train
p = json.loads(sys.argv[1])
out = train.run(train.TrainParams(scene=Path(p["scene"]), recipe=p["recipe"], overrides=tuple(p["overrides"]), run="bench",
                                  device=p["device"], evaluate=p["evaluate"]), Reporter())
peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0
print(json.dumps({"result": out.train.result, "peak_cuda": peak}))
"""


def run_nerfpipe(scene_kind: str, scene: Path, factor: int, iters: int, every: int, evaluate: bool, work: Path,
                 warmup: int, device: str) -> dict:
    recipe = "llff" if scene_kind == "fern" else "blender"
    overrides = [f"training.iters={iters}", "training.log_every=1", f"training.checkpoint_every={iters}"]
    overrides += [f"data.factor={factor}"] if scene_kind == "fern" else []
    params = {"scene": str(scene), "recipe": recipe, "overrides": overrides, "device": device, "evaluate": evaluate}
    log = work / "nerfpipe.log"
    code, rss, wall = _run([sys.executable, "-c", _NERFPIPE_SIDE, json.dumps(params)], work, log, dict(os.environ))
    text = log.read_text(errors="replace")
    if code != 0:
        raise NerfpipeError(f"nerfpipe's side stopped with status {code} (its log: {log}): {text.strip()[-300:]}")
    reply = json.loads(text.strip().splitlines()[-1])
    run_dir = scene / "runs" / "bench"
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    seconds = [line["seconds"] for line in lines]
    steps = [b - a for a, b in zip([0.0, *seconds[:-1]], seconds)]
    from nerfpipe.recipes import load_recipe

    resolved = load_recipe(str(run_dir / "recipe.toml")).to_dict()
    out = {"s_per_step": _median_after(steps, warmup), "s_per_step_all": [round(t, 4) for t in steps],
           "steps": len(steps),
           "curve": [{"step": line["step"], "loss": line["loss"], "psnr": line["psnr"]} for line in lines
                     if line["step"] % every == 0],
           "peak_rss_gb": round(rss, 3), "wall_s": round(wall, 1),
           "peak_cuda_gb": round(reply["peak_cuda"] / 1024**3, 3) if reply["peak_cuda"] else None,
           "values": resolved, "device": reply["result"]["device"], "log": str(log)}
    if evaluate:
        out["renders"] = sorted(str(p) for p in (run_dir / "test").glob("*.png"))
    return out


def same_values(reference: dict, nerfpipe: dict) -> list[dict]:
    """The paper's options as each side resolved them (reference args.txt names, nerfpipe recipe keys)."""
    pairs = [("N_rand", "training", "batch_rays"), ("N_samples", "nerf", "n_samples"),
             ("N_importance", "nerf", "n_importance"), ("netdepth", "nerf", "netdepth"), ("netwidth", "nerf", "netwidth"),
             ("multires", "nerf", "multires"), ("multires_views", "nerf", "multires_views"),
             ("use_viewdirs", "nerf", "use_viewdirs"), ("raw_noise_std", "nerf", "raw_noise_std"),
             ("lrate", "nerf", "lrate"), ("lrate_decay", "nerf", "lrate_decay"), ("perturb", "nerf", "perturb"),
             ("lindisp", "nerf", "lindisp"), ("white_bkgd", "data", "white_bkgd"), ("half_res", "data", "half_res"),
             ("factor", "data", "factor"), ("llffhold", "data", "llffhold"), ("precrop_iters", "training", "precrop_iters"),
             ("precrop_frac", "training", "precrop_frac"), ("no_batching", "training", "batching"),
             ("no_ndc", "data", "ndc")]
    rows = []
    for ref_key, table, key in pairs:
        ours = nerfpipe.get(table, {}).get(key)
        if key == "batching":
            ours = ours == "one_image"
        if key == "ndc":
            ours = not ours
        theirs = reference.get(ref_key)
        same = theirs is not None and str(theirs).lower() == str(ours).lower() or _close(theirs, ours)
        rows.append({"option": ref_key, "reference": theirs, "nerfpipe": ours, "same": bool(same)})
    return rows


def _close(a, b) -> bool:
    try:
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))
    except (TypeError, ValueError):
        return False


def score_renders(scene_kind: str, scene: Path, factor: int, renders: list[str]) -> dict:
    """PSNR and SSIM of the 8-bit held-out renders against the same photos (nerfpipe's loaders)."""
    import cv2
    import torch

    from nerfpipe.nerf.metrics import psnr, ssim

    if scene_kind == "fern":
        from nerfpipe.datasets.llff import load_llff

        data = load_llff(scene, factor=factor, llffhold=8, ndc=True)
    else:
        from nerfpipe.datasets.blender import load_blender

        data = load_blender(scene, half_res=True, white_background=True)
    if len(renders) != len(data.i_test):
        return {"views": len(renders), "error": f"{len(renders)} renders for {len(data.i_test)} held-out views"}
    views = []
    for path, i in zip(renders, data.i_test):
        img = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        rgb = torch.from_numpy(img.astype(np.float32) / 255.0)
        views.append({"view": int(i), "psnr": round(psnr(rgb, data.images[i]), 3), "ssim": round(ssim(rgb, data.images[i]), 4)})
    return {"views": views, "psnr": round(float(np.mean([v["psnr"] for v in views])), 3),
            "ssim": round(float(np.mean([v["ssim"] for v in views])), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", type=Path, required=True, help="checkout of yenchenlin/nerf-pytorch")
    ap.add_argument("--scene", choices=("fern", "lego"), default="fern")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding fern/ and lego/ (../shared/data)")
    ap.add_argument("--factor", type=int, default=8, help="fern: images_FACTOR (8: the reference's demo, 4: the paper's tables)")
    ap.add_argument("--iters", type=int, default=10, help="training steps of each")
    ap.add_argument("--warmup", type=int, default=2, help="first steps left out of the median s/step")
    ap.add_argument("--every", type=int, default=1, help="loss and PSNR every this many steps")
    ap.add_argument("--eval", action="store_true", help="render and score the held-out views at the end (GPU)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--work", type=Path, help="folder for the scene, the patched copy and the logs (default: temporary)")
    ap.add_argument("--json", type=Path, help="also write the JSON here")
    args = ap.parse_args()
    if args.iters < 1 or args.every < 1 or args.warmup < 0 or args.factor < 1:
        ap.error("--iters, --every and --factor take 1 or more, --warmup 0 or more")
    missing = _missing_modules()
    if missing:
        ap.error(f"the reference needs {', '.join(missing)} in this Python: pip install {' '.join(missing)}")

    import torch

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    busy0, own0 = machine_busy_s(), own_cpu_s()
    with tempfile.TemporaryDirectory(prefix="nerfpipe-reference-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        if args.scene == "fern":
            scene = prepare_fern(args.data / "fern", work, args.factor)
        else:
            scene = prepare_lego(args.data / "lego", work)
        prepare_s = time.perf_counter() - t0
        ref, patches = prepare_reference(args.reference, work)
        reference = run_reference(ref, args.scene, scene, args.factor, args.iters, args.every, args.eval, work,
                                  args.warmup, device)
        ours = run_nerfpipe(args.scene, scene, args.factor, args.iters, args.every, args.eval, work, args.warmup, device)
        if args.eval:
            reference["heldout"] = score_renders(args.scene, scene, args.factor, reference.pop("renders"))
            ours["heldout"] = score_renders(args.scene, scene, args.factor, ours.pop("renders"))
        ratio = ours["s_per_step"] / reference["s_per_step"] if reference["s_per_step"] and ours["s_per_step"] else None
        out = {
            "benchmark": "reference",
            "scene": args.scene,
            "size": check_llff_layout(scene, args.factor)["size"] if args.scene == "fern" else [400, 400],
            "iters": args.iters,
            "device": device,
            "machine": {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
                        "gpu": torch.cuda.get_device_name() if device == "cuda" else None},
            "prepare_s": round(prepare_s, 1),
            "patches": patches,
            "ratio_s_per_step": round(ratio, 3) if ratio else None,
            "cpu_target_ratio": CPU_TARGET,
            "meets_cpu_target": bool(ratio is not None and ratio <= CPU_TARGET) if device == "cpu" else None,
            "recipe_values": same_values(reference.pop("values"), ours.pop("values")),
            "reference": reference,
            "nerfpipe": ours,
        }
        if args.eval:
            out["heldout_psnr_difference_db"] = round(ours["heldout"].get("psnr", np.nan) - reference["heldout"].get("psnr", np.nan), 3)
        busy = machine_busy_s() - busy0
        out["other_processes_cpu_s"] = round(max(0.0, busy - (own_cpu_s() - own0)), 1)
        text = json.dumps(out, indent=1)
        if args.json:
            args.json.write_text(text)
        print(text)


if __name__ == "__main__":
    main()
