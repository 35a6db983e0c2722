"""The train stage (``nerfpipe train``): a scene folder -> a trained run, evaluated when it finishes.

``runs/<run>/`` holds the resolved recipe (``recipe.toml``), the dataset's cameras, normalisation and
scene type (``dataset.json``), checkpoints, ``metrics.jsonl`` and event files. Which scene folders are
read, and what the cache depends on for each: :mod:`nerfpipe.stages.sources`; the held-out evaluation
that follows: :mod:`nerfpipe.stages.evaluation`.

The stage is ``train-<run>`` with ``staged=False``: training writes into ``runs/<run>/`` as it
goes and resumes from the newest checkpoint when run again (``--fresh`` starts over); the manifest,
written last, marks a finished run, and a finished run with the same inputs and recipe is up to
date. The manifest's result records the camera normalisation (scale, recenter and spherify
matrices) so that the render stage maps its cameras the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from nerfpipe import scene as scene_layout
from nerfpipe.cameras.scene_type import SceneKind, classify
from nerfpipe.cache import StageResult, StageSpec, hash_inputs, load_manifest, run_stage
from nerfpipe.device import pick_device
from nerfpipe.errors import NerfpipeError
from nerfpipe.io import write_json_atomic
from nerfpipe.nerf import trainer as trainer_mod
from nerfpipe.nerf.interface import SceneBox
from nerfpipe.nerf.registry import build_model
from nerfpipe.photos import first_size
from nerfpipe.progress import Reporter
from nerfpipe.recipes import Recipe, default_recipe_name, dump_recipe, has_override, load_recipe, recipe_sets
from nerfpipe.stages.evaluation import EvalParams, is_poor, run_eval, say_verdict
from nerfpipe.stages.results import TrainResult
from nerfpipe.stages.runs import DATASET_FILE, RECIPE_FILE, read_json, run_dir, set_aside
from nerfpipe.stages.sources import Source, detect_source, load_scene, object_on_white, scene_cameras

VERSION = "1"
STATE_FILE = "state.json"
TARGET_LONG_SIDE_CPU = 500
"""Training images of about this many pixels on the long side on a CPU (fern: 496x368)."""
TARGET_LONG_SIDE_GPU = 1000
"""... and on a GPU (fern: 1008x756, the published tables' size)."""


def target_long_side(device: torch.device) -> int:
    """The long side, in pixels, of the training images to aim for on ``device``."""
    return TARGET_LONG_SIDE_CPU if device.type == "cpu" else TARGET_LONG_SIDE_GPU
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


@dataclass
class TrainOutcome:
    train: StageResult
    eval: StageResult | None


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
        kind, why = scene_type, "as asked"
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
                  reporter: Reporter, scene_box: SceneBox | None = None) -> Path | None:
    """The checkpoint to resume from, None to start over, or an error.

    Finished work is never deleted unasked: a run folder that cannot be resumed (its state.json is
    unreadable, or the images, the cameras or the scene box changed) is moved aside to
    ``runs/<run>.old-<n>/`` and named in a warning; only ``--fresh`` deletes it. A damaged newest checkpoint gives way to an older good
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
    trained_box = (read_json(folder / DATASET_FILE) or {}).get("scene_box")
    if scene_box is not None and trained_box is not None and SceneBox.from_dict(trained_box) != scene_box:
        aside = set_aside(folder)  # its grids cover another box: the weights do not fit this one
        reporter.warn(f"The scene box changed since {folder} was trained (nerfpipe now carves a Blender scene's box "
                      f"around the object), so its weights do not fit: moved it to {aside} and started that run over.")
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


def ingested_factor(scene: Path, long_side: int) -> int | None:
    """Of the scene's downsampled photo folders (``images_<k>/``), the factor k whose photos' long side
    is nearest ``long_side`` (the larger photos on a tie); None when there is none to read. A recipe
    that does not name a factor trains on it: ingest keeps 4 and 8 of a phone's 4032-pixel photos (8
    gives 504 pixels), ``nerfpipe all`` adds the factor for photos of other sizes, and the recipes'
    default of 8 would make 112x80 pixels of the example's 1008x756 photos."""
    sizes = {}
    for folder in Path(scene).glob(f"{scene_layout.IMAGES}_*"):
        k = folder.name.removeprefix(f"{scene_layout.IMAGES}_")
        if not k.isdigit() or int(k) < 1 or not folder.is_dir():
            continue
        size = first_size(p for p in sorted(folder.iterdir()) if p.is_file())
        if size is not None:
            sizes[int(k)] = max(size)
    if not sizes:
        return None
    return min(sizes, key=lambda k: (abs(sizes[k] - long_side), k))


def run(params: TrainParams, reporter: Reporter | None = None) -> TrainOutcome:
    """Train (or resume, or find up to date) ``runs/<run>``, then evaluate unless ``params.evaluate`` is False."""
    reporter = reporter or Reporter()
    scene = Path(params.scene)
    recipe_name = params.recipe or default_recipe_name()
    recipe = load_recipe(recipe_name, list(params.overrides))
    device = pick_device(params.device)
    if not has_override(params.overrides, "data.factor") and not recipe_sets(recipe_name, "data.factor"):
        target = target_long_side(device)
        factor = ingested_factor(scene, target)
        if factor is not None and factor != recipe.data.factor:
            recipe = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, factor=factor))
            reporter.info(f"Training on {scene_layout.images_dir_name(factor)}/, the ingested size nearest {target} pixels "
                          f"on the long side on this {device.type.upper()} (--factor K for images_K/).")
    source = detect_source(scene, recipe, reporter)
    scene_kind, kind_data = scene_type_data(scene, source, params.overrides, params.scene_type, reporter)
    recipe = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, **kind_data))
    run_name = params.run or recipe.name
    if not run_name or "/" in run_name or run_name.startswith("."):
        raise NerfpipeError(f"--run {run_name!r} is not a usable folder name: use letters, digits, - and _.")
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
        resume = _resume_point(folder, recipe, data_key, params, device, reporter, data.scene_box)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RECIPE_FILE).write_text(dump_recipe(recipe))
        meta = {**data.meta(), "scene_type": scene_kind}
        write_json_atomic(folder / DATASET_FILE, meta)
        write_json_atomic(folder / STATE_FILE, {"data_key": data_key, "recipe": recipe.to_dict(), "model": recipe.model})
        torch.manual_seed(recipe.training.seed)  # initial weights
        model = build_model(recipe.model, recipe.model_config, data.scene_box)
        if data.hull is not None:
            model.use_visual_hull(data.hull.cells, data.hull.lo, data.hull.hi)
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
        say_verdict(evaluated.value.verdict, reporter, good_too=True)
    return TrainOutcome(result, evaluated)


POOR_EXIT_CODE = 3
"""Exit code of `nerfpipe train` / `all` when the verdict is 'poor': everything is written (checkpoints,
metrics.json, the video), and a script or a shell sees that the result is not to be trusted."""


def poor_result(outcome: TrainOutcome) -> bool:
    """True when the held-out evaluation's verdict is 'poor' (see :func:`verdict`)."""
    return outcome.eval is not None and is_poor(outcome.eval.value.verdict)


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


