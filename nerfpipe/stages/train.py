"""The train stage (``nerfpipe train``) and its evaluation (``nerfpipe eval``).

Train: a scene folder -> ``runs/<run>/`` with the resolved recipe (``recipe.toml``), the dataset's
cameras and normalisation (``dataset.json``), checkpoints, ``metrics.jsonl`` and event files.
Four kinds of scene folder are read:

| folder | detected by | cache inputs |
| --- | --- | --- |
| a nerfpipe scene | ``.nerfpipe/poses.json`` | upstream stage ``poses`` (its images, in its order; when its SfM camera has lens distortion, SIMPLE_RADIAL k1 != 0, the images are undistorted by stage ``undistort-<k>`` from ``images/`` and its transforms.json) |
| your own poses (nerfstudio / instant-ngp) | ``transforms.json`` | it and the images it names (prepared by stage ``undistort-<k>``) |
| a published LLFF scene | ``poses_bounds.npy`` + ``images_<k>/`` | those files |
| a Blender synthetic scene | ``transforms_train.json`` | the transforms files and the images they name |

The stage is ``train-<run>`` with ``staged=False``: training writes into ``runs/<run>/`` as it
goes and resumes from the newest checkpoint when run again (``--fresh`` starts over); the manifest,
written last, marks a finished run, and a finished run with the same inputs and recipe is up to
date. The manifest's result records the camera normalisation (scale, recenter and spherify
matrices) so that the render stage maps its cameras the same way.

Eval (``eval-<run>``, a staged stage downstream of ``train-<run>``) renders the held-out views into
``runs/<run>/test/`` and writes ``runs/<run>/metrics.json`` (per-view and mean PSNR, SSIM and LPIPS,
AlexNet v0.1, as the papers report them). For a nerfpipe scene also the depth: the sparse points each
held-out photo sees (``colmap/sparse/0``) against the rendered depth at their pixels
(``depth_rel_error_median``, ``depth_within_2pct``, ``depth_within_5pct``, ``depth_points``; see
:func:`view_depth`). Floaters in front of a surface show as depths that are too short.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nerfpipe import colmap
from nerfpipe import scene as scene_layout
from nerfpipe.cameras import gl_from_llff
from nerfpipe.cameras.scene_type import SceneKind, classify
from nerfpipe.cameras.normalize import apply_to_points
from nerfpipe.cameras.rays import NDC_NEAR, camera_pixels, world_point
from nerfpipe.cameras.undistort import is_plain
from nerfpipe.cache import StageResult, StageSpec, hash_inputs, load_manifest, run_stage
from nerfpipe.datasets.base import SceneData
from nerfpipe.datasets.blender import is_blender_folder, load_blender
from nerfpipe.datasets.llff import image_files, load_llff, read_poses_file
from nerfpipe.datasets.transforms import is_transforms_folder, load_transforms, read_frames
from nerfpipe.datasets.transforms import scene_cameras as transforms_cameras
from nerfpipe.errors import NerfpipeError
from nerfpipe.nerf import trainer as trainer_mod
from nerfpipe.nerf.metrics import Lpips, depth_agreement, psnr, ssim
from nerfpipe.nerf.models import Model, build_model, chunk_size, render_image
from nerfpipe.io import write_json_atomic, write_png
from nerfpipe.progress import Reporter
from nerfpipe.recipes import Recipe, default_recipe_name, dump_recipe, has_override, load_recipe
from nerfpipe.stages import colmap_source, undistort
from nerfpipe.stages.runs import DATASET_FILE, RECIPE_FILE, find_run, load_run, read_json, run_dir, set_aside
from nerfpipe.stages.results import (EvalResult, IngestResult, PoseCheck, PosesResult, TrainResult, Verdict,
                                     load_result)

VERSION = "1"
EVAL_VERSION = "4"
"""3: the training views' PSNR and the verdict (metrics.json); 4: the depth figures against the sparse points."""
DEPTH_HIT_OPACITY = 0.5
"""A ray of the depth figure that is less opaque than this hit nothing (as in the depth video)."""
LPIPS_KIND = "AlexNet, linear layers v0.1 (shipped with nerfpipe)"
STATE_FILE = "state.json"
TEST_DIR = "test"
EVAL_METRICS = "metrics.json"
VERDICT_TRAIN_VIEWS = 3
"""Training views rendered whole at eval (evenly spaced): their PSNR is what the held-out PSNR is compared with."""
POOR_GAP_DB = 6.0
"""A held-out PSNR this far under the training views' PSNR means the field fits the training photos but not
the views between them: inconsistent poses (see the verdict in metrics.json and the note of issue 12)."""
RESUMABLE_KEYS = {("training", "iters"), ("training", "minutes"), ("training", "checkpoint_every"), ("training", "log_every")}
"""Recipe values that may change between sessions of one run (everything else needs --fresh)."""


