"""The paper's NeRF (recipes llff and blender) for a fixed number of steps, then scored on the held-out views.

    python -m nerfpipe.benchmarks.paper --fern FERN --lego LEGO --iters 15000 [--device cuda] [--tf32] [--work DIR]
        [--fern-recipe llff] [--lego-recipe blender] [--minutes M] [--probe 30] [--set key=value] [--json FILE]

Prints one JSON object (and writes it to ``--json`` when given). Meant for a GPU, where the paper's
schedule is within reach; on a CPU use small ``--iters``.

- ``FERN``: the shared fern folder (``images/`` + ``poses_bounds.reference.npy``: ingested at factor 8
  here, 496x368) or an already prepared LLFF folder (``poses_bounds.npy`` + ``images_8/``).
- ``LEGO``: the Blender lego folder. If its images are already halved (400x400), ``half_res`` is
  turned off so that training still sees 400x400 views.
- ``probe``: before the long runs, ``--probe`` timed steps of each recipe with the zero-density
  skipping on (``skip_empty``, the CPU fast path) and off (plain autograd), and off with TF32 matrix
  products, after 10 warm-up steps (1 on a CPU), the device synchronised around them. The long runs use the
  recipe as written (plus ``--set``), in fp32 unless ``--tf32``.
- per scene: the real train stage (``nerfpipe train --recipe R --iters N``) and eval stage on a copy of
  the scene under ``--work``: seconds per step (wall time of the steps / steps), the last logged
  training PSNR, held-out PSNR / SSIM (per view and mean), seconds per rendered view, peak device
  memory.

``--fern-recipe fast --lego-recipe fast_blender`` measures the fast recipes the same way. Figures
measured with it on one H100 are in the README's recipe table.

The paper reports fern 25.17 dB and lego 32.54 dB after its full schedule (200k / 500k steps at
504x378 / 400x400); ``paper_psnr`` is carried in the JSON for comparison, not as a target for a short run.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import cv2

PAPER_PSNR = {"fern": 25.17, "lego": 32.54}
RECIPES = {"fern": "llff", "lego": "blender"}


def prepare_fern(fern: Path, work: Path) -> Path:
    """An LLFF folder for fern at factor 8 under ``work``: copied when prepared, else ingested."""
    scene = work / "fern"
    if (fern / "poses_bounds.npy").exists() and (fern / "images_8").is_dir():
        shutil.copytree(fern, scene, ignore=shutil.ignore_patterns("runs", ".nerfpipe"))
        return scene
    from nerfpipe.benchmarks.train_nerf import prepare_scene

    return prepare_scene(fern, work)


def prepare_lego(lego: Path, work: Path) -> tuple[Path, list[str]]:
    """A copy of the lego folder under ``work``, and the overrides its image size needs."""
    scene = work / "lego"
    shutil.copytree(lego, scene, ignore=shutil.ignore_patterns("runs", ".nerfpipe", "val"))
    first = json.loads((scene / "transforms_train.json").read_text())["frames"][0]["file_path"]
    img = cv2.imread(str(scene / (first + ".png")), cv2.IMREAD_UNCHANGED)
    return scene, (["data.half_res=false"] if img is not None and img.shape[1] <= 400 else [])


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def probe(scene: Path, recipe_name: str, overrides: list[str], device, steps: int) -> dict | None:
    """Seconds per training step of a NeRF recipe with skip_empty on / off, and off with TF32 (None for other models)."""
    import torch

    from nerfpipe.nerf import trainer
    from nerfpipe.nerf.registry import build_model
    from nerfpipe.recipes import load_recipe
    from nerfpipe.stages.sources import detect_source, load_scene

    if load_recipe(recipe_name, overrides).model != "nerf":
        return None
    out = {}
    data = None
    variants = [("skip_empty", ["nerf.skip_empty=true"], False), ("plain", ["nerf.skip_empty=false"], False),
                ("plain_tf32", ["nerf.skip_empty=false"], True)]
    warmup = 10 if device.type == "cuda" else 1
    for label, extra, tf32 in variants:
        if tf32 and device.type != "cuda":
            continue
        recipe = load_recipe(recipe_name, [*overrides, *extra])
        if data is None:
            data = load_scene(scene, recipe, detect_source(scene, recipe))
        torch.manual_seed(0)
        model = build_model(recipe.model, recipe.model_config, data.scene_box).to(device).train()
        optimizer, base_lrs = trainer.make_optimizer(model, recipe.training)
        sampler = trainer.RaySampler(data, recipe.training)
        with trainer.matmul_precision(tf32):
            for step in range(warmup):
                trainer.train_step(model, optimizer, base_lrs, sampler, step, recipe.training, device)
            _sync(device)
            t0 = time.perf_counter()
            for step in range(warmup, warmup + steps):
                trainer.train_step(model, optimizer, base_lrs, sampler, step, recipe.training, device)
            _sync(device)
        out[label] = round((time.perf_counter() - t0) / steps, 5)
    return out


def train_and_score(scene: Path, recipe_name: str, overrides: list[str], iters: int, device_name: str,
                    tf32: bool = False) -> dict:
    import torch

    from nerfpipe.progress import Reporter
    from nerfpipe.stages import runs
    from nerfpipe.stages.evaluation import EVAL_METRICS
    from nerfpipe.stages import train as train_stage

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    params = train_stage.TrainParams(scene=scene, recipe=recipe_name, run=recipe_name, fresh=True, device=device_name, tf32=tf32,
                                     overrides=(*overrides, f"training.iters={iters}", f"training.checkpoint_every={max(1000, iters)}"))
    outcome = train_stage.run(params, Reporter())
    result = outcome.train.result
    metrics = json.loads((runs.run_dir(scene, recipe_name) / EVAL_METRICS).read_text())
    log = [json.loads(line) for line in (runs.run_dir(scene, recipe_name) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {
        "recipe": recipe_name,
        "overrides": overrides,
        "steps": result["steps"],
        "train_seconds": result["train_seconds"],
        "s_per_it": result["s_per_it"],
        "it_per_s": round(result["steps"] / max(1e-9, result["train_seconds"]), 2),
        "size": result["images"]["size"],
        "train_views": result["images"]["train"],
        "train_psnr_last_window": log[-1].get("psnr") if log else None,
        "train_psnr_curve": [{"step": line["step"], "psnr": line.get("psnr"), "seconds": line.get("seconds")}
                             for line in log[:: max(1, len(log) // 20)]],
        "heldout_psnr": metrics["mean"].get("psnr"),
        "heldout_ssim": metrics["mean"].get("ssim"),
        "heldout_views": metrics["count"],
        "per_view_psnr": [v["psnr"] for v in metrics["views"]],
        "eval_s_per_view": metrics["s_per_view"],
        "eval_chunk": metrics["chunk"],
        "heldout_lpips": metrics["mean"].get("lpips"),
        "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 1024**3, 2) if torch.cuda.is_available() else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fern", type=Path, help="shared fern folder or a prepared LLFF folder")
    ap.add_argument("--lego", type=Path, help="Blender lego folder (800x800, or already halved)")
    ap.add_argument("--iters", type=int, default=2000, help="training steps of each long run (0: probe only)")
    ap.add_argument("--probe", type=int, default=30, help="timed steps per probe variant (0: no probe)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--work", type=Path, help="folder for the scene copies and runs (default: a temporary one)")
    ap.add_argument("--json", type=Path, help="also write the JSON here")
    ap.add_argument("--fern-recipe", default=RECIPES["fern"], help="recipe for fern (default llff)")
    ap.add_argument("--lego-recipe", default=RECIPES["lego"], help="recipe for lego (default blender)")
    ap.add_argument("--minutes", type=float, default=0.0, help="also stop each run after this many minutes of training")
    ap.add_argument("--tf32", action="store_true", help="TF32 matrix products while training (CUDA)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override for both runs")
    args = ap.parse_args()

    import torch

    from nerfpipe.device import pick_device

    device = pick_device(args.device)
    scenes = {name: path for name, path in (("fern", args.fern), ("lego", args.lego)) if path is not None}
    if not scenes:
        ap.error("give --fern and/or --lego")
    out: dict = {
        "benchmark": "paper",
        "machine": {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
        "iters": args.iters,
        "paper_psnr": PAPER_PSNR,
        "precision": "TF32 matrix products while training" if args.tf32 and device.type == "cuda" else "fp32",
        "scenes": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name, path in scenes.items():
            t0 = time.perf_counter()
            if name == "fern":
                scene, extra = prepare_fern(path, work), []
            else:
                scene, extra = prepare_lego(path, work)
            overrides = [*extra, *args.overrides, *([f"training.minutes={args.minutes}"] if args.minutes else [])]
            recipe = args.fern_recipe if name == "fern" else args.lego_recipe
            entry: dict = {"prepare_s": round(time.perf_counter() - t0, 1)}
            if args.probe:
                entry["probe_s_per_it"] = probe(scene, recipe, overrides, device, args.probe)
            if args.iters:
                entry.update(train_and_score(scene, recipe, overrides, args.iters, str(device), args.tf32))
            out["scenes"][name] = entry
            if args.json:
                args.json.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))  # --json was written after each scene (a long run keeps what it measured)


if __name__ == "__main__":
    main()
