"""Short real trainings on small real images: loss goes down, runs resume exactly, eval writes its files."""

import contextlib
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY_NERF, published_fern
import torch
from typer.testing import CliRunner

from nerfpipe.cache import load_manifest
from nerfpipe.cli import app
from nerfpipe.device import pick_device
from nerfpipe.errors import NerfpipeError
from nerfpipe.nerf import trainer
from nerfpipe.progress import RecordingReporter
from nerfpipe.stages import runs
from nerfpipe.stages import train as stage

TINY = TINY_NERF


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_fern(fern_dir, tmp_path_factory):
    """Published LLFF layout: images_16 (252x189, from JPEG decoding at 1/8 then halved) + the authors' poses."""
    return published_fern(fern_dir, tmp_path_factory.mktemp("fern16"), 16)


def _losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _params(scene, *extra, run="t", **kw):
    return stage.TrainParams(scene=scene, recipe="blender", overrides=TINY + ("half_res=false",) + tuple(extra), run=run,
                             device="cpu", **kw)


def test_blender_training_lowers_loss_then_eval_writes_renders(tiny_lego):
    rep = RecordingReporter()
    out = stage.run(_params(tiny_lego, "iters=80", "log_every=10", "precrop_iters=10"), rep)
    run_dir = tiny_lego / "runs" / "t"
    losses = _losses(run_dir)
    assert len(losses) == 8 and losses[-1] < 0.7 * losses[0]
    r = out.train.result
    assert r["steps"] == 80 and r["stopped"] == "iters" and r["images"] == {"train": 8, "test": 2, "size": [40, 40]}
    assert [t.description for t in rep.tasks] == ["train", "eval"] and rep.tasks[0].done == 80
    assert "psnr" in rep.tasks[0].stats and "loss" in rep.tasks[0].stats
    assert sorted(p.name for p in (run_dir / "test").iterdir()) == ["008_r_0.png", "009_r_8.png"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["count"] == 2 and len(metrics["views"]) == 2
    assert metrics["mean"]["psnr"] > 8 and 0 < metrics["mean"]["ssim"] <= 1
    assert metrics["lpips"].startswith("AlexNet, linear layers v0.1") and 0 < metrics["mean"]["lpips"] < 1
    # TensorBoard: the curves and each held-out view (render | photo) at the run's step
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    events = accumulator.EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert sorted(events.Tags()["images"]) == ["heldout/008_r_0", "heldout/009_r_8"]
    (image,) = events.Images("heldout/008_r_0")
    assert image.step == 80 and (image.width, image.height) == (80, 40)
    assert len(events.Scalars("psnr")) == 8
    ckpt = torch.load(trainer.list_checkpoints(run_dir)[-1], weights_only=True)
    assert ckpt["step"] == 80 and ckpt["model_name"] == "nerf" and "state" in ckpt["optimizer"]
    # the same command again is up to date; eval too
    again = stage.run(_params(tiny_lego, "iters=80", "log_every=10", "precrop_iters=10"), RecordingReporter())
    assert not again.train.ran and not again.eval.ran
    # load_run gives the render stage the model and the cameras
    model, recipe, meta = runs.load_run(tiny_lego, "t", "cpu")
    assert recipe.training.iters == 80 and meta["step"] == 80 and len(meta["c2w"]) == 10 and meta["ndc"] is False


class _StopAt(RecordingReporter):
    """Ctrl-C after ``n`` training steps (raised from the progress callback, where a real one would land)."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    @contextlib.contextmanager
    def task(self, description, total=None, unit="it"):
        with super().task(description, total, unit) as t:
            outer = t.advance

            def advance(n=1, **stats):
                outer(n, **stats)
                if description == "train" and t.done >= self.n:
                    raise KeyboardInterrupt

            t.advance = advance
            yield t


def test_interrupted_run_resumes_to_the_same_weights(tiny_lego):
    args = ("iters=12", "checkpoint_every=100", "precrop_iters=4", "log_every=2")
    stage.run(_params(tiny_lego, *args, run="straight", evaluate=False))
    with pytest.raises(KeyboardInterrupt):
        stage.run(_params(tiny_lego, *args, run="cut", evaluate=False), _StopAt(5))
    assert load_manifest(tiny_lego, "train-cut") is None  # not finished
    assert [p.name for p in trainer.list_checkpoints(tiny_lego / "runs" / "cut")] == ["step_0000005.pt"]
    log = tiny_lego / "runs" / "cut" / "metrics.jsonl"
    with open(log, "a") as f:  # a line that a session killed after step 6, without a checkpoint, would leave
        f.write(json.dumps({"step": 6, "loss": 1.0}) + "\n")
    rep = RecordingReporter()
    stage.run(_params(tiny_lego, *args, run="cut", evaluate=False), rep)
    assert any("from step 5" in s for s in rep.infos)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [2, 4, 6, 8, 10, 12]
    a = torch.load(trainer.list_checkpoints(tiny_lego / "runs" / "straight")[-1], weights_only=True)
    assert "average" not in a  # the recipe does not average its weights
    a = a["model"]
    b = torch.load(trainer.list_checkpoints(tiny_lego / "runs" / "cut")[-1], weights_only=True)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # more steps continue the run; another recipe needs --fresh
    stage.run(_params(tiny_lego, "iters=14", "checkpoint_every=100", "precrop_iters=4", run="cut", evaluate=False))
    assert torch.load(trainer.list_checkpoints(tiny_lego / "runs" / "cut")[-1], weights_only=True)["step"] == 14
    with pytest.raises(NerfpipeError, match="another recipe .*nerf.n_samples.*--fresh"):
        stage.run(_params(tiny_lego, "iters=14", "nerf.n_samples=8", run="cut", evaluate=False))
    fresh = stage.run(_params(tiny_lego, "iters=3", "nerf.n_samples=8", run="cut", evaluate=False, fresh=True))
    assert fresh.train.result["steps"] == 3


def test_weight_average_by_hand():
    """Decay 0.5 from step 2, taken in every AVERAGE_EVERY (4) steps by the step's number, at most
    n / (n + 4) a step n steps after the start, restarted by a growth."""
    assert trainer.AVERAGE_EVERY == 4 and trainer.AVERAGE_SPAN == 4
    model = torch.nn.Linear(1, 1, bias=False)
    model.weight.grad = torch.zeros_like(model.weight)  # trained by the step (no gradient: not averaged)
    average = trainer.WeightAverage(model, decay=0.5, start=2)
    seen = {}
    for step in range(1, 16):
        with torch.no_grad():
            model.weight.fill_(float(step))
        average.update(step, restart=step == 10)
        seen[step] = None if average.state_dict() is None else float(average.state_dict()["weight"])
    at4 = 2 + (1 - (2 / 6) ** 4) * (4 - 2)  # 2 steps in: the decay a step is 2 / (2 + 4), under 0.5
    at8 = at4 + (1 - 0.5**4) * (8 - at4)  # 6 steps in: 0.5
    at12 = 10 + (1 - (2 / 6) ** 4) * (12 - 10)  # restarted at 10
    assert seen[1] is None and seen[2] == seen[3] == 2.0
    assert seen[4] == pytest.approx(at4) and seen[7] == pytest.approx(at4) and seen[8] == pytest.approx(at8)
    assert seen[10] == seen[11] == 10.0 and seen[12] == pytest.approx(at12) and average.since == 10
    average.copy_to_model()
    assert float(model.weight.detach()) == pytest.approx(seen[15])
    assert trainer.WeightAverage(model, decay=0.0, start=0).state_dict() is None  # off: nothing kept


def test_averaged_weights_resume_exactly_and_are_what_a_run_loads(tiny_lego):
    """Training goes on from the weights themselves; evaluation and rendering load their average."""
    args = ("iters=12", "checkpoint_every=100", "precrop_iters=4", "log_every=2", "average=0.9", "average_start=0.25")
    stage.run(_params(tiny_lego, *args, run="avg", evaluate=False))
    with pytest.raises(KeyboardInterrupt):
        stage.run(_params(tiny_lego, *args, run="avg_cut", evaluate=False), _StopAt(5))
    stage.run(_params(tiny_lego, *args, run="avg_cut", evaluate=False))
    a = torch.load(trainer.list_checkpoints(tiny_lego / "runs" / "avg")[-1], weights_only=True)
    b = torch.load(trainer.list_checkpoints(tiny_lego / "runs" / "avg_cut")[-1], weights_only=True)
    for key in ("model", "average"):
        assert all(torch.allclose(a[key][k], b[key][k], atol=1e-6) for k in a[key])
    assert any(not torch.equal(a["model"][k], a["average"][k]) for k in a["average"])
    model, _, _ = runs.load_run(tiny_lego, "avg")
    assert set(a["average"]) == {name for name, _ in model.named_parameters()}  # the paper's MLPs: all trained
    state = model.state_dict()
    assert all(torch.equal(state[k], a["average"][k]) for k in a["average"])
    # an average that does not fit is a sentence naming the file (the trained weights are not loaded either)
    path = tiny_lego / "a.pt"
    for damaged in ({**a, "average": {**a["average"], "nowhere.weight": torch.zeros(1)}}, {**a, "average_since": "12"}):
        with pytest.raises(trainer.DamagedCheckpoint, match="a.pt holds a weight average that does not fit"):
            trainer.restore(model, damaged, path)
    assert isinstance(a["average_since"], int) and a["average_since"] == 3  # 0.25 x 12 steps


def test_a_run_from_before_a_recipe_key_existed_goes_on(tiny_lego):
    """A finished run whose recipe lacks a key that a later nerfpipe added (as data.undistort was) is not
    "another recipe" while the key keeps its default: train goes on from it (no step redone); set to
    another value, it is another recipe."""
    args = ("iters=4", "checkpoint_every=100", "log_every=2")
    stage.run(_params(tiny_lego, *args, run="older", evaluate=False))
    state_path = tiny_lego / "runs" / "older" / "state.json"
    state = json.loads(state_path.read_text())
    del state["recipe"]["data"]["undistort"]
    state_path.write_text(json.dumps(state))
    manifest = tiny_lego / ".nerfpipe" / "train-older.json"
    m = json.loads(manifest.read_text())
    del m["params"]["recipe"]["data"]["undistort"]
    m["fingerprint"] = "0" * len(m["fingerprint"])  # the old spec, without the key, had another fingerprint
    manifest.write_text(json.dumps(m))
    rep = RecordingReporter()
    again = stage.run(_params(tiny_lego, *args, run="older", evaluate=False), rep)
    assert again.train.ran and again.train.result["steps"] == 4 and again.train.result["steps_this_session"] == 0
    assert any("from step 4" in s for s in rep.infos)
    state = json.loads(state_path.read_text())
    del state["recipe"]["data"]["undistort"]
    state_path.write_text(json.dumps(state))
    with pytest.raises(NerfpipeError, match="another recipe .*data.undistort None -> False"):
        stage.run(_params(tiny_lego, *args, "data.undistort=false", run="older", evaluate=False))


def test_llff_ndc_training_lowers_loss(tiny_fern):
    params = stage.TrainParams(scene=tiny_fern, recipe="llff", run="f", device="cpu", evaluate=False, tf32=True,
                               overrides=TINY + ("factor=16", "iters=60", "log_every=10"))
    out = stage.run(params, RecordingReporter())
    losses = _losses(tiny_fern / "runs" / "f")
    assert losses[-1] < 0.8 * losses[0]
    r = out.train.result
    assert r["source"] == "llff" and r["images"] == {"train": 17, "test": 3, "size": [252, 189]}
    assert r["tf32"] is False  # asked for, but a CPU has no TF32: the run records what it used
    assert torch.backends.cuda.matmul.allow_tf32 is False  # the flag is the trainer's only while it trains
    assert [s["name"] for s in r["normalization"]] == ["rescale", "recenter"]
    dataset = json.loads((tiny_fern / "runs" / "f" / "dataset.json").read_text())
    assert dataset["ndc"] and dataset["ndc_near"] == 1.0 and np.asarray(dataset["c2w"]).shape == (20, 3, 4)


def test_scene_without_cameras_says_what_to_run(tmp_path):
    with pytest.raises(NerfpipeError, match="nerfpipe ingest.*nerfpipe poses"):
        stage.run(stage.TrainParams(scene=tmp_path, recipe="llff", device="cpu"))


def test_device_choice_is_checked():
    assert pick_device("cpu").type == "cpu"
    with pytest.raises(NerfpipeError, match="not a device"):
        pick_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(NerfpipeError, match="CUDA"):
            pick_device("cuda")


def test_the_cli_names_the_device_flag_the_library_does_not(tmp_path):
    with pytest.raises(NerfpipeError) as caught:
        pick_device("gpu")
    assert "--device" not in caught.value.sentence  # a Python caller has no flag to change
    result = CliRunner().invoke(app, ["train", str(tmp_path), "--device", "gpu"])
    assert result.exit_code == 1 and "--device 'gpu' is not a device" in " ".join(result.output.split()), result.output
    assert not (tmp_path / "runs").exists()


def test_tf32_flag_is_restored_after_training_and_on_errors():
    before = torch.backends.cuda.matmul.allow_tf32
    with trainer.matmul_precision(True):
        assert torch.backends.cuda.matmul.allow_tf32 is True
    assert torch.backends.cuda.matmul.allow_tf32 == before
    with pytest.raises(KeyboardInterrupt), trainer.matmul_precision(True):
        raise KeyboardInterrupt
    assert torch.backends.cuda.matmul.allow_tf32 == before


def test_a_recipe_without_a_factor_trains_on_the_ingested_size_nearest_the_target(tmp_path, tiny_fern):
    import cv2
    from conftest import REPO

    photo = cv2.imread(str(sorted((REPO / "examples" / "fern" / "photos").glob("*.JPG"))[0]))  # 1008x756
    for k in (2, 4, 8):  # what `nerfpipe all` leaves for photos of this size: 504, 252 and 126 pixels wide
        (tmp_path / f"images_{k}").mkdir()
        cv2.imwrite(str(tmp_path / f"images_{k}" / "a.png"), cv2.resize(photo, (1008 // k, 756 // k), interpolation=cv2.INTER_AREA))
    (tmp_path / "images_undistorted_2").mkdir()  # not an ingested size
    assert stage.ingested_factor(tmp_path, 500) == 2 and stage.ingested_factor(tmp_path, 1000) == 2
    assert stage.ingested_factor(tmp_path, 200) == 4 and stage.ingested_factor(tmp_path, 100) == 8
    assert stage.ingested_factor(tmp_path / "nothing", 500) is None

    # the fast recipe names no factor: on a scene with only images_16/ it trains there (the default 8 would fail)
    small = ("iters=2", "minutes=0", "batch_rays=256", "fast.voxels_init=4096", "fast.voxels_final=8000", "fast.samples=16")
    reporter = RecordingReporter()
    stage.run(stage.TrainParams(scene=tiny_fern, recipe="fast", overrides=small, run="auto", device="cpu", evaluate=False), reporter)
    meta = json.loads((tiny_fern / "runs" / "auto" / runs.DATASET_FILE).read_text())
    assert (meta["width"], meta["height"]) == (252, 189)
    assert any("images_16/" in s and "--factor" in s for s in reporter.infos)
    # a factor asked for is kept: the llff recipe names 8, and images_8/ does not exist here
    with pytest.raises(NerfpipeError, match="images_8"):
        stage.run(stage.TrainParams(scene=tiny_fern, recipe="llff", overrides=("iters=1",), run="llff8", device="cpu", evaluate=False))


def test_a_run_trained_in_another_scene_box_is_set_aside_and_started_over(tiny_lego):
    """A run trained in another scene box (a Blender run from before the box was carved around the
    object holds the 3 m box) cannot resume: its grids cover another box. It is moved aside, not
    deleted. (Eight views of tiny lego from one side carve nothing: parts of the box no view sees stay.)"""
    args = ("iters=4", "checkpoint_every=100", "log_every=2")
    stage.run(_params(tiny_lego, *args, run="boxed", evaluate=False))
    meta_path = tiny_lego / "runs" / "boxed" / "dataset.json"
    meta = json.loads(meta_path.read_text())
    box = meta["scene_box"]["aabb"]
    meta["scene_box"]["aabb"] = [[-1.0] * 3, [1.0] * 3]
    meta_path.write_text(json.dumps(meta))
    rep = RecordingReporter()  # more steps: the stage runs again and would resume the run
    again = stage.run(_params(tiny_lego, "iters=6", "checkpoint_every=100", "log_every=2", run="boxed", evaluate=False), rep)
    assert again.train.result["steps_this_session"] == 6
    assert any("scene box changed" in w for w in rep.warnings)
    assert (tiny_lego / "runs" / "boxed.old-1" / "checkpoints").is_dir()
    assert json.loads(meta_path.read_text())["scene_box"]["aabb"] == box
    # The same box resumes as before.
    rep = RecordingReporter()
    stage.run(_params(tiny_lego, "iters=8", "checkpoint_every=100", "log_every=2", run="boxed", evaluate=False), rep)
    assert any("from step 6" in s for s in rep.infos)


def test_training_and_evaluation_run_without_pycolmap(tiny_lego):
    """A scene whose poses are given trains and evaluates where pycolmap is not installed (a GPU
    machine that gets only torch and the checkout): nothing on that path imports it."""
    overrides = TINY + ("half_res=false", "iters=3", "precrop_iters=0")
    code = (
        "import sys; sys.modules['pycolmap'] = None  # what a missing package looks like to import\n"
        "from pathlib import Path\n"
        "from nerfpipe.progress import Reporter\n"
        "from nerfpipe.stages import train as stage\n"
        f"out = stage.run(stage.TrainParams(scene=Path({str(tiny_lego)!r}), recipe='blender', "
        f"overrides={overrides!r}, run='no_pycolmap', device='cpu'), Reporter())\n"
        "print('psnr', out.eval.result['mean']['psnr'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.split("psnr")[-1]) > 5