@dataclass(frozen=True)
class TrainParams:
    scene: Path = Path(".")
    """Scene folder (nerfpipe scene, published LLFF scene, or Blender synthetic scene)."""
    recipe: str | None = None
    """Recipe name (recipes/<name>.toml) or path; None: fast if it exists, else llff."""
    overrides: tuple[str, ...] = ()
    """key=value recipe overrides (--set, --iters, ...)."""
    run: str | None = None
    """Run name: runs/<run>/; default: the recipe's name."""
    fresh: bool = False
    """Start over instead of resuming from the newest checkpoint."""
    device: str = "auto"
    """auto (cuda, then mps, then cpu) or a torch device name."""
    evaluate: bool = True
    """Render and score the held-out views when training finishes."""
    scene_type: SceneKind | None = None
    """forward, arc or 360; default: decided from the cameras (photo scenes only; Blender scenes are boxes)."""
    tf32: bool = False
    """CUDA matrix products in TF32 while training (about 1.6x faster for the llff recipe on an H100)."""


@dataclass(frozen=True)
class EvalParams:
    scene: Path = Path(".")
    run: str | None = None
    """Run to evaluate; default: the only run in runs/, else the default recipe's name."""
    device: str = "auto"
    chunk: int | None = None
    """Rays per rendering call; default: from the free memory of the device."""
    force: bool = False


@dataclass
class TrainOutcome:
    train: StageResult
    eval: StageResult | None


@dataclass(frozen=True)
class Source:
    kind: str
    """'nerfpipe', 'transforms' (transforms.json + images), 'llff' (published layout) or 'blender'."""
    upstream: tuple[str, ...]
    inputs: tuple[Path, ...]
    stems: list[str] | None
    undistort: bool = False
    """A nerfpipe scene whose SfM camera has lens distortion: trained on the undistort stage's pinhole images."""




def detect_source(scene: Path, recipe: Recipe, reporter: Reporter | None = None) -> Source:
    """What kind of scene folder this is, and what the train stage's cache depends on."""
    scene = Path(scene)
    scene_layout.require_folder(scene, "The scene folder", "check the path")
    poses: PosesResult | None = load_result(scene, "poses")
    if poses is not None:
        names = poses.images
        if not names:
            raise NerfpipeError(f"The poses manifest of {scene} lists no images: run `nerfpipe poses --scene {scene}` again.")
        return Source("nerfpipe", ("poses",), (), [Path(n).stem for n in names],
                      undistort=recipe.data.undistort and has_distortion(scene))
    if colmap_source.is_colmap_folder(scene):  # sparse/0 + images/: its transforms.json, kept up to date
        colmap_source.run(scene, reporter)
        frames = read_frames(scene / scene_layout.TRANSFORMS)
        return Source("transforms", (colmap_source.STAGE,), tuple(frames.files), None)
    if is_transforms_folder(scene):
        frames = read_frames(scene / scene_layout.TRANSFORMS)
        return Source("transforms", (), (frames.path, *frames.files), None)
    if (scene / scene_layout.POSES_BOUNDS).exists():
        files = image_files(scene, recipe.data.factor, None)
        return Source("llff", (), (scene / scene_layout.POSES_BOUNDS, *files), None)
    if is_blender_folder(scene):
        inputs = []
        for split in ("train", "val", "test"):
            path = scene / f"transforms_{split}.json"
            if path.exists():
                inputs.append(path)
                if split != "val":
                    for frame in json.loads(path.read_text()).get("frames", []):
                        img = scene / frame["file_path"]
                        inputs.append(img if img.suffix else img.with_suffix(".png"))
        missing = [p for p in inputs if not p.exists()]
        if missing:
            raise NerfpipeError(f"{missing[0]} is named in the transforms files but missing: restore it or remove its frame.")
        return Source("blender", (), tuple(inputs), None)
    raise NerfpipeError(
        f"{scene} has no cameras: run `nerfpipe ingest` and `nerfpipe poses` there first "
        "(or point at a folder with transforms.json or poses_bounds.npy, or a Blender scene with transforms_train.json)."
    )


