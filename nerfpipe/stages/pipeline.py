"""``nerfpipe all``: ingest, poses, train and render in order, each one cached.

Each stage is the same ``run`` the single commands call; a failing stage stops here with its own
sentence, and what earlier stages finished stays finished (their manifests are written). The
training resolution is chosen from the photos: about ``train.target_long_side(device)`` pixels on the
long side, as an extra ingest factor when the default ones do not
give it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from nerfpipe import scene as scene_layout
from nerfpipe.cache import StageResult
from nerfpipe.cameras.scene_type import SceneKind
from nerfpipe.errors import NerfpipeError
from nerfpipe.frames import VideoError, video_size
from nerfpipe.photos import first_size
from nerfpipe.device import pick_device
from nerfpipe.progress import Reporter
from nerfpipe.recipes import has_override
from nerfpipe.stages import ingest, poses, render, report, train
from nerfpipe.stages.evaluation import verdict_words
from nerfpipe.stages.results import EvalResult, IngestResult, PosesResult, ReportResult, TrainResult

DEFAULT_FACTORS = (4, 8)


@dataclass(frozen=True)
class AllParams:
    source: Path
    """A folder with photos (loose, or in photos/), videos, or one video file."""
    scene: Path | None = None
    """Scene folder for every output; default: the source folder (a video's folder for a video)."""
    recipe: str | None = None
    """Recipe name or path; default: fast if it exists, else llff."""
    overrides: tuple[str, ...] = ()
    """key=value recipe overrides (--set, --iters, --minutes)."""
    factor: int | None = None
    """Training images downsampled by this factor; default: chosen from the photo size."""
    frames: int | None = None
    """Frames of the video; default: the path's own (120 for the spiral)."""
    device: str = "auto"
    tf32: bool = False
    """CUDA matrix products in TF32 while training."""
    scene_type: SceneKind | None = None
    """forward, arc or 360; default: decided from the registered cameras."""
    masks: Path | None = None
    """Folder of object masks, one per photo (see ingest.IngestParams.masks)."""
    keep_background: bool = False
    """With ``masks``: train on the whole photos (see ingest.IngestParams.keep_background)."""


@dataclass
class StageLine:
    stage: str
    ran: bool
    seconds: float
    figure: str
    poor: bool = False
    """The held-out verdict says the result is poor (the CLI exits with train.POOR_EXIT_CODE)."""


def _photos_and_scene(params: AllParams) -> tuple[Path, Path]:
    source = Path(params.source)
    if not source.exists():
        raise NerfpipeError(f"{source} does not exist: pass the folder that holds your photos (or a video).")
    if source.is_file():
        return source, Path(params.scene) if params.scene else source.parent
    return scene_layout.find_photos_dir(source), Path(params.scene) if params.scene else source


def auto_factor(photos: Path, long_side: int) -> int | None:
    """The whole factor that brings the photos' long side nearest ``long_side`` (at least 2), or None
    when no photo or video can be read (ingest then says why)."""
    photo_files, videos, _ = ingest.list_candidates(photos)
    size = first_size(photo_files)
    if size is None:
        for video in videos:
            try:
                size = video_size(video)
                break
            except VideoError:
                continue
    if size is None:
        return None
    return max(2, round(max(size) / long_side))


def capture_report(scene: Path, reporter: Reporter) -> StageResult:
    """After poses, before the long training: the capture report's sentences (warnings when they are
    problems) and where its files are."""
    res = report.run(report.ReportParams(scene=scene), reporter)
    r: ReportResult = res.value
    for sentence in r.sentences:
        (reporter.warn if r.problems else reporter.info)(sentence)
    reporter.info(f"Capture report: {scene / report.REPORT_JSON} and {scene / report.REPORT_PNG}.")
    return res


def run(params: AllParams, reporter: Reporter | None = None) -> list[StageLine]:
    """Run the four stages; returns one line per stage for the summary table."""
    reporter = reporter or Reporter()
    photos, scene = _photos_and_scene(params)
    device = pick_device(params.device)
    target = train.target_long_side(device)
    factor = params.factor or (None if has_override(params.overrides, "data.factor") else auto_factor(photos, target))
    factors = tuple(sorted(set(DEFAULT_FACTORS) | ({factor} if factor else set())))
    lines: list[StageLine] = []

    t0 = time.perf_counter()
    res = ingest.run(ingest.IngestParams(photos=photos, scene=scene, factors=factors, masks=params.masks,
                                         keep_background=params.keep_background), reporter)
    ingested: IngestResult = res.value
    lines.append(StageLine("ingest", res.ran, time.perf_counter() - t0,
                           f"{len(ingested.images)} photos used, {len(ingested.skipped)} skipped"))

    t0 = time.perf_counter()
    res = poses.run(poses.PosesParams(scene=scene), reporter)
    posed: PosesResult = res.value
    lines.append(StageLine("poses", res.ran, time.perf_counter() - t0,
                           f"{posed.registered} of {posed.photos} registered"))
    t0 = time.perf_counter()
    res = capture_report(scene, reporter)
    problems = res.value.problems
    lines.append(StageLine("report", res.ran, time.perf_counter() - t0,
                           f"{problems} problem{'s' if problems != 1 else ''}: see {scene / report.REPORT_PNG}"
                           if problems else "no problem found"))

    overrides = tuple(params.overrides) + ((f"data.factor={factor}",) if factor else ())
    t0 = time.perf_counter()
    outcome = train.run(train.TrainParams(scene=scene, recipe=params.recipe, overrides=overrides, device=params.device,
                                          scene_type=params.scene_type, tf32=params.tf32), reporter)
    trained: TrainResult = outcome.train.value
    evaluated: EvalResult | None = outcome.eval.value if outcome.eval else None
    psnr = evaluated.mean.get("psnr") if evaluated else None
    figure = f"held-out PSNR {psnr:.2f} dB" if psnr is not None else f"{trained.steps} steps"
    said = evaluated.verdict if evaluated else None
    if posed.pose_check is not None and posed.pose_check.result != "consistent":
        figure += f" (pose check: {posed.pose_check.result.replace('_', ' ')})"
    if said:
        figure += f" (verdict: {verdict_words(said)})"
    lines.append(StageLine("train", outcome.train.ran or bool(outcome.eval and outcome.eval.ran),
                           time.perf_counter() - t0, figure, poor=train.poor_result(outcome)))

    t0 = time.perf_counter()
    res = render.run(render.RenderParams(scene=scene, run=trained.run, frames=params.frames,
                                         device=params.device), reporter)
    lines.append(StageLine("render", res.ran, time.perf_counter() - t0, str(scene / res.value.video)))
    return lines

