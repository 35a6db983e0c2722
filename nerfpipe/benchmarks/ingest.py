"""Benchmark: ingest the 20 fern photos (12 MP) and re-run it cached; prints JSON.

    python -m nerfpipe.benchmarks.ingest [--photos ../shared/data/fern/images]

Targets (issue 2): at most 15 s for the first run, at most 1 s for a cached re-run (whole command).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nerfpipe.stages import ingest

DEFAULT_PHOTOS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fern" / "images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scene = Path(tmp)
        t0 = time.perf_counter()
        res = ingest.run(ingest.IngestParams(photos=args.photos, scene=scene))
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = ingest.run(ingest.IngestParams(photos=args.photos, scene=scene))
        cached = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "nerfpipe", "ingest", str(args.photos), "--scene", str(scene)],
            check=True, capture_output=True,
        )
        cached_cli = time.perf_counter() - t0
    print(json.dumps({
        "photos": len(res.value.images),
        "sizes": res.value.sizes,
        "first_run_s": round(first, 2),
        "images_per_s": round(len(res.value.images) / first, 2),
        "cached_run_s": round(cached, 3),
        "cached_run_ran": again.ran,
        "cached_cli_command_s": round(cached_cli, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "targets": {"first_run_s": 15, "cached_cli_command_s": 1},
    }, indent=1))


if __name__ == "__main__":
    main()
