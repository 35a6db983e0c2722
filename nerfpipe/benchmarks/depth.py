"""The depth reference (issue 13): the paper's NeRF (recipe ``llff``) against the fast recipe, the same
minutes each, on the README example's scene and held-out photos, scored by the depth figure ``eval``
writes into ``metrics.json``.

    python -m nerfpipe.benchmarks.depth [--photos examples/fern/photos] [--work DIR] [--recipes llff,fast]
                                        [--minutes 15] [--device auto]

The scene: the photos through ingest and nerfpipe's own SfM, at the training size ``nerfpipe all``
picks on a CPU (found up to date when ``--work`` holds them already). Each recipe trains from scratch
for ``--minutes`` (its own schedule of steps, stopped by the budget) without the full evaluation, and
is scored only at the SfM points' pixels of the held-out photos
(:func:`nerfpipe.stages.evaluation.evaluate_depth`): the median relative depth error and the
fractions within 2% and 5%, per view and their mean, exactly as ``eval`` reports them. That takes
seconds, where the paper's NeRF renders a 496x368 view in about ten CPU minutes.

On 2 CPU cores the paper's NeRF takes about 9 s a step at 496x368, so 15 minutes hold about 100 of
its 200,000 steps: the figure then says how far a CPU run gets, not what the paper's NeRF reaches.
On a GPU (``--device cuda --minutes 5``: thousands of steps) it is the reference the fast recipe's
depth is measured against. Prints one JSON line per recipe, then the whole object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from nerfpipe.progress import Reporter

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fern" / "photos"
RECIPES = ("llff", "fast")


def prepare(photos: Path, scene: Path, reporter: Reporter) -> int:
    """Ingest and pose ``photos`` into ``scene`` as ``nerfpipe all`` does on a CPU (each stage up to date if
    it ran before); returns the training factor it picks (the example: 2, 496x368)."""
    import torch

    from nerfpipe.stages import ingest, poses, train
    from nerfpipe.stages.pipeline import DEFAULT_FACTORS, auto_factor

    factor = auto_factor(photos, train.target_long_side(torch.device("cpu"))) or 1
    ingest.run(ingest.IngestParams(photos=photos, scene=scene, factors=tuple(sorted(set(DEFAULT_FACTORS) | {factor}))), reporter)
    poses.run(poses.PosesParams(scene=scene), reporter)
    return factor


def measure(scene: Path, recipe: str, factor: int, minutes: float, device: str, reporter: Reporter) -> dict:
    """Train ``recipe`` from scratch for ``minutes`` on images_<factor> into runs/depth-<recipe>, then its
    depth figures."""
    import torch

    from nerfpipe.stages import train as train_stage
    from nerfpipe.stages.evaluation import evaluate_depth, sparse_depth_truth
    from nerfpipe.stages.runs import load_run
    from nerfpipe.stages.sources import detect_source, load_scene

    run = f"depth-{recipe}"
    params = train_stage.TrainParams(scene=scene, recipe=recipe, run=run, fresh=True, device=device, evaluate=False,
                                     overrides=(f"data.factor={factor}", f"training.minutes={minutes}"))
    outcome = train_stage.run(params, reporter)
    trained = outcome.train.value
    model, loaded, meta = load_run(scene, run, torch.device(trained.device), reporter)
    data = load_scene(scene, loaded, detect_source(scene, loaded, reporter), reporter)
    t0 = time.perf_counter()
    with torch.no_grad():
        scored = evaluate_depth(model, data, sparse_depth_truth(scene, data))
    last = trained.last or {}
    return {
        "recipe": recipe, "steps": trained.steps, "stopped": trained.stopped, "train_seconds": trained.train_seconds,
        "s_per_it": trained.s_per_it, "device": trained.device, "train_psnr_last_window": last.get("psnr"),
        "size": trained.images["size"], "depth": scored["mean"], "views": scored["views"],
        "depth_seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=EXAMPLE, help="Photos to pose and train on (default: the README example).")
    ap.add_argument("--work", type=Path, default=None, help="Folder for the scene (kept; default: a temporary one).")
    ap.add_argument("--recipes", default=",".join(RECIPES), help="Comma-separated recipes, each trained from scratch.")
    ap.add_argument("--minutes", type=float, default=15.0, help="Training minutes per recipe.")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (as nerfpipe train --device).")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="nerfpipe-depth-"))
    scene = work / "scene"
    reporter = Reporter()
    factor = prepare(args.photos, scene, reporter)
    out = {"photos": str(args.photos), "scene": str(scene), "factor": factor, "minutes": args.minutes, "recipes": {}}
    for recipe in (r for r in args.recipes.split(",") if r):
        out["recipes"][recipe] = measure(scene, recipe, factor, args.minutes, args.device, reporter)
        print(json.dumps({recipe: out["recipes"][recipe]}), flush=True)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