def has_distortion(scene: Path) -> bool:
    """Whether the cameras the poses stage wrote (transforms.json) are not plain pinholes (SIMPLE_RADIAL k1 != 0)."""
    path = Path(scene) / scene_layout.TRANSFORMS
    if not path.is_file():
        return False
    return not all(is_plain(c) for c in read_frames(path).transforms.cameras)


def scene_cameras(scene: Path, source: Source) -> np.ndarray | None:
    """(N, 3, 4) OpenGL camera-to-world of a photo scene's cameras (any world frame); None for a Blender scene."""
    if source.kind in ("nerfpipe", "llff"):
        poses_llff, _ = read_poses_file(Path(scene) / scene_layout.POSES_BOUNDS)
        return gl_from_llff(poses_llff)
    if source.kind == "transforms":
        return transforms_cameras(scene)
    return None


def object_on_white(scene: Path, source: Source) -> bool:
    """A nerfpipe scene whose photos ingest found cut out on white (or on transparency)."""
    if source.kind != "nerfpipe":
        return False
    ingest: IngestResult | None = load_result(scene, "ingest")
    return ingest is not None and ingest.background_kind in ("white", "cut_out")


def scene_type_data(scene: Path, source: Source, overrides: tuple[str, ...], scene_type: SceneKind | None,
                    reporter: Reporter) -> tuple[SceneKind | None, dict[str, bool]]:
    """The capture's kind and the recipe's data values it asks for (``DataConfig`` field -> value): NDC for
    forward-facing, spherify for an arc or a circle; for an object cut out on white also a white background
    and the box of its points.

    The decision is printed with its reason. Nothing is overridden for a Blender scene (a box, kind None),
    or when the user set data.ndc or data.spherify themselves. Arc and 360 train alike (a spherified,
    contracted world); the kind is recorded with the run (dataset.json) and chooses the render path.
    """
    cameras = scene_cameras(scene, source)
    if cameras is None:
        return None, {}
    if scene_type is not None:
        kind, why = scene_type, "as asked with --scene-type"
    else:
        decided = classify(cameras)
        kind, why = decided.kind, decided.reason
    if any(has_override(overrides, key) for key in ("data.ndc", "data.spherify")):
        reporter.info(f"Scene type: {kind} ({why}); the recipe's ndc/spherify as set with --set.")
        return kind, {}
    if kind != "forward" and object_on_white(scene, source):
        reporter.info(f"Scene type: {kind} ({why}); an object cut out on white: white background, the scene box "
                      "around its sparse points.")
        keep = {k: True for k in ("white_bkgd", "object") if not has_override(overrides, f"data.{k}")}
        return kind, {"ndc": False, "spherify": True, **keep}
    reporter.info(f"Scene type: {kind} ({why}).")
    return kind, {"ndc": kind == "forward", "spherify": kind != "forward"}


def sparse_points(scene: Path) -> np.ndarray | None:
    """(P, 3) points of a nerfpipe scene's sparse model (COLMAP's world, the world of poses_bounds.npy), or None."""
    model_dir = Path(scene) / scene_layout.COLMAP / "sparse" / "0"
    if not model_dir.is_dir():
        return None
    try:
        return colmap.read_sparse_model(model_dir).points
    except (RuntimeError, ValueError, OSError):
        raise NerfpipeError(f"{model_dir} cannot be read: run `nerfpipe poses {scene} --force` to redo it.") from None


