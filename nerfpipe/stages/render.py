"""The render stage: a trained run -> ``renders/<run>/<path>.mp4`` and ``<path>_depth.mp4``, named
after the camera path (``spiral``, ``circle``, ``arc`` or ``turntable``).

The camera path is built in the normalised world the model was trained in (the run's
``dataset.json``): the LLFF spiral for forward-facing (NDC) scenes, a circle at the cameras' mean
height for 360-degree captures, an arc along the covered azimuths and back for a partial sweep, and
the paper's turntable for Blender scenes (:mod:`nerfpipe.cameras.paths`).
Frames are rendered in memory-bounded chunks and encoded as H.264 yuv420p through imageio-ffmpeg.
The depth video maps one depth range for the whole clip to a colour map, near = bright.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch

from nerfpipe import scene as scene_layout
from nerfpipe.cache import StageResult, StageSpec, load_manifest, run_stage
from nerfpipe.cameras import paths
from nerfpipe.cameras.scene_type import classify
from nerfpipe.datasets.base import make_rays
from nerfpipe.errors import NerfpipeError
from nerfpipe.nerf.chunking import render_image
from nerfpipe.device import pick_device
from nerfpipe.progress import Reporter
from nerfpipe.stages.results import RenderResult
from nerfpipe.stages.runs import load_run
from nerfpipe.video import VideoWriter, colorize_depth, depth_range, to_uint8

VERSION = "3"
"""2: rays that hit nothing are far (dark) in the depth video; the path follows the run's recorded scene type;
3: circles and arcs follow the band of cameras (``paths.Band``) instead of their mean height and distance."""
DEFAULT_FPS = 30
FRAMES_DIR = "frames"


EMPTY_OPACITY = 0.5
"""A ray whose accumulated opacity stays under this hit nothing (the white around an object on white): its
depth is left out of the depth range and drawn as far (dark), not as the 0 its weights sum to."""


def video_names(kind: str) -> tuple[str, str]:
    """(colour video, depth video) file names of a camera path of this kind."""
    return f"{kind}.mp4", f"{kind}_depth.mp4"


@dataclass(frozen=True)
class RenderParams:
    scene: Path = Path(".")
    run: str | None = None
    """Run to render (runs/<run>/); default: the run that finished training last."""
    factor: float | None = None
    """Render at the full-resolution size divided by this; default: the run's training factor."""
    frames: int | None = None
    """Frames of the path; default: 120 (spiral, circle) or 40 (Blender turntable)."""
    fps: int = DEFAULT_FPS
    frames_dir: bool = False
    """Also keep every frame as PNG in renders/<run>/frames/."""
    device: str = "auto"
    force: bool = False


def latest_run(scene: Path) -> str:
    """The run whose training finished last (by its train manifest)."""
    runs = []
    root = Path(scene) / scene_layout.RUNS
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        manifest = load_manifest(scene, f"train-{folder.name}")
        if manifest is not None:
            runs.append((manifest.get("finished_at", ""), folder.name))
    if not runs:
        raise NerfpipeError(f"{scene} has no finished training run: run `nerfpipe train` there first.")
    return max(runs)[1]


def training_factor(meta: dict) -> float:
    """The factor the run's images were downsampled by, relative to the full-resolution photos."""
    source = meta.get("source", {})
    if "factor" in source:
        return float(source["factor"])
    return 2.0 if source.get("half_res") else 1.0


def camera_path(meta: dict, n_frames: int | None) -> tuple[str, np.ndarray]:
    """(path kind, (frames, 3, 4) c2w_gl) for the run's scene: turntable (Blender), spiral (NDC,
    forward-facing), circle (360-degree capture) or arc (a partial sweep, along the covered arc)."""
    c2w = np.asarray(meta["c2w"], dtype=np.float64)
    if meta["kind"] == "blender":
        return "turntable", paths.blender_path(n_frames or paths.BLENDER_FRAMES)
    if meta["ndc"]:
        bounds = np.asarray(meta["bounds"], dtype=np.float64)
        return "spiral", paths.spiral_path(c2w, bounds, n_frames or paths.SPIRAL_FRAMES)
    kind = meta.get("scene_type") or classify(c2w).kind  # as decided (or asked) at training; older runs: again
    if kind == "360":
        return "circle", paths.circle_path(c2w, n_frames or paths.CIRCLE_FRAMES)
    return "arc", paths.arc_path(c2w, n_frames or paths.CIRCLE_FRAMES)


