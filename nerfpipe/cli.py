"""The ``nerfpipe`` command: parses options, calls a stage's ``run``, prints the result. No logic."""

from __future__ import annotations

import functools
import math
import sys
import warnings
from pathlib import Path
from typing import List, Literal, Optional

import typer
from rich.markup import escape
from rich.table import Table

from nerfpipe import __version__
from nerfpipe.errors import NerfpipeError
from nerfpipe.progress import CONSOLE, ERR_CONSOLE, RichReporter

CameraChoice = Literal["single", "per-image"]
"""--camera as typed (the poses stage's ``colmap.CameraMode`` with per_image spelt per-image)."""
MatcherChoice = Literal["auto", "exhaustive", "sequential"]
"""``stages.poses.Matcher`` (spelt here so that --help needs no pycolmap; tests/test_cli_choices.py keeps them equal)."""
LossChoice = Literal["mse", "smooth_l1", "l1"]
"""``nerf.interface.LossKind`` (spelt here so that --help needs no torch; kept equal by the same test)."""
SceneChoice = Literal["forward", "arc", "360"]
"""``cameras.scene_type.SceneKind`` (the cameras package imports torch; kept equal by the same test)."""
DEVICE_METAVAR = "<auto|cpu|cuda[:N]|mps>"

app = typer.Typer(
    help="From a folder of phone photos to a Neural Radiance Field and a fly-through video.\n\n"
    "Stages: ingest -> poses -> train -> render; `nerfpipe all SCENE` runs them all, each cached on disk.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        CONSOLE.print(f"nerfpipe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    pass


def user_errors(fn):
    """Turn a NerfpipeError into one red sentence and an exit code; Ctrl-C into a calm one."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NerfpipeError as e:
            ERR_CONSOLE.print(f"[bold red]error:[/] {escape(e.sentence)}", soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            ERR_CONSOLE.print(
                "[yellow]interrupted:[/] what had finished is kept; run the same command again to go on."
            )
            raise typer.Exit(130) from None

    return wrapper


def _int_list(values: List[str], option: str) -> tuple[int, ...]:
    """'4,8' or repeated options -> (4, 8); a bad value is a user error."""
    out = []
    for value in values:
        for part in value.replace(",", " ").split():
            try:
                out.append(int(part))
            except ValueError:
                raise NerfpipeError(f"{option} takes whole numbers such as 4,8, not {part!r}.") from None
    return tuple(out)


def _minutes(value: Optional[float]) -> Optional[float]:
    """--minutes: a finite number of minutes, 0 for no limit (NaN and negatives are not)."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter(f"{value} is not a number of minutes: use 0 (no limit) or more, such as 8.")
    return value


def _one_scene(scene_arg: Optional[Path], scene_opt: Optional[Path]) -> Path:
    """SCENE or --scene (the same folder if both), default the current folder."""
    if scene_arg is not None and scene_opt is not None and scene_arg != scene_opt:
        raise NerfpipeError(f"Two scene folders given ({scene_arg} and --scene {scene_opt}): pass one.")
    return scene_arg or scene_opt or Path(".")


def _device(name: str) -> str:
    """--device, checked before any work starts (the library's sentence, with the flag it came from)."""
    from nerfpipe.device import pick_device

    try:
        pick_device(name)
    except NerfpipeError as e:
        raise NerfpipeError(f"--device {e.sentence}") from None
    return name


def _size(size) -> str:
    return f"{size[0]}x{size[1]}"


@app.command()
@user_errors
def ingest(
    photos: Path = typer.Argument(..., help="Folder holding the photos (may be the scene folder itself), or a video (.mp4, .mov)."),
    scene: Path = typer.Option(Path("."), "--scene", "-s", help="Scene folder to write images/, images_4/, images_8/ into."),
    factors: List[str] = typer.Option(["4", "8"], "--factors", "-f", help="Downsampling factors: --factors 4,8 (or repeat: -f 4 -f 8)."),
    frames: int = typer.Option(100, "--frames", min=1, help="Frames kept from each video: the sharpest of each of this many windows."),
    force: bool = typer.Option(False, "--force", help="Redo the stage even if it is up to date."),
    masks: Optional[Path] = typer.Option(None, "--masks", help="Folder of object masks, one per photo named by its stem (white = object): SfM and training see only the objects, cut out on white."),
    keep_background: bool = typer.Option(False, "--keep-background", help="With --masks: train on the whole photos (SfM still sees only the objects)."),
) -> None:
    """Make the photos upright, RGB and 8-bit in images/, and downsample them into images_4/, images_8/.

    Videos (alone or beside photos) give their sharpest frames, spread through the clip.
    """
    from nerfpipe.stages import ingest as stage

    params = stage.IngestParams(photos=photos, scene=scene, factors=_int_list(factors, "--factors"), frames=frames,
                                force=force, masks=masks, keep_background=keep_background)
    res = stage.run(params, RichReporter())
    r = res.value
    if not res.ran:
        CONSOLE.print(f"ingest is up to date: {len(r.images)} photos in {scene / 'images'} (nothing to do).")
        return
    table = Table(title=None, show_header=True, header_style="bold")
    table.add_column("folder")
    table.add_column("size")
    table.add_column("images", justify="right")
    for folder, size in r.sizes.items():
        table.add_row(str(scene / folder), _size(size), str(len(r.images)))
    CONSOLE.print(table)
    CONSOLE.print(
        f"ingest: {len(r.images)} photos used, {len(r.skipped)} skipped, {res.seconds:.1f} s."
    )


@app.command()
@user_errors
def poses(
    scene_arg: Optional[Path] = typer.Argument(None, metavar="[SCENE]", help="Scene folder, ingested (default: .)."),
    scene_opt: Optional[Path] = typer.Option(None, "--scene", "-s", help="Same as SCENE."),
    camera: CameraChoice = typer.Option("single", "--camera", help="single (one phone) or per-image (a camera per photo)."),
    matcher: MatcherChoice = typer.Option("auto", "--matcher", help="auto, exhaustive (every pair) or sequential (ordered frames, with loop closure)."),
    sfm_size: int = typer.Option(1024, "--sfm-size", help="Longest side in pixels of the copy SfM runs on."),
    max_features: int = typer.Option(3072, "--max-features", help="SIFT features per image."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of RANSAC and the mapper."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads (default: all; 1 gives bit-identical reruns)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show COLMAP's own log."),
    force: bool = typer.Option(False, "--force", help="Redo the stage even if it is up to date."),
) -> None:
    """Recover the cameras with pycolmap: colmap/, poses_bounds.npy (LLFF) and transforms.json (nerfstudio)."""
    from nerfpipe.stages import poses as stage

    scene = _one_scene(scene_arg, scene_opt)
    params = stage.PosesParams(
        scene=scene, camera=camera.replace("-", "_"), matcher=matcher, sfm_size=sfm_size,
        max_features=max_features, seed=seed, verbose=verbose, force=force,
        **({"threads": threads} if threads else {}),
    )
    res = stage.run(params, RichReporter(verbose=verbose))
    r = res.value
    if not res.ran:
        CONSOLE.print(
            f"poses is up to date: {r.registered} of {r.photos} photos registered in {scene} (nothing to do)."
        )
        _report_summary(scene)
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("registered", f"{r.registered} of {r.photos} photos")
    if r.unregistered:
        table.add_row("not registered", ", ".join(r.unregistered))
    table.add_row("3D points", f"{r.points3D} ({r.observations} observations)")
    w, h = r.reprojection_error_pixels_of
    table.add_row("reprojection error", f"{r.mean_reprojection_error_px:.3f} px (mean, {w}x{h} SfM copy)")
    table.add_row("focal", f"{r.focal:.1f} px for {r.width}x{r.height} images/")
    table.add_row("matching", f"{r.matcher}, {r.verified_pairs} of {r.pairs} pairs verified")
    table.add_row("time", ", ".join(f"{k} {v:.1f} s" for k, v in r.seconds.items()) + f" (stage {res.seconds:.1f} s)")
    table.add_row("written", ", ".join(str(scene / p) for p in stage.OUTPUTS))
    CONSOLE.print(table)
    _report_summary(scene)


def _print_report(scene: Path, said: List[str], problems: int) -> None:
    """The report's sentences, then where its files are."""
    from rich.markup import escape

    from nerfpipe.stages import report

    CONSOLE.print(f"[bold]capture report[/] ({problems} problem{'' if problems == 1 else 's'}):")
    for sentence in said:
        CONSOLE.print(f"  [{'yellow' if problems else 'green'}]-[/] {escape(sentence)}", soft_wrap=True)
    CONSOLE.print(f"report: {escape(str(scene / report.REPORT_JSON))}, {escape(str(scene / report.REPORT_PNG))}",
                  soft_wrap=True)


def _report_summary(scene: Path) -> None:
    """After poses: the capture report's sentences and files (the per-photo table is `nerfpipe report`)."""
    from nerfpipe.stages import report

    r = report.run(report.ReportParams(scene=scene), RichReporter()).value
    _print_report(scene, r.sentences, r.problems)


@app.command()
@user_errors
def report(
    scene_arg: Optional[Path] = typer.Argument(None, metavar="[SCENE]", help="Scene folder, ingested and posed (default: .)."),
    scene_opt: Optional[Path] = typer.Option(None, "--scene", "-s", help="Same as SCENE."),
    force: bool = typer.Option(False, "--force", help="Measure the photos and write the report again even if it is up to date."),
) -> None:
    """Check the capture: per photo sharpness, exposure, registration and matched neighbours; each problem
    as a sentence saying what to do; report.json and a top-down picture of the cameras, report.png."""
    from rich import box
    from rich.markup import escape

    from nerfpipe.stages import report as stage

    scene = _one_scene(scene_arg, scene_opt)
    stage.run(stage.ReportParams(scene=scene, force=force), RichReporter())
    data = stage.load(scene)
    flagged = {n for problem in data["problems"] for n in problem["photos"]}
    table = Table(show_header=True, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for column, justify in (("#", "right"), ("photo", "left"), ("sharp", "right"), ("bright", "right"),
                            ("black/white", "right"), ("reg.", "left"), ("matched", "right"), ("points", "right")):
        table.add_column(column, justify=justify, no_wrap=column != "photo", overflow="fold")
    for p in data["photos"]:
        table.add_row(
            str(p["number"]), escape(p["name"]), f"{p['relative_sharpness']:.0%}", f"{p['mean_luminance']:.0%}",
            f"{p['dark_fraction']:.0%} / {p['bright_fraction']:.0%}", "yes" if p["registered"] else "no",
            str(len(p["neighbours"])), "" if p["points3D"] is None else str(p["points3D"]),
            style="red" if p["number"] in flagged else None,
        )
    CONSOLE.print(table)
    CONSOLE.print("sharp: of the median photo's sharpness; bright: mean brightness; black/white: clipped pixels; "
                  "reg.: registered; matched: photos sharing enough verified matches with it; points: 3D points it "
                  "sees; red: a problem below.")
    _print_report(scene, data["sentences"], len(data["problems"]))


def _train_overrides(sets, iters, minutes, factor, loss, batch_rays, seed) -> tuple[str, ...]:
    typed = {"training.iters": iters, "training.minutes": minutes, "data.factor": factor, "training.loss": loss,
             "training.batch_rays": batch_rays, "training.seed": seed}
    return tuple(sets) + tuple(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in typed.items() if v is not None)


@app.command()
@user_errors
def train(
    scene: Path = typer.Argument(Path("."), help="Scene folder: after ingest + poses, one with transforms.json and its images, a published LLFF scene, or a Blender scene."),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help="Recipe name (recipes/NAME.toml) or path; default fast, else llff."),
    sets: List[str] = typer.Option([], "--set", help="Override one recipe value: --set nerf.n_samples=32 (repeatable)."),
    iters: Optional[int] = typer.Option(None, "--iters", min=1, help="Training steps (training.iters)."),
    minutes: Optional[float] = typer.Option(None, "--minutes", callback=_minutes, help="Also stop after this many minutes (training.minutes); 0: no limit."),
    factor: Optional[int] = typer.Option(None, "--factor", min=1, help="Train on images_FACTOR/ (data.factor)."),
    loss: Optional[LossChoice] = typer.Option(None, "--loss", help="mse, smooth_l1 or l1 (training.loss)."),
    batch_rays: Optional[int] = typer.Option(None, "--batch-rays", min=1, help="Rays per step (training.batch_rays)."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="Random seed (training.seed)."),
    run: Optional[str] = typer.Option(None, "--run", help="Run name: runs/RUN/ (default: the recipe's name)."),
    fresh: bool = typer.Option(False, "--fresh", help="Start the run over instead of resuming it."),
    device: str = typer.Option("auto", "--device", metavar=DEVICE_METAVAR, help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps."),
    no_eval: bool = typer.Option(False, "--no-eval", help="Do not render and score the held-out views at the end."),
    tf32: bool = typer.Option(False, "--tf32", help="On an NVIDIA GPU, matrix products in TF32 while training: faster, same PSNR as measured (default fp32, as the paper)."),
    scene_type: Optional[SceneChoice] = typer.Option(None, "--scene-type", help="forward, arc or 360 (default: decided from the cameras)."),
) -> None:
    """Train a NeRF on a scene into runs/RUN/ (resumes; --fresh starts over), then evaluate the held-out views."""
    from nerfpipe.stages import train as stage

    params = stage.TrainParams(
        scene=scene, recipe=recipe, overrides=_train_overrides(sets, iters, minutes, factor, loss, batch_rays, seed),
        run=run, fresh=fresh, device=_device(device), evaluate=not no_eval, scene_type=scene_type, tf32=tf32,
    )
    outcome = stage.run(params, RichReporter())
    r = outcome.train.value
    where = scene / r.run_dir
    if not outcome.train.ran:
        CONSOLE.print(f"train is up to date: {where} has {r.steps} steps (nothing to do; --fresh starts over).")
    else:
        last = r.last or {}
        psnr = f", training PSNR {last['psnr']:.2f} dB" if last.get("psnr") is not None else ""
        CONSOLE.print(
            f"train: {where} at step {r.steps} ({r.stopped} reached), {r.s_per_it:.3g} s/it on {r.device}{psnr}."
        )
    if outcome.eval is not None:
        _print_eval(scene, outcome.eval)
    if stage.poor_result(outcome):
        raise typer.Exit(stage.POOR_EXIT_CODE)


def _print_eval(scene: Path, res) -> None:
    from nerfpipe.stages.evaluation import verdict_words

    r = res.value
    m = r.mean
    parts = [f"{k.upper()} {m[k]:.4g}" for k in ("psnr", "ssim", "lpips") if k in m]
    if "depth_rel_error_median" in m:  # eval writes the four depth figures together
        parts.append(f"depth {100 * m['depth_rel_error_median']:.2f}% off at the median ({100 * m['depth_within_2pct']:.0f}% "
                     f"of {m['depth_points']} SfM points within 2%, {100 * m['depth_within_5pct']:.0f}% within 5%)")
    state = "up to date" if not res.ran else f"{r.count} held-out views, {r.s_per_view:.1f} s/view"
    said = r.verdict
    verdict = f"; training views {said.train_psnr:.2f} dB, verdict {verdict_words(said)}" if said else ""
    CONSOLE.print(f"eval ({state}): {', '.join(parts) or 'no held-out views'}{verdict} -> "
                  f"{scene / 'runs' / r.run / 'metrics.json'}")


@app.command(name="eval")
@user_errors
def eval_(
    scene: Path = typer.Argument(Path("."), help="Scene folder holding runs/."),
    run: Optional[str] = typer.Option(None, "--run", help="Run to evaluate (default: the only one)."),
    device: str = typer.Option("auto", "--device", metavar=DEVICE_METAVAR, help="auto, cpu, cuda, mps."),
    chunk: Optional[int] = typer.Option(None, "--chunk", min=1, help="Rays per rendering call (default: from free memory)."),
    force: bool = typer.Option(False, "--force", help="Render and score again even if up to date."),
) -> None:
    """Render the held-out views of a run to runs/RUN/test/ and write PSNR, SSIM and LPIPS to runs/RUN/metrics.json
    (exit status 3 when the verdict is poor, as train's)."""
    from nerfpipe.stages import evaluation as stage
    from nerfpipe.stages.train import POOR_EXIT_CODE

    reporter = RichReporter()
    res = stage.run_eval(stage.EvalParams(scene=scene, run=run, device=_device(device), chunk=chunk, force=force), reporter)
    stage.say_verdict(res.value.verdict, reporter)  # up to date or not
    _print_eval(scene, res)
    if stage.is_poor(res.value.verdict):
        raise typer.Exit(POOR_EXIT_CODE)


@app.command()
@user_errors
def render(
    scene: Path = typer.Argument(Path("."), help="Scene folder holding runs/."),
    run: Optional[str] = typer.Option(None, "--run", help="Run to render (default: the one that finished training last)."),
    factor: Optional[float] = typer.Option(None, "--factor", help="Render at full resolution / FACTOR (default: the training factor)."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Frames of the path (default 120; 40 for Blender scenes)."),
    fps: int = typer.Option(30, "--fps", help="Frames per second of the video."),
    frames_dir: bool = typer.Option(False, "--frames-dir", help="Also keep every frame as PNG in renders/RUN/frames/."),
    device: str = typer.Option("auto", "--device", metavar=DEVICE_METAVAR, help="auto, cpu, cuda, mps."),
    force: bool = typer.Option(False, "--force", help="Render again even if up to date."),
) -> None:
    """Render the camera path (LLFF spiral, 360 circle or Blender turntable) to renders/RUN/PATH.mp4 and PATH_depth.mp4 (PATH: spiral, circle, arc or turntable)."""
    from nerfpipe.stages import render as stage

    params = stage.RenderParams(scene=scene, run=run, factor=factor, frames=frames, fps=fps, frames_dir=frames_dir,
                                device=_device(device), force=force)
    res = stage.run(params, RichReporter())
    r = res.value
    state = "up to date" if not res.ran else f"{r.seconds_per_frame:.2f} s/frame on {r.device}"
    CONSOLE.print(
        f"render ({state}): {scene / r.video} and {scene / r.depth_video}, "
        f"{r.frames} frames {r.size[0]}x{r.size[1]} ({r.path})."
    )


@app.command()
@user_errors
def export(
    scene_arg: Optional[Path] = typer.Argument(None, metavar="[SCENE]", help="Scene folder, posed (default: .)."),
    scene_opt: Optional[Path] = typer.Option(None, "--scene", "-s", help="Same as SCENE."),
    run: Optional[str] = typer.Option(None, "--run", help="Run whose mesh and points from depth to export (default: the only run)."),
    resolution: int = typer.Option(256, "--mesh-resolution", min=8, help="Marching-cubes lattice points along each axis."),
    device: str = typer.Option("auto", "--device", metavar=DEVICE_METAVAR, help="auto, cpu, cuda, mps."),
    force: bool = typer.Option(False, "--force", help="Write the exports again even if they are up to date."),
) -> None:
    """Write exports/ for other tools: the sparse points (sparse_pc.ply), a nerfstudio transforms.json that names them, an undistorted PINHOLE COLMAP folder (3D Gaussian Splatting), an instant-ngp transforms.json; and from a trained run exports/RUN/mesh.ply (marching cubes over its density) and exports/RUN/depth_points.ply."""
    from nerfpipe.stages import export as stage
    from nerfpipe.stages.results import load_result
    from nerfpipe.stages.runs import run_names

    scene = _one_scene(scene_arg, scene_opt)
    trained = run is not None or bool(run_names(scene))
    if load_result(scene, "poses") is not None or not trained:
        res = stage.run(stage.ExportParams(scene=scene, force=force), RichReporter())
        r = res.value
        state = "up to date" if not res.ran else f"{res.seconds:.1f} s"
        CONSOLE.print(f"export ({state}): {r.points} points and {r.frames} cameras in {scene / r.folder} "
                      f"(sparse_pc.ply, nerfstudio/, colmap/, instant-ngp/ with aabb_scale {r.aabb_scale}).")
    if trained:
        res = stage.run_field(stage.FieldExportParams(scene=scene, run=run, resolution=resolution, device=_device(device),
                                                      force=force), RichReporter())
        r = res.value
        state = "up to date" if not res.ran else f"{res.seconds:.1f} s"
        mesh = (f"a mesh of {r.mesh['vertices']} vertices and {r.mesh['faces']} faces"
                if r.mesh else "no mesh (no surface)")
        CONSOLE.print(f"export {r.run} ({state}): {mesh} and {r.depth_points['points']} points from the depth "
                      f"of {r.depth_points['views']} training views in {scene / r.folder}.")


@app.command(name="all")
@user_errors
def all_(
    source: Path = typer.Argument(..., help="Folder with the photos (loose or in photos/), videos, or one video file."),
    scene: Optional[Path] = typer.Option(None, "--scene", "-s", help="Scene folder for all outputs (default: the photos' folder)."),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help="Recipe name or path (default: fast, else llff)."),
    sets: List[str] = typer.Option([], "--set", help="Override one recipe value: --set training.batch_rays=2048."),
    iters: Optional[int] = typer.Option(None, "--iters", min=1, help="Training steps."),
    minutes: Optional[float] = typer.Option(None, "--minutes", callback=_minutes, help="Also stop training after this many minutes; 0: no limit."),
    factor: Optional[int] = typer.Option(None, "--factor", min=1, help="Train on photos downsampled by FACTOR (default: about 500 px wide on a CPU)."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Frames of the video (default 120)."),
    device: str = typer.Option("auto", "--device", metavar=DEVICE_METAVAR, help="auto (cuda, then mps, then cpu), cpu, cuda, mps."),
    tf32: bool = typer.Option(False, "--tf32", help="On an NVIDIA GPU, matrix products in TF32 while training (faster; default fp32)."),
    scene_type: Optional[SceneChoice] = typer.Option(None, "--scene-type", help="forward, arc or 360 (default: decided from the cameras)."),
    masks: Optional[Path] = typer.Option(None, "--masks", help="Folder of object masks, one per photo named by its stem (white = object): SfM and training see only the objects, cut out on white."),
    keep_background: bool = typer.Option(False, "--keep-background", help="With --masks: train on the whole photos (SfM still sees only the objects)."),
) -> None:
    """Photos -> video: ingest, poses, train and render, each one cached (a second run only says so)."""
    from nerfpipe.stages import pipeline

    overrides = _train_overrides(sets, iters, minutes, None, None, None, None)
    params = pipeline.AllParams(source=source, scene=scene, recipe=recipe, overrides=overrides, factor=factor,
                                frames=frames, device=_device(device), tf32=tf32, scene_type=scene_type, masks=masks,
                                keep_background=keep_background)
    lines = pipeline.run(params, RichReporter())
    table = Table(show_header=True, header_style="bold")
    for column in ("stage", "", "time", "result"):
        table.add_column(column)
    for line in lines:
        table.add_row(line.stage, "ran" if line.ran else "up to date", f"{line.seconds:.1f} s", line.figure)
    CONSOLE.print(table)
    if any(line.poor for line in lines):
        from nerfpipe.stages.train import POOR_EXIT_CODE

        raise typer.Exit(POOR_EXIT_CODE)


@app.command(name="compare-poses")
@user_errors
def compare_poses(
    poses_a: Path = typer.Argument(..., metavar="A", help="poses_bounds.npy to check."),
    poses_b: Path = typer.Argument(..., metavar="B", help="Reference poses_bounds.npy (same images, same order)."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Compare two LLFF poses_bounds.npy files after a similarity alignment of the camera centres."""
    import json

    from nerfpipe.cameras.formats import read_poses_bounds
    from nerfpipe.cameras.similarity import compare_cameras

    loaded = []
    for path in (poses_a, poses_b):
        try:
            loaded.append(read_poses_bounds(path))
        except (OSError, ValueError) as e:
            raise NerfpipeError(f"{path} cannot be read as an LLFF poses_bounds.npy ({e}): pass such a file.") from None
    (pa, ba), (pb, bb) = loaded
    if pa.shape[0] != pb.shape[0] or pa.shape[0] < 3:
        raise NerfpipeError(
            f"{poses_a} has {pa.shape[0]} cameras and {poses_b} has {pb.shape[0]}: compare two files of the same "
            "3 or more images, in the same order."
        )
    c = compare_cameras(pa, pb, ba, bb)
    if as_json:
        CONSOLE.print(json.dumps(c.to_json(), indent=1))
        return
    table = Table(show_header=True, header_style="bold")
    table.add_column("figure")
    table.add_column("mean", justify="right")
    table.add_column("max", justify="right")
    table.add_row("camera centre error (of the camera spread)", f"{c.centre_error_mean:.2%}", f"{c.centre_error_max:.2%}")
    table.add_row("rotation error, best global rotation", f"{c.rotation_error_mean_deg:.3f} deg", f"{c.rotation_error_max_deg:.3f} deg")
    table.add_row("rotation error, rotation of the centre alignment", f"{c.rotation_error_sim3_mean_deg:.3f} deg", "")
    table.add_row("focal error", f"{c.focal_error:.2%}", "")
    table.add_row("near error (after scale)", f"{c.near_error_mean:.2%}", "")
    table.add_row("far error (after scale)", f"{c.far_error_mean:.2%}", "")
    CONSOLE.print(table)
    CONSOLE.print(f"{c.cameras} cameras; scale A -> B {c.scale:.4g}; camera spread of B {c.spread:.4g} (RMS distance from their mean).")


@app.command()
@user_errors
def convert(
    src: Path = typer.Argument(..., help="poses_bounds.npy (LLFF) or transforms.json (nerfstudio / instant-ngp) to read."),
    dst: Path = typer.Argument(..., help="File to write; its suffix chooses the format: .json or .npy."),
    images: Optional[Path] = typer.Option(None, "--images", help="poses_bounds.npy -> transforms.json: folder of the photos its rows belong to (default: the poses manifest, else images/ beside SRC)."),
    drop_missing: bool = typer.Option(False, "--drop-missing", help="Leave out the frames of a transforms.json whose image is missing (default: stop)."),
    force: bool = typer.Option(False, "--force", help="Overwrite DST if it exists."),
) -> None:
    """Convert cameras between poses_bounds.npy and transforms.json (exact both ways for plain pinhole cameras)."""
    from nerfpipe.stages import convert as stage

    r = stage.run(stage.ConvertParams(src=src, dst=dst, images=images, drop_missing=drop_missing, force=force), RichReporter())
    CONSOLE.print(f"convert ({r.conversion}): {r.frames} cameras written to {r.dst}.")


def main() -> None:
    # Libraries' own warnings (Pillow on odd EXIF, numpy on empty slices, torch notes) are not for the
    # user of a command: what matters is said in nerfpipe's sentences. PYTHONWARNINGS brings them back.
    if not sys.warnoptions:
        warnings.simplefilter("ignore")
    app(prog_name="nerfpipe")


if __name__ == "__main__":
    main()