def load_scene(scene: Path, recipe: Recipe, source: Source, reporter: Reporter | None = None) -> SceneData:
    d = recipe.data
    if source.kind == "blender":
        return load_blender(scene, half_res=d.half_res, white_background=d.white_bkgd)
    if source.kind == "transforms":
        undistort.run(undistort.UndistortParams(scene=scene, factor=d.factor), reporter)
        return load_transforms(scene, factor=d.factor, llffhold=d.llffhold, ndc=d.ndc, spherify=d.spherify,
                               bd_factor=d.bd_factor, white_background=d.white_bkgd)
    points = sparse_points(scene) if d.object and source.kind == "nerfpipe" else None
    prepared = undistort.run(undistort.UndistortParams(scene=scene, factor=d.factor), reporter).result if source.undistort else None
    return load_llff(scene, factor=d.factor, llffhold=d.llffhold, ndc=d.ndc, spherify=d.spherify,
                     bd_factor=d.bd_factor, white_background=d.white_bkgd, stems=source.stems, object_points=points,
                     prepared=prepared)


def _data_key(scene: Path, source: Source, previous: dict | None) -> str:
    """Identifies the data a run was trained on: upstream fingerprints and input hashes."""
    parts = {name: (load_manifest(scene, name) or {}).get("fingerprint") for name in source.upstream}
    if source.undistort:  # a run trained on the distorted images_<k>/ before starts over
        parts["undistorted"] = True
    hashes = hash_inputs(scene, list(source.inputs), (previous or {}).get("inputs"))
    parts["inputs"] = sorted((k, v[2]) for k, v in hashes.items())
    return hashlib.blake2b(json.dumps(parts, sort_keys=True).encode(), digest_size=12).hexdigest()


def recipe_defaults(recipe: Recipe) -> dict:
    """The default of every key of ``recipe``'s tables, shaped as :meth:`Recipe.to_dict`."""
    blank = dataclasses.replace(recipe, data=type(recipe.data)(), training=type(recipe.training)(),
                                model_config=type(recipe.model_config)())
    return blank.to_dict()


def _recipe_differences(old: dict, new: dict, defaults: dict | None = None) -> list[str]:
    """What changed between two recipes (:meth:`Recipe.to_dict`); a key the old recipe lacks (it was added to
    nerfpipe after that run) counts only when the new value is not the key's default (``defaults``, same shape)."""
    diffs = []
    defaults = defaults or {}
    for table in sorted(set(old) | set(new)):
        a, b = old.get(table), new.get(table)
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                if key not in a and key in defaults.get(table, {}) and b.get(key) == defaults[table][key]:
                    continue
                if a.get(key) != b.get(key) and (table, key) not in RESUMABLE_KEYS:
                    diffs.append(f"{table}.{key} {a.get(key)!r} -> {b.get(key)!r}")
        elif a != b:
            diffs.append(f"{table} {a!r} -> {b!r}")
    return diffs


def _resume_point(folder: Path, recipe: Recipe, data_key: str, params: TrainParams, device: torch.device,
                  reporter: Reporter) -> Path | None:
    """The checkpoint to resume from, None to start over, or an error.

    Finished work is never deleted unasked: a run folder that cannot be resumed (its state.json is
    unreadable, or the images or cameras changed) is moved aside to ``runs/<run>.old-<n>/`` and named
    in a warning; only ``--fresh`` deletes it. A damaged newest checkpoint gives way to an older good
    one (see :func:`nerfpipe.nerf.trainer.usable_checkpoint`).
    """
    if params.fresh or not folder.exists():
        if folder.exists():
            shutil.rmtree(folder)
        return None
    checkpoints = trainer_mod.list_checkpoints(folder)
    if not checkpoints:
        return None  # nothing was finished here: train over it
    state = read_json(folder / STATE_FILE)
    if state is None or not isinstance(state.get("recipe"), dict):
        aside = set_aside(folder)
        reporter.warn(f"{folder / STATE_FILE} is missing or unreadable, so {folder} cannot be resumed: moved it to "
                      f"{aside} (its checkpoints are kept there) and started the run over.")
        return None
    if state.get("data_key") != data_key:
        aside = set_aside(folder)
        reporter.warn(f"The images or cameras changed since {folder} was trained: moved it to {aside} and started "
                      "that run over.")
        return None
    diffs = _recipe_differences(state.get("recipe", {}), recipe.to_dict(), recipe_defaults(recipe))
    if diffs:
        raise NerfpipeError(
            f"{folder} was trained with another recipe ({'; '.join(diffs[:3])}): pass --fresh to start it over, "
            f"or --run NAME to train a new run beside it."
        )
    try:
        found = trainer_mod.usable_checkpoint(folder, device, set_aside=True, reporter=reporter)
    except trainer_mod.DamagedCheckpoint as e:
        raise NerfpipeError(f"{e.sentence[:-1]}, and {folder} has no older checkpoint that loads: pass --fresh to "
                            "start the run over.") from None
    assert found is not None
    newest, _ = found
    done = trainer_mod.checkpoint_step(newest)
    if done > recipe.training.iters:
        raise NerfpipeError(
            f"{folder} already has {done} steps, more than the {recipe.training.iters} asked for: raise --iters, "
            "or pass --fresh to start over."
        )
    reporter.info(f"Resuming {folder} from step {done}.")
    return newest






