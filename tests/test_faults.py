"""Faults, one test per class: damaged internal files, finished work kept, values checked where they
enter, two runs at once, sentences that say what happened. Files are damaged by the tests, processes
are real (run twice, killed), photos are the fern example's."""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_NERF
from PIL import Image
from typer.testing import CliRunner

from nerfpipe import cache
from nerfpipe.cameras.formats import PinholeCamera, write_transforms
from nerfpipe.cli import app
from nerfpipe.errors import NerfpipeError
from nerfpipe.nerf import trainer
from nerfpipe.progress import RecordingReporter
from nerfpipe.recipes import load_recipe
from nerfpipe.stages import evaluation, ingest, poses
from nerfpipe.stages import runs
from nerfpipe.stages import train as train_stage

REPO = Path(__file__).resolve().parents[1]
FERN_PHOTOS = REPO / "examples" / "fern" / "photos"
RUNNER = CliRunner()
NERFPIPE = [sys.executable, "-m", "nerfpipe"]


def _photos(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True)
    for path in sorted(FERN_PHOTOS.glob("*.JPG"))[:n]:
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def _ingested(root: Path, n: int = 3) -> Path:
    ingest.run(ingest.IngestParams(photos=_photos(root / "photos", n), scene=root, factors=(8,)))
    return root


def _nerfpipe(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*NERFPIPE, *map(str, args)], capture_output=True, text=True, timeout=300, **kw)


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text and "Error:" not in text.replace("error:", ""), text


# --------------------------------------------------------------------------------------------------
# 1. Damaged internal files: one sentence naming the file; an older good checkpoint takes over


def _checkpoint(path: Path, step: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": trainer.CHECKPOINT_FORMAT, "model_name": "nerf", "step": step,
                "model": {"w": torch.full((2,), float(step))}, "optimizer": {}}, path)


def _damage(path: Path, how: str) -> None:
    if how == "random bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif how == "no model":
        torch.save({"step": 20}, path)
    elif how == "foreign pickle":
        path.write_bytes(pickle.dumps(argparse.Namespace(command="rm -rf ~")))


@pytest.mark.parametrize("how", ["random bytes", "truncated", "no model", "foreign pickle"])
def test_a_damaged_checkpoint_is_a_sentence_and_the_older_one_takes_over(tmp_path, how):
    run = tmp_path / "run"
    _checkpoint(run / "checkpoints" / "step_0000010.pt", 10)
    newest = run / "checkpoints" / "step_0000020.pt"
    _checkpoint(newest, 20)
    _damage(newest, how)
    (run / "checkpoints" / "step_abc.pt").write_text("stray")  # not a checkpoint's name: ignored
    (run / "checkpoints" / "notes.txt").write_text("stray")
    assert [p.name for p in trainer.list_checkpoints(run)] == ["step_0000010.pt", "step_0000020.pt"]

    with pytest.raises(trainer.DamagedCheckpoint) as e:
        trainer.load_checkpoint(newest)
    assert str(newest) in e.value.sentence and "weights_only" not in e.value.sentence
    if how == "foreign pickle":
        assert "is not a nerfpipe checkpoint" in e.value.sentence and "was not loaded" in e.value.sentence

    rep = RecordingReporter()
    path, ckpt = trainer.usable_checkpoint(run, reporter=rep)  # reading (render, eval): named, left in place
    assert path.name == "step_0000010.pt" and ckpt["step"] == 10 and newest.exists()
    assert len(rep.warnings) == 1 and "using the older step_0000010.pt" in rep.warnings[0]
    path, _ = trainer.usable_checkpoint(run, set_aside=True, reporter=rep)  # training goes on: set aside
    assert path.name == "step_0000010.pt" and not newest.exists()
    assert (run / "checkpoints" / "step_0000020.pt.damaged").exists() and "renamed it" in rep.warnings[1]
    # with no good checkpoint left, the damage is the sentence
    _damage(run / "checkpoints" / "step_0000010.pt", "truncated")
    with pytest.raises(trainer.DamagedCheckpoint, match="step_0000010.pt"):
        trainer.usable_checkpoint(run)