def render_frames(model, meta: dict, path: np.ndarray, height: int, width: int, focal: float, reporter: Reporter,
                  on_frame) -> None:
    """Render each (3, 4) pose of ``path``; on_frame(index, rgb (H, W, 3) float, depth (H, W) float, NaN where
    the ray hit nothing)."""
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    x, y = x.reshape(-1).float(), y.reshape(-1).float()
    with reporter.task("render", total=len(path), unit="frames") as task, torch.inference_mode():
        for i, c2w in enumerate(path):
            rays = make_rays(torch.from_numpy(c2w).float(), x, y, height, width, focal, ndc=meta["ndc"],
                             near=meta["near"], far=meta["far"])
            out = render_image(model, rays)
            # the depth of what the ray hit (the weights' mean depth); nothing there: NaN, drawn as far
            depth = torch.where(out.acc >= EMPTY_OPACITY, out.depth / out.acc.clamp_min(EMPTY_OPACITY), torch.nan)
            on_frame(i, out.rgb.reshape(height, width, 3).numpy(), depth.reshape(height, width).numpy())
            task.advance(1)


def run(params: RenderParams, reporter: Reporter | None = None) -> StageResult:
    """Render the run's camera path to renders/<run>/ (cached as stage ``render-<run>``)."""
    reporter = reporter or Reporter()
    scene = Path(params.scene)
    run_name = params.run or latest_run(scene)
    if params.frames is not None and params.frames < 1:
        raise NerfpipeError(f"--frames {params.frames} renders nothing: use 1 or more (120 makes the paper's spiral).")
    if params.factor is not None and params.factor <= 0:
        raise NerfpipeError(f"--factor {params.factor} is not a size: use a number above 0, such as 4 or 8.")
    if params.fps < 1:
        raise NerfpipeError(f"--fps {params.fps} is not a frame rate: use 1 or more, such as 30.")
    rel = f"{scene_layout.RENDERS}/{run_name}"
    spec = StageSpec(
        name=f"render-{run_name}",
        version=VERSION,
        params={"factor": params.factor, "frames": params.frames, "fps": params.fps, "frames_dir": params.frames_dir},
        upstream=[f"train-{run_name}"],
        outputs=[rel],
    )

    def body(out: Path) -> dict:
        device = pick_device(params.device)
        model, _recipe, meta = load_run(scene, run_name, device, reporter)
        scale = training_factor(meta) / (params.factor or training_factor(meta))
        height, width = max(1, round(meta["height"] * scale)), max(1, round(meta["width"] * scale))
        focal = meta["focal"] * scale
        kind, path = camera_path(meta, params.frames)
        video_name, depth_name = video_names(kind)
        folder = out / rel
        folder.mkdir(parents=True)
        if params.frames_dir:
            (folder / FRAMES_DIR).mkdir()
        depths: list[np.ndarray] = []
        t0 = time.perf_counter()
        with VideoWriter(folder / video_name, fps=params.fps) as video:

            def on_frame(i: int, rgb: np.ndarray, depth: np.ndarray) -> None:
                frame = to_uint8(rgb)
                video.write(frame)
                depths.append(depth.astype(np.float32))
                if params.frames_dir:
                    imageio.imwrite(folder / FRAMES_DIR / f"{i:04d}.png", frame)

            render_frames(model, meta, path, height, width, focal, reporter, on_frame)
        seconds = time.perf_counter() - t0
        near, far = depth_range(depths)
        with VideoWriter(folder / depth_name, fps=params.fps) as video:
            for depth in depths:
                video.write(colorize_depth(depth, near, far))
        (folder / "path.json").write_text(json.dumps({"kind": kind, "c2w_gl": path.round(8).tolist()}))
        return {
            "run": run_name,
            "video": f"{rel}/{video_name}",
            "depth_video": f"{rel}/{depth_name}",
            "path": kind,
            "frames": len(path),
            "size": [width, height],
            "fps": params.fps,
            "checkpoint_step": meta["step"],
            "device": str(device),
            "seconds_per_frame": round(seconds / len(path), 3),
        }

    return run_stage(scene, spec, body, force=params.force, reporter=reporter, result_type=RenderResult)