def run(params: TrainParams, reporter: Reporter | None = None) -> TrainOutcome:
    """Train (or resume, or find up to date) ``runs/<run>``, then evaluate unless ``params.evaluate`` is False."""
    reporter = reporter or Reporter()
    scene = Path(params.scene)
    recipe = load_recipe(params.recipe or default_recipe_name(), list(params.overrides))
    source = detect_source(scene, recipe, reporter)
    scene_kind, kind_data = scene_type_data(scene, source, params.overrides, params.scene_type, reporter)
    recipe = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, **kind_data))
    run_name = params.run or recipe.name
    if not run_name or "/" in run_name or run_name.startswith("."):
        raise NerfpipeError(f"--run {run_name!r} is not a usable folder name: use letters, digits, - and _.")
    device = trainer_mod.pick_device(params.device)
    folder = run_dir(scene, run_name)
    rel = folder.relative_to(scene).as_posix()
    spec = StageSpec(
        name=f"train-{run_name}",
        version=VERSION,
        params={"recipe": recipe.to_dict(), "source": source.kind, "scene_type": scene_kind},
        inputs=source.inputs,
        upstream=source.upstream,
        outputs=[rel],
        staged=False,
    )

    previous = load_manifest(scene, spec.name)

    def body(out: Path) -> dict:
        t_load = time.perf_counter()
        data = load_scene(scene, recipe, source, reporter)
        load_seconds = time.perf_counter() - t_load
        data_key = _data_key(scene, source, previous)
        resume = _resume_point(folder, recipe, data_key, params, device, reporter)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RECIPE_FILE).write_text(dump_recipe(recipe))
        meta = {**data.meta(), "scene_type": scene_kind}
        write_json_atomic(folder / DATASET_FILE, meta)
        write_json_atomic(folder / STATE_FILE, {"data_key": data_key, "recipe": recipe.to_dict(), "model": recipe.model})
        torch.manual_seed(recipe.training.seed)  # initial weights
        model = build_model(recipe.model, recipe.model_config, data.scene_box)
        summary = trainer_mod.train(model, data, recipe.training, folder, model_name=recipe.model, device=device,
                                    reporter=reporter, resume_from=resume, tf32=params.tf32)
        return {
            "run": run_name,
            "run_dir": rel,
            "model": recipe.model,
            "recipe": recipe.name,
            "source": source.kind,
            "device": str(device),
            "tf32": params.tf32 and device.type == "cuda",
            "steps": summary.step,
            "stopped": summary.stopped,
            "steps_this_session": summary.steps_this_session,
            "train_seconds": round(summary.seconds, 3),
            "s_per_it": round(summary.seconds / max(1, summary.steps_this_session), 4),
            "load_seconds": round(load_seconds, 3),
            "last": summary.last,
            "images": {"train": len(data.i_train), "test": len(data.i_test), "size": [data.width, data.height]},
            "focal": data.focal,
            "scene_type": scene_kind,
            "normalization": meta["normalization"],
            "scene_box": meta["scene_box"],
            "checkpoint": trainer_mod.list_checkpoints(folder)[-1].relative_to(scene).as_posix(),
        }

    force = params.fresh or (previous is not None and not _newest_checkpoint_loads(folder))
    result = run_stage(scene, spec, body, force=force, reporter=reporter, result_type=TrainResult)
    evaluated = None
    if params.evaluate:
        evaluated = run_eval(EvalParams(scene=scene, run=run_name, device=params.device), reporter)
        said: Verdict | None = evaluated.value.verdict
        if said:
            (reporter.info if said.result == "good" else reporter.warn)(said.sentence)
        checked = pose_check_of(scene, source)
        if said and said.result != "poor" and checked and checked.result != "consistent":
            reporter.warn(f"But the pose check after SfM found the poses {checked.result.replace('_', ' ')}: the "
                          "held-out views may not be among the doubtful cameras, so look at report.png before "
                          "trusting the result.")
    return TrainOutcome(result, evaluated)