def test_training_resumes_past_a_damaged_checkpoint_and_sets_aside_an_untrusted_run(tiny_lego):
    def params(iters, run="faults"):
        return train_stage.TrainParams(scene=tiny_lego, recipe="blender", run=run, device="cpu", evaluate=False,
                                       overrides=TINY_NERF + ("half_res=false", f"iters={iters}", "checkpoint_every=10",
                                                              "log_every=5", "precrop_iters=0"))

    run_dir = tiny_lego / "runs" / "faults"
    train_stage.run(params(20), RecordingReporter())
    newest = run_dir / "checkpoints" / "step_0000020.pt"
    older = trainer.load_checkpoint(run_dir / "checkpoints" / "step_0000010.pt")
    # only the newest keeps Adam's moments; the older one keeps its weights (steps 10 and 20 differ)
    assert "state" in trainer.load_checkpoint(newest)["optimizer"] and older["optimizer"] == {}
    new_weights = trainer.load_checkpoint(newest)["model"]
    assert older["model"].keys() == new_weights.keys()
    assert not all(torch.equal(older["model"][k], new_weights[k]) for k in new_weights)
    _damage(newest, "truncated")
    # the finished run is not "up to date" with a damaged newest checkpoint: it trains again from step 10
    rep = RecordingReporter()
    out = train_stage.run(params(20), rep)
    assert out.train.ran and out.train.result["steps"] == 20
    assert any("renamed it step_0000020.pt.damaged and went back to step_0000010.pt" in w for w in rep.warnings)
    assert any("step_0000010.pt holds no optimiser state (only the newest checkpoint keeps it): Adam's moments "
               "start over at step 10." == w for w in rep.warnings), rep.warnings
    assert "Resuming" in " ".join(rep.infos) and (run_dir / "checkpoints" / "step_0000020.pt.damaged").exists()
    assert trainer.load_checkpoint(newest)["step"] == 20

    # state.json unreadable: the run is moved aside with its checkpoints, never deleted
    (run_dir / "state.json").write_text("{ not json")
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    rep = RecordingReporter()
    train_stage.run(params(30), rep)
    aside = tiny_lego / "runs" / "faults.old-1"
    assert sorted(p.name for p in (aside / "checkpoints").iterdir()) == before
    assert any(f"moved it to {aside}" in w for w in rep.warnings)
    assert trainer.load_checkpoint(trainer.list_checkpoints(run_dir)[-1])["step"] == 30
    # the folder set aside is not a run: eval and render find only "faults"
    assert runs.find_run(tiny_lego, None) == "faults"
    with pytest.raises(NerfpipeError, match=r"There is no run 'nosuch' in .*runs \(runs there: faults\): train it "
                                            r"with `nerfpipe train .* --run nosuch`"):
        evaluation.run_eval(evaluation.EvalParams(scene=tiny_lego, run="nosuch", device="cpu"))
    # every checkpoint damaged: loading the run is one sentence
    for path in trainer.list_checkpoints(run_dir):
        _damage(path, "random bytes")
    with pytest.raises(NerfpipeError, match="no older checkpoint that loads: run `nerfpipe train --fresh`"):
        runs.load_run(tiny_lego, "faults")


def test_a_manifest_of_the_wrong_shape_is_not_a_finished_stage(tmp_path):
    scene = _ingested(tmp_path)
    for text in ("[1, 2]", '{"fingerprint": 5, "outputs": 3}', "{ not json"):
        (scene / ".nerfpipe" / "ingest.json").write_text(text)
        assert cache.load_manifest(scene, "ingest") is None
        with pytest.raises(NerfpipeError, match=r"ingest.json is damaged \(not a nerfpipe manifest\): run "
                                                r"`nerfpipe ingest PHOTOS --scene .*` to redo that stage"):
            poses.run(poses.PosesParams(scene=scene))
    again = ingest.run(ingest.IngestParams(photos=scene / "photos", scene=scene, factors=(8,)))
    assert again.ran and cache.load_manifest(scene, "ingest") is not None


def _llff_scene(root: Path, arr: np.ndarray | None = None) -> Path:
    (root / "images_8").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((32, 48, 3), 60 * i, np.uint8)).save(root / "images_8" / f"{i}.png")
    rot = np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, -1]])  # LLFF: down, right, backwards
    rows = [np.concatenate([np.concatenate([rot, [[0.1 * i], [0.2 * i], [0]], [[256], [384], [300]]], axis=1).ravel(),
                            [1.0, 10.0]]) for i in range(3)]
    np.save(root / "poses_bounds.npy", np.stack(rows) if arr is None else arr)
    return root


