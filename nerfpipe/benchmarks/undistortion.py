"""What undistorting a phone capture gives: the same scene trained for the same steps on its photos as if
they were pinhole (``data.undistort=false``, what nerfpipe did before) and undistorted (the default).

    python -m nerfpipe.benchmarks.undistortion [--data ../shared/data] [--work DIR] [--iters 500] [--cases fern,fox]

Cases (nerfpipe's own poses: ingest and SfM run here, or are found up to date in ``--work``, which may be
the trust benchmark's folder):

- ``fern``: the 20 fern photos, factor 8 (SIMPLE_RADIAL k1 about 0.022 at 4032x3024: 4 px at the corners at factor 8);
- ``fox``: the 50 fox frames, factor 4 (k1 about 0.002: under half a pixel at factor 4).

Each case trains the fast recipe for exactly ``--iters`` steps (no time budget, so contention changes the
seconds, not the steps) twice, and evaluates both on the same held-out photos (llffhold 8). The two runs
see different images of those photos (distorted, or resampled and cropped to the centred pinhole), so PSNR
compares how well each fits its own images; the depth figure compares both with the same SfM points.
Prints one JSON line per case, then the whole object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nerfpipe.progress import Reporter
from nerfpipe.stages import ingest, poses
from nerfpipe.stages import train as train_stage

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CASES = {"fern": ("fern/images", 8), "fox": ("fox/images", 4)}


def run_case(data: Path, work: Path, case: str, iters: int) -> dict:
    photos, factor = CASES[case]
    scene = work / case
    reporter = Reporter()
    ingest.run(ingest.IngestParams(photos=data / photos, scene=scene, factors=tuple(sorted({4, 8, factor}))), reporter)
    posed = poses.run(poses.PosesParams(scene=scene), reporter).result
    out = {"k1": posed["camera"]["k1"], "model": posed["camera"]["model"], "factor": factor, "iters": iters}
    for name, undistort in (("pinhole", "false"), ("undistorted", "true")):
        t0 = time.perf_counter()
        outcome = train_stage.run(train_stage.TrainParams(
            scene=scene, recipe="fast", run=f"undistort-{name}",
            overrides=(f"data.factor={factor}", f"data.undistort={undistort}", f"iters={iters}", "minutes=0")), reporter)
        metrics = json.loads((scene / "runs" / f"undistort-{name}" / "metrics.json").read_text())
        out[name] = {"steps": outcome.train.value.steps, "s_per_it": outcome.train.value.s_per_it,
                     "size": metrics["size"], "train_psnr": metrics["train_psnr"], **metrics["mean"],
                     "wall_s": round(time.perf_counter() - t0, 1)}
    out["psnr_gain_db"] = round(out["undistorted"]["psnr"] - out["pinhole"]["psnr"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--work", type=Path, default=Path("/tmp/nerfpipe-bench-undistortion"))
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    result = {"iters": args.iters, "cases": {}}
    for case in args.cases.split(","):
        result["cases"][case] = run_case(args.data, args.work, case, args.iters)
        print(json.dumps({case: result["cases"][case]}), flush=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