def pose_check_of(scene: Path, source: Source) -> PoseCheck | None:
    """The poses stage's pose check of a nerfpipe scene (None for other scenes, or before the check existed)."""
    if source.kind != "nerfpipe":
        return None
    posed: PosesResult | None = load_result(scene, "poses")
    return posed.pose_check if posed is not None else None


POOR_EXIT_CODE = 3
"""Exit code of `nerfpipe train` / `all` when the verdict is 'poor': everything is written (checkpoints,
metrics.json, the video), and a script or a shell sees that the result is not to be trusted."""


def poor_result(outcome: TrainOutcome) -> bool:
    """True when the held-out evaluation's verdict is 'poor' (see :func:`verdict`)."""
    said = outcome.eval.value.verdict if outcome.eval is not None else None
    return said is not None and said.result == "poor"


def _newest_checkpoint_loads(folder: Path) -> bool:
    """False when a finished run's newest checkpoint is damaged: then training runs again (and goes back
    to the newest checkpoint that loads) instead of calling the run up to date."""
    checkpoints = trainer_mod.list_checkpoints(folder)
    if not checkpoints:
        return True  # the cache sees the missing run itself
    try:
        trainer_mod.load_checkpoint(checkpoints[-1])
    except trainer_mod.DamagedCheckpoint:
        return False
    return True


def run_eval(params: EvalParams, reporter: Reporter | None = None) -> StageResult:
    """Render the held-out views of a run and score them (cached as stage ``eval-<run>``)."""
    reporter = reporter or Reporter()
    scene = Path(params.scene)
    run_name = find_run(scene, params.run)
    folder = run_dir(scene, run_name)
    rel = folder.relative_to(scene).as_posix()
    spec = StageSpec(
        name=f"eval-{run_name}",
        version=EVAL_VERSION,
        params={},
        upstream=[f"train-{run_name}"],
        outputs=[f"{rel}/{TEST_DIR}", f"{rel}/{EVAL_METRICS}"],
    )
    device = trainer_mod.pick_device(params.device)

    def body(out: Path) -> dict:
        model, recipe, meta = load_run(scene, run_name, device, reporter)
        source = detect_source(scene, recipe, reporter)
        data = load_scene(scene, recipe, source, reporter)
        truth = sparse_depth_truth(scene, data) if source.kind == "nerfpipe" else {}
        test_dir = out / rel / TEST_DIR
        test_dir.mkdir(parents=True)
        events = trainer_mod.Events(folder)  # held-out renders beside the training curves in TensorBoard
        try:
            result = evaluate(model, data, test_dir, device=device, chunk=params.chunk, reporter=reporter,
                              depth_truth=truth, on_view=lambda name, rgb, target: events.images(
                                  meta["step"], {f"heldout/{name}": torch.cat([rgb, target.to(rgb)], dim=1)}))
        finally:
            events.close()
        result.update({"run": run_name, "step": meta["step"], "checkpoint": meta["checkpoint"]})
        (out / rel / EVAL_METRICS).write_text(json.dumps(result, indent=1))
        return {k: v for k, v in result.items() if k != "views"}

    return run_stage(scene, spec, body, force=params.force, reporter=reporter, result_type=EvalResult)


