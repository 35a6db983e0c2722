"""The run folders of ``runs/``: naming, finding, setting aside, and loading a trained run's model.

A run is ``runs/<run>/`` holding ``recipe.toml`` (the resolved recipe), ``dataset.json`` (the cameras and the
normalisation it was trained in) and checkpoints. Folders set aside (``runs/<run>.old-<n>/``) are kept for
the user and never read as runs. The train stage writes runs; eval, render and export read them from here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from nerfpipe import scene as scene_layout
from nerfpipe.errors import NerfpipeError
from nerfpipe.nerf import trainer as trainer_mod
from nerfpipe.nerf.interface import Model, SceneBox
from nerfpipe.nerf.registry import build_model
from nerfpipe.progress import Reporter
from nerfpipe.recipes import Recipe, load_recipe

RECIPE_FILE = "recipe.toml"
DATASET_FILE = "dataset.json"


def run_dir(scene: Path, run: str) -> Path:
    return Path(scene) / scene_layout.RUNS / run

OLD_RUN = re.compile(r"\.old-\d+$")
"""Run folders moved aside (``runs/<run>.old-<n>``): kept for the user, never read as runs."""


def set_aside(folder: Path) -> Path:
    """Move a run folder that cannot be trusted to ``<folder>.old-<n>`` (the first free n); return where."""
    n = 1
    while (aside := folder.with_name(f"{folder.name}.old-{n}")).exists():
        n += 1
    folder.rename(aside)
    return aside


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None

def run_names(scene: Path) -> list[str]:
    """The runs in ``runs/`` (folders with a recipe), sorted; runs set aside (``<run>.old-<n>``) are not."""
    runs_root = Path(scene) / scene_layout.RUNS
    if not runs_root.is_dir():
        return []
    return sorted(p.name for p in runs_root.iterdir() if (p / RECIPE_FILE).exists() and not OLD_RUN.search(p.name))


def find_run(scene: Path, run: str | None) -> str:
    runs_root = Path(scene) / scene_layout.RUNS
    names = run_names(scene)
    if run:
        if run not in names:
            known = f" (runs there: {', '.join(names)})" if names else ""
            raise NerfpipeError(f"There is no run {run!r} in {runs_root}{known}: train it with "
                                f"`nerfpipe train {scene} --run {run}`, or choose another with --run.")
        return run
    if len(names) == 1:
        return names[0]
    if not names:
        raise NerfpipeError(f"{scene} has no trained run: run `nerfpipe train {scene}` first.")
    raise NerfpipeError(f"{scene} has several runs ({', '.join(names)}): choose one with --run NAME.")


def load_run(scene: Path, run_name: str | None, device: torch.device | str = "cpu",
             reporter: Reporter | None = None) -> tuple[Model, Recipe, dict]:
    """The trained model of ``runs/<run>`` (newest checkpoint, eval mode), its recipe and its dataset meta.

    dataset meta (``dataset.json``): height, width, focal, near, far, ndc, c2w (N, 3, 4) and bounds
    (N, 2) in the normalised world, i_train/i_test, the normalisation steps and the scene box; see
    :meth:`nerfpipe.datasets.base.SceneData.meta` and :func:`nerfpipe.datasets.base.make_rays`.
    """
    run_name = find_run(scene, run_name)
    folder = run_dir(scene, run_name)
    recipe = load_recipe(str(folder / RECIPE_FILE))  # find_run named a run that has one
    meta = read_json(folder / DATASET_FILE)
    if meta is None or not isinstance(meta.get("scene_box"), dict):
        raise NerfpipeError(f"{folder / DATASET_FILE} is missing or unreadable: run `nerfpipe train --fresh` to train "
                            "the run again.")
    try:
        found = trainer_mod.usable_checkpoint(folder, device, reporter=reporter)
    except trainer_mod.DamagedCheckpoint as e:
        raise NerfpipeError(f"{e.sentence[:-1]}, and {folder} has no older checkpoint that loads: run `nerfpipe train "
                            "--fresh` to train the run again.") from None
    if found is None:
        raise NerfpipeError(f"{folder} has no checkpoint yet: run `nerfpipe train` again to resume it.")
    path, ckpt = found
    model = build_model(recipe.model, recipe.model_config, SceneBox.from_dict(meta["scene_box"]))
    try:
        trainer_mod.restore(model, ckpt, path)
    except trainer_mod.DamagedCheckpoint as e:
        raise NerfpipeError(f"{e.sentence[:-1]}: run `nerfpipe train --fresh` to train the run again.") from None
    model.to(device).eval()
    meta = {**meta, "step": int(ckpt["step"]), "checkpoint": path.name}
    return model, recipe, meta