@pytest.mark.parametrize("damage, says", [
    ("garbage", "it is not a NumPy .npy array"),
    ("pickle", "it is not a NumPy .npy array"),
    ("shape", "it has shape (3, 16), not (N, 17)"),
    ("nan", "row 1 holds NaN or infinite values"),
    ("rotation", "the camera of row 2 has a 3x3 part that is not a rotation"),
    ("bounds", "row 0 has near/far bounds [-1.0, 10.0], not 0 < near < far"),
])
def test_a_damaged_poses_bounds_stops_training_with_one_sentence(tmp_path, damage, says):
    scene = _llff_scene(tmp_path)
    path = scene / "poses_bounds.npy"
    arr = np.load(path)
    if damage == "garbage":
        path.write_bytes(b"\x00garbage" * 50)
    elif damage == "pickle":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif damage == "shape":
        np.save(path, arr[:, :16])
    else:
        row, col = {"nan": (1, 3), "rotation": (2, 1), "bounds": (0, 15)}[damage]
        arr[row, col] = {"nan": np.nan, "rotation": 0.0, "bounds": -1.0}[damage]
        np.save(path, arr)
    result = RUNNER.invoke(app, ["train", str(scene), "--recipe", "llff", "--iters", "1", "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert f"{path} is not a usable LLFF poses file ({says})" in " ".join(result.output.split()), result.output
    _no_traceback(result.output)


def test_a_damaged_colmap_model_is_a_sentence(tmp_path):
    from nerfpipe.stages import report

    scene = tmp_path
    (scene / "colmap" / "sparse" / "0").mkdir(parents=True)
    (scene / "colmap" / "database.db").write_bytes(b"not a database" * 100)
    with pytest.raises(NerfpipeError, match=r"colmap is damaged \(pycolmap cannot read it.*\): run `nerfpipe poses .* "
                                            r"--force`"):
        report.read_colmap(scene)


# --------------------------------------------------------------------------------------------------
# 3. Values nobody checked: cameras, recipe numbers, options; each named where it came from


def _transforms(path: Path, **change) -> Path:
    c2w = np.stack([np.eye(4)] * 2)
    c2w[:, 0, 3] = [0.0, 1.0]
    if "matrix" in change:
        c2w[1, :3, :3] = change.pop("matrix")
    cam = PinholeCamera(fl_x=100.0, fl_y=100.0, cx=40.0, cy=30.0, w=80, h=60)
    write_transforms(path, ["a.png", "b.png"], c2w, cam)
    data = json.loads(path.read_text())
    data.update(change)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("change, says", [
    ({"matrix": np.full((3, 3), np.nan)}, "frame 1 has NaN or infinite values in its transform_matrix"),
    ({"matrix": np.zeros((3, 3))}, "frame 1 has a transform_matrix whose 3x3 part is not a rotation"),
    ({"w": -5}, "the shared camera has w = -5, which should be above 0"),
    ({"fl_x": 0}, "the shared camera has fl_x = 0, which should be above 0"),
])
def test_impossible_cameras_in_a_transforms_json_are_refused(tmp_path, change, says):
    src = _transforms(tmp_path / "transforms.json", **change)
    dst = tmp_path / "out" / "poses_bounds.npy"
    result = RUNNER.invoke(app, ["convert", str(src), str(dst)])
    assert result.exit_code == 1 and says in " ".join(result.output.split()), result.output
    assert not dst.exists()
    _no_traceback(result.output)


def test_recipe_values_are_checked_and_named_where_they_came_from(tmp_path):
    with pytest.raises(NerfpipeError, match=r"^--set training.iters=-5: training.iters = -5 should be 1 or more"):
        load_recipe("fast", ["training.iters=-5"])
    with pytest.raises(NerfpipeError, match=r"^--set minutes=nan: training.minutes = nan should be a finite number"):
        load_recipe("fast", ["minutes=nan"])
    mine = tmp_path / "mine.toml"
    mine.write_text('model = "nerf"\n[training]\nminutes = -1.0\n')
    with pytest.raises(NerfpipeError, match=rf"^{mine}: training.minutes = -1.0 should be 0 or more"):
        load_recipe(str(mine))
    for override, says in [("nerf.n_samples=0", "nerf.n_samples = 0 should be 2 or more"),
                           ("nerf.lrate_decay=0", "nerf.lrate_decay = 0 should be 1 or more"),
                           ("nerf.skips=[10]", "nerf.skips = [10] should index layers 0 to 6 of the 8-layer network"),
                           ("data.bd_factor=0", "data.bd_factor = 0.0 should be above 0")]:
        with pytest.raises(NerfpipeError, match=rf"^--set {override.replace('[', '.').replace(']', '.')}: {says.replace('[', '.').replace(']', '.')}"):
            load_recipe("llff", [override])
    for override, says in [("fast.occupancy_every=0", "should be 1 or more"), ("fast.grow_at=[2]", "should lie in (0, 1)"),
                           ("fast.voxels_init=0", "should be 8 or more"), ("fast.lr_grid=nan", "should be a finite number")]:
        with pytest.raises(NerfpipeError) as e:
            load_recipe("fast", [override])
        assert e.value.sentence.startswith(f"--set {override}: ") and says in e.value.sentence
    load_recipe("fast", ["minutes=0"])  # 0 is "no time limit"


@pytest.mark.parametrize("args, says", [
    (["train", "--iters", "-5"], "--iters"),
    (["train", "--minutes", "nan"], "nan is not a number of minutes"),
    (["train", "--minutes", "-1"], "-1.0 is not a number of minutes"),
    (["all", "photos", "--minutes", "inf"], "inf is not a number of minutes"),
    (["poses", "--threads", "0"], "--threads"),
    (["ingest", "photos", "--frames", "0"], "--frames"),
])
def test_impossible_options_are_refused_at_the_command_line(tmp_path, args, says):
    result = RUNNER.invoke(app, [*args])
    assert result.exit_code == 2 and says in result.output, result.output
    _no_traceback(result.output)


def test_training_that_diverges_stops_with_a_sentence(tiny_lego, tmp_path):
    from nerfpipe.datasets.blender import load_blender
    from nerfpipe.nerf.registry import build_model

    data = load_blender(tiny_lego, half_res=False, white_background=True)
    data.images[...] = float("nan")  # what NaN cameras or images give: a loss that is not a number
    recipe = load_recipe("blender", list(TINY_NERF) + ["iters=5"])
    model = build_model(recipe.model, recipe.model_config, data.scene_box)
    with pytest.raises(NerfpipeError, match=r"^Training diverged at step 1: the loss is nan: lower the learning rate"):
        trainer.train(model, data, recipe.training, tmp_path, model_name="nerf", device=torch.device("cpu"))


# --------------------------------------------------------------------------------------------------
# 4. Two runs at once: one lock per scene; the second waits, saying so, then finds the work done

_HOLD = """
import sys, time
from pathlib import Path
from nerfpipe.cache import StageSpec, run_stage
def body(out):
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    return {}
run_stage(Path(sys.argv[1]), StageSpec(name="hold", version="1"), body, force=True)
"""


def _holder(scene: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(scene), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_a_second_process_waits_for_the_scene_then_finds_it_up_to_date(tmp_path):
    photos = _photos(tmp_path / "photos")
    scene = tmp_path / "scene"
    scene.mkdir()
    holder = _holder(scene, 3.0)
    t0 = time.perf_counter()
    second = _nerfpipe("ingest", photos, "--scene", scene, "--factors", "8")
    assert second.returncode == 0, second.stderr
    assert time.perf_counter() - t0 > 1.5
    assert f"Another nerfpipe (pid {holder.pid}:" in second.stderr and "waiting for it to finish" in second.stderr
    assert "waiting" not in second.stdout
    holder.wait(timeout=30)
    # a holder killed with -9 leaves no lock behind: the next run does not wait
    holder = _holder(scene, 60.0)
    holder.kill()
    holder.wait(timeout=30)
    again = _nerfpipe("ingest", photos, "--scene", scene, "--factors", "8")
    assert again.returncode == 0 and "waiting" not in again.stderr and "up to date" in again.stdout


def test_two_runs_started_together_leave_a_consistent_scene(tmp_path):
    photos = _photos(tmp_path / "photos", 4)
    scene = tmp_path / "scene"
    scene.mkdir()
    procs = [subprocess.Popen([*NERFPIPE, "ingest", str(photos), "--scene", str(scene), "--factors", "4,8"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sum("up to date" in out for out, _ in outs) == 1  # one ran, the other waited and found it done
    manifest = cache.load_manifest(scene, "ingest")
    assert manifest is not None and len(manifest["result"]["images"]) == 4
    assert not list((scene / ".nerfpipe" / "tmp").iterdir())
    assert "up to date" in _nerfpipe("ingest", photos, "--scene", scene, "--factors", "4,8").stdout


# --------------------------------------------------------------------------------------------------
# 5. Sentences that say what happened


def _damaged_exif_jpeg(src: Path, dst: Path) -> None:
    """``src`` with an EXIF block whose first tag points past its end (what a broken editor writes)."""
    data = src.read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)  # no EXIF
    jpeg = buf.getvalue()
    payload = b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\x00\x08" + b"\xff\xff" + b"\x12" * 40
    dst.write_bytes(jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:])


def test_photos_a_damaged_exif_block_and_an_original_beside_its_copy(tmp_path):
    photos = _photos(tmp_path / "photos", 3)
    names = sorted(p.name for p in photos.iterdir())
    _damaged_exif_jpeg(FERN_PHOTOS / "IMG_4030.JPG", photos / "IMG_4030.JPG")
    copy = photos / "a.jpg"  # shorter name, written later: still the copy
    copy.write_bytes((photos / names[0]).read_bytes())
    os.utime(copy, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    out = _nerfpipe("ingest", photos, "--scene", tmp_path, "--factors", "8")
    assert out.returncode == 0, out.stderr
    m = cache.load_manifest(tmp_path, "ingest")["result"]
    assert sorted(m["images"]) == sorted(n.replace(".JPG", ".jpg") for n in [*names, "IMG_4030.JPG"])
    said = " ".join(out.stderr.split())
    assert "IMG_4030.JPG has a damaged EXIF block: it is used as stored" in said
    assert f"Skipped a.jpg: it is an exact copy of {names[0]}." in said
    assert "UserWarning" not in out.stderr and "warnings.warn" not in out.stderr  # no raw library warnings
    assert "warning:" not in out.stdout  # warnings on stderr, results on stdout


def test_errors_go_to_stderr_and_name_what_is_wrong(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    out = _nerfpipe("train", afile)
    assert out.returncode == 1 and out.stdout == ""
    assert f"The scene folder {afile} is a file, not a folder" in " ".join(out.stderr.split())
    (tmp_path / "adir.toml").mkdir()
    out = _nerfpipe("train", tmp_path, "--recipe", tmp_path / "adir.toml")
    assert out.returncode == 1 and "is a folder, not a file" in " ".join(out.stderr.split())


def test_an_output_changed_in_place_is_not_up_to_date(tmp_path):
    scene = _ingested(tmp_path)
    small = sorted((scene / "images_8").iterdir())[0]
    data = bytearray(small.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, another byte
    small.write_bytes(bytes(data))
    with pytest.raises(NerfpipeError, match=rf"images_8/{small.name} changed since the ingest stage wrote it: run "
                                            r"`nerfpipe ingest PHOTOS --scene .* --force`"):
        poses.run(poses.PosesParams(scene=scene))
    again = ingest.run(ingest.IngestParams(photos=scene / "photos", scene=scene, factors=(8,)))
    assert again.ran and small.read_bytes() != bytes(data)


@pytest.mark.parametrize("change, says", [
    ({"camera_model": "OPENCV_FISHEYE"}, "its camera_model is OPENCV_FISHEYE"),
    ({"camera_model": "EQUIRECTANGULAR"}, "its camera_model is EQUIRECTANGULAR"),
    ({"k3": 0.01}, "its camera has k3 = 0.01, a distortion term beyond OPENCV's k1, k2, p1, p2"),
    ({"k4": -0.2}, "its camera has k4 = -0.2"),
])
def test_cameras_nerfpipe_would_read_wrongly_are_refused_not_truncated(tmp_path, change, says):
    src = _transforms(tmp_path / "transforms.json", **change)
    result = RUNNER.invoke(app, ["convert", str(src), str(tmp_path / "pb.npy")])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and f"cannot be read as it is meant ({says}" in said, result.output
    assert "undistort the images to a pinhole camera first" in said and not (tmp_path / "pb.npy").exists()