def sparse_depth_truth(scene: Path, data: SceneData) -> dict[int, np.ndarray]:
    """{held-out view index: (P, 3) the sparse points its photo sees, in the run's normalised world} of a
    nerfpipe scene (the held-out photos are registered, only left out of training); {} without a model."""
    model_dir = Path(scene) / scene_layout.COLMAP / "sparse" / "0"
    posed: PosesResult | None = load_result(scene, "poses")
    if not model_dir.is_dir() or posed is None or not posed.stems:
        return {}
    try:
        sparse = colmap.read_sparse_model(model_dir)
    except (RuntimeError, ValueError, OSError):
        raise NerfpipeError(f"{model_dir} cannot be read: run `nerfpipe poses {scene} --force` to redo it.") from None
    stem_of = dict(zip(posed.images, posed.stems))
    row_of = {stem_of.get(name, Path(name).stem): row for row, name in enumerate(sparse.names)}
    seen: list[list[int]] = [[] for _ in sparse.names]
    for p, rows in enumerate(sparse.point_images):
        for row in rows:
            seen[row].append(p)
    truth = {}
    for i in data.i_test:
        row = row_of.get(Path(data.names[i]).stem)
        if row is None or not seen[row]:
            continue
        points = sparse.points[seen[row]]
        for step in data.steps:
            points = apply_to_points(points, step)
        truth[i] = points
    return truth


def view_depth(model: Model, data: SceneData, index: int, points: np.ndarray, chunk: int | None = None) -> dict:
    """The rendered depth of view ``index`` against the depth of ``points`` (P, 3) (normalised world) in
    its camera: the ray through each point's pixel, depth of what it hit (depth / opacity), both as
    distance along the camera's axis; see :func:`nerfpipe.nerf.metrics.depth_agreement`."""
    c2w = data.c2w[index].double()
    rot, centre = c2w[:3, :3], c2w[:3, 3]
    x, y, depth = camera_pixels((torch.from_numpy(np.asarray(points, dtype=np.float64)) - centre) @ rot,
                                data.height, data.width, data.focal)
    keep = (depth > 0) & (x >= 0) & (x <= data.width - 1) & (y >= 0) & (y <= data.height - 1)
    n = int(keep.sum())
    if n == 0:
        return depth_agreement(torch.zeros(0), torch.zeros(0))
    rays = data.rays(torch.full((n,), index, dtype=torch.long), x[keep].float(), y[keep].float())
    out = render_image(model, rays, chunk)
    hit = (out.acc >= DEPTH_HIT_OPACITY).cpu()
    t = (out.depth / out.acc.clamp_min(1e-6)).cpu()
    pts = (rays.origins + t[:, None] * rays.directions).double()
    if data.ndc:
        pts = world_point(data.height, data.width, data.focal, NDC_NEAR, pts)
    rendered = -((pts - centre) @ rot)[:, 2]
    return depth_agreement(torch.where(hit, rendered, torch.nan), depth[keep])


def evaluate(model: Model, data: SceneData, test_dir: Path, *, device: torch.device, chunk: int | None = None,
             reporter: Reporter | None = None, depth_truth: dict[int, np.ndarray] | None = None, on_view=None) -> dict:
    """Render each held-out view to ``test_dir/<index>_<name>.png`` and score it against the photo;
    with ``depth_truth`` ({view index: (P, 3) points in the normalised world}) also its depth
    (:func:`view_depth`). ``on_view(name, rgb, target)`` (both (H, W, 3) in [0, 1]) gets each view as it is done."""
    reporter = reporter or Reporter()
    lpips = Lpips(device)
    chunk = chunk or chunk_size(model, device)
    views = []
    pixels = data.height * data.width
    t0 = time.perf_counter()
    train_indices = verdict_train_views(data.i_train, data.i_test)
    with reporter.task("eval", total=(len(data.i_test) + len(train_indices)) * pixels, unit="rays") as task:
        for i in data.i_test:
            out = render_image(model, data.image_rays(i), chunk, on_chunk=task.advance)
            rgb = out.rgb.clamp(0.0, 1.0).reshape(data.height, data.width, 3).cpu()
            target = data.images[i]
            name = f"{i:03d}_{Path(data.names[i]).stem}.png"
            write_png(test_dir / name, rgb.numpy())
            if on_view is not None:
                on_view(Path(name).stem, rgb, target)
            view = {"index": i, "name": data.names[i], "file": name, "psnr": round(psnr(rgb, target), 4),
                    "ssim": round(ssim(rgb, target), 5), "lpips": round(lpips(rgb, target), 5)}
            if depth_truth and i in depth_truth:
                view.update(view_depth(model, data, i, depth_truth[i], chunk))
            views.append(view)
        train_views = []
        for i in train_indices:
            out = render_image(model, data.image_rays(i), chunk, on_chunk=task.advance)
            rgb = out.rgb.clamp(0.0, 1.0).reshape(data.height, data.width, 3).cpu()
            train_views.append({"index": i, "name": data.names[i], "psnr": round(psnr(rgb, data.images[i]), 4)})
    seconds = time.perf_counter() - t0
    mean = {k: round(float(np.mean([v[k] for v in views])), 5) for k in ("psnr", "ssim", "lpips") if views and k in views[0]}
    scored = [v for v in views if v.get("depth_points")]
    if scored:  # per view, then the mean of the views (the points summed)
        mean.update({k: round(float(np.mean([v[k] for v in scored])), 5)
                     for k in ("depth_rel_error_median", "depth_within_2pct", "depth_within_5pct")})
        mean["depth_points"] = int(sum(v["depth_points"] for v in scored))
    train_psnr = round(float(np.mean([v["psnr"] for v in train_views])), 4) if train_views else None
    return {
        "views": views,
        "mean": mean,
        "train_views": train_views,
        "train_psnr": train_psnr,
        "verdict": verdict(views, train_psnr),
        "count": len(views),
        "size": [data.width, data.height],
        "lpips": LPIPS_KIND,
        "seconds": round(seconds, 3),
        "s_per_view": round(seconds / max(1, len(views)), 3),
        "chunk": chunk,
    }


def verdict_train_views(i_train: list[int], i_test: list[int]) -> list[int]:
    """The training views whose PSNR the verdict compares with (none without held-out views)."""
    if not i_test or not i_train:
        return []
    step = max(1, len(i_train) // VERDICT_TRAIN_VIEWS)
    return list(i_train[step // 2 :: step][:VERDICT_TRAIN_VIEWS])


def verdict(views: list[dict], train_psnr: float | None) -> dict | None:
    """Is the result to be trusted? Held-out PSNR against the PSNR of training views rendered the same way.

    'poor' when the mean held-out PSNR is POOR_GAP_DB or more under the training views': the field
    reproduces the photos it was trained on and not the views between them, which is what inconsistent
    camera poses give. Views that are that far under on their own are named even when the mean is fine.
    None without held-out views.
    """
    if not views or train_psnr is None:
        return None
    test_psnr = float(np.mean([v["psnr"] for v in views]))
    gap = train_psnr - test_psnr
    worst = sorted(views, key=lambda v: v["psnr"])
    far = [v for v in worst if train_psnr - v["psnr"] >= POOR_GAP_DB]
    named = ", ".join(f"{v['name']} ({v['psnr']:.1f} dB)" for v in (far or worst)[:3])
    if gap >= POOR_GAP_DB:
        result = "poor"
        sentence = (f"The result is poor: held-out views reach {test_psnr:.1f} dB while training views reach "
                    f"{train_psnr:.1f} dB ({gap:.1f} dB apart), so the camera poses are probably inconsistent; the "
                    f"worst held-out views are {named}: look at report.png for cameras out of place, and retake or "
                    "remove the photos it flags.")
    elif far:
        result = "doubtful_views"
        sentence = (f"Some held-out views are far under the training views' {train_psnr:.1f} dB: {named}; their "
                    "cameras may be out of place (see report.png) or the capture does not cover them well.")
    else:
        result = "good"
        sentence = (f"Held-out views reach {test_psnr:.1f} dB, within {max(gap, 0.0):.1f} dB of the training views' "
                    f"{train_psnr:.1f} dB: the poses are consistent.")
    return {"result": result, "gap_db": round(gap, 3), "test_psnr": round(test_psnr, 4), "train_psnr": train_psnr,
            "poor_gap_db": POOR_GAP_DB, "worst_views": [v["name"] for v in (far or worst)[:3]], "sentence": sentence}
