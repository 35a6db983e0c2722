"""The poses stage: real pycolmap runs on a few real photos at small size, and every failure users hit.

Scenes are built from the fern photos shipped in examples/fern/photos (1008x756, iPhone EXIF) plus,
for the failures, unrelated real photos from ../shared/data (lego renders, fox video frames) cropped
to the same size and given the same EXIF, so that ingest keeps them all as photos of one phone.
SfM runs on 504x378 copies (sfm_size 512): a few seconds per scene.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pycolmap
import pytest
from PIL import Image
from typer.testing import CliRunner

from nerfpipe import scene as scene_layout
from nerfpipe.cache import is_up_to_date, load_manifest
from nerfpipe.cameras import conventions as cv
from nerfpipe.cameras import formats
from nerfpipe.cameras import similarity
from nerfpipe.cli import app
from nerfpipe.errors import NerfpipeError
from nerfpipe.progress import RecordingReporter
from nerfpipe.stages import ingest, poses
from nerfpipe.stages.results import load_result

REPO = Path(__file__).resolve().parents[1]
FERN_PHOTOS = REPO / "examples" / "fern" / "photos"
SFM_SIZE = 512
FERN_FOCAL_4X = 3260.52633288 / 4
"""The reference focal length (4032 px wide) at the 1008 px of the example photos."""


def fern(i: int) -> Path:
    return FERN_PHOTOS / f"IMG_{4026 + i}.JPG"


def _photo(src: Path, dst: Path, size=(1008, 756)) -> None:
    """``src`` centre-cropped and resized to ``size``, as a JPEG with the fern photos' EXIF (same phone)."""
    with Image.open(fern(0)) as f:
        exif = f.info["exif"]
    with Image.open(src) as img:
        rgba = img.convert("RGBA")
    rgb = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    scale = max(size[0] / rgb.width, size[1] / rgb.height)
    rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.LANCZOS)
    left, top = (rgb.width - size[0]) // 2, (rgb.height - size[1]) // 2
    rgb.crop((left, top, left + size[0], top + size[1])).save(dst, quality=92, exif=exif)


def _scene(root: Path, sources: dict[str, Path]) -> Path:
    """An ingested scene in ``root`` from {photo name: source image}."""
    (root / "photos").mkdir(parents=True)
    for name, src in sources.items():
        if src.parent == FERN_PHOTOS:
            (root / "photos" / name).write_bytes(src.read_bytes())
        else:
            _photo(src, root / "photos" / name)
    ingest.run(ingest.IngestParams(photos=root / "photos", scene=root, factors=(8,)))
    return root


def _params(scene: Path, **kw) -> poses.PosesParams:
    return poses.PosesParams(scene=scene, sfm_size=SFM_SIZE, **kw)


def _assert_nothing_written(scene: Path) -> None:
    for rel in poses.OUTPUTS:
        assert not (scene / rel).exists(), rel
    assert load_manifest(scene, "poses") is None
    assert not list((scene / ".nerfpipe" / "tmp").glob("poses-*"))


# --------------------------------------------------------------------------------------------------
# Pure helpers


def test_sfm_factor():
    assert poses.sfm_factor(4032, 3024, 1024) == 4  # fern -> 1008x756
    assert poses.sfm_factor(1080, 1920, 1024) == 2
    assert poses.sfm_factor(1008, 756, 1024) == 1
    assert poses.sfm_factor(1008, 756, 512) == 2


def test_pairs():
    assert poses.exhaustive_pairs(4) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert poses.sequential_pairs(5, overlap=1) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    # overlap 2: neighbours at 1 and 2, quadratic steps 2^0 and 2^1 are the same ones
    assert poses.sequential_pairs(5, overlap=2) == [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (2, 4), (3, 4)]
    # loop closure: keyframes 0, 2, 4 matched with each other adds (0, 4)
    assert poses.sequential_pairs(5, overlap=2, loop_period=2) == [
        (0, 1), (0, 2), (0, 4), (1, 2), (1, 3), (2, 3), (2, 4), (3, 4)
    ]
    # quadratic overlap reaches 2^(overlap-1) = 8 frames ahead
    assert (0, 8) in poses.sequential_pairs(20, overlap=4) and (0, 7) not in poses.sequential_pairs(20, overlap=4)


def test_choose_matcher():
    assert poses.choose_matcher("auto", 20, 0) == "exhaustive"
    assert poses.choose_matcher("auto", 60, 0) == "exhaustive"
    assert poses.choose_matcher("auto", 61, 0) == "sequential"
    assert poses.choose_matcher("auto", 40, 40) == "sequential"  # video frames
    assert poses.choose_matcher("auto", 20, 20) == "exhaustive"  # a short video is cheap to match fully
    assert poses.choose_matcher("sequential", 5, 0) == "sequential"


def test_near_far_by_hand():
    """Camera 0 at the origin looking down +z; camera 1 one unit further back. Ten points at z = 1..10
    seen by both (and a third camera), one two-view point at z = 0.5."""
    w2c = np.zeros((3, 3, 4))
    w2c[:, :, :3] = np.eye(3)
    w2c[1, 2, 3] = 1.0  # camera 1's centre is at z = -1: depths + 1
    w2c[2, :, 3] = [100.0, 0, 0]  # far off to the side, same depth as camera 0
    points = np.array([[0, 0, z] for z in range(1, 11)] + [[0, 0, 0.5]], dtype=float)
    seen = [np.array([0, 1, 2])] * 10 + [np.array([0, 1])]
    b = poses.near_far(w2c, points, seen)
    # numpy's linear percentile of 1..10: 0.1% -> 1 + 0.001 * 9, 99.9% -> 10 - 0.001 * 9
    assert np.allclose(b[0], [1.009, 9.991]) and np.allclose(b[1], [2.009, 10.991]) and np.allclose(b[2], b[0])
    # with every point (imgs2poses' rule) the two-view point sets near
    assert np.allclose(poses.near_far(w2c, points, seen, min_views=2)[0], [0.505, 9.99])  # 0.5, 1..10
    # a camera that sees only two-view points falls back to them
    only_two = poses.near_far(w2c[:2], points[10:], [np.array([0, 1])])
    assert np.allclose(only_two[:, 0], [0.5, 1.5])


def test_registration_rule():
    assert poses.registration_problem(20, 20) is None
    assert poses.registration_problem(10, 20) is None
    assert "Only 9 of 20 photos" in poses.registration_problem(9, 20)
    assert "at least 10" in poses.registration_problem(9, 20)
    assert "Only 2 of 3 photos" in poses.registration_problem(2, 3)
    assert "at least 3" in poses.registration_problem(2, 3)
    assert "more overlap" in poses.registration_problem(0, 5)


# --------------------------------------------------------------------------------------------------
# A real run: 6 fern photos among 4 unrelated ones (3 fox video frames, 1 lego render)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, lego_dir, fox_dir):
    """(scene, result, reporter) of one poses run on 10 photos: 6 of fern, 3 fox frames, 1 lego view."""
    sources = {f"IMG_{4026 + i}.JPG": fern(i) for i in range(6)}
    sources.update({f"fox_{n}.jpg": fox_dir / "images" / f"{n}.jpg" for n in ("0001", "0004", "0007")})
    sources["lego_r_0.jpg"] = lego_dir / "train" / "r_0.png"
    scene = _scene(tmp_path_factory.mktemp("mixed"), sources)
    (scene / "report.failed.json").write_text("{}")  # left by an earlier run that stopped
    reporter = RecordingReporter()
    res = poses.run(_params(scene), reporter)
    return scene, res, reporter


FERN6 = [f"IMG_{4026 + i}.jpg" for i in range(6)]
OTHERS = ["fox_0001.jpg", "fox_0004.jpg", "fox_0007.jpg", "lego_r_0.jpg"]


def test_partial_registration_goes_on_with_the_registered_photos(mixed):
    scene, res, reporter = mixed
    r = res.result
    assert res.ran
    assert r["images"] == FERN6 and r["stems"] == [Path(n).stem for n in FERN6]
    assert r["unregistered"] == OTHERS
    assert (r["registered"], r["photos"]) == (6, 10)
    assert not (scene / "report.failed.json").exists()  # a finished run makes the stopped run's report stale
    unregistered_warning = [w for w in reporter.warnings if "could not be registered" in w]
    assert unregistered_warning and all(name in unregistered_warning[0] for name in OTHERS)
    # every output holds exactly the registered photos, in sorted name order
    pb, bounds = formats.read_poses_bounds(scene / scene_layout.POSES_BOUNDS)
    assert pb.shape == (6, 3, 5) and bounds.shape == (6, 2)
    t = formats.read_transforms(scene / scene_layout.TRANSFORMS)
    assert t.file_paths == [f"images/{n}" for n in FERN6]
    rec = pycolmap.Reconstruction(scene / "colmap" / "sparse" / "0")
    assert sorted(rec.images[i].name for i in rec.reg_image_ids()) == FERN6


def test_split_into_several_models_is_reported(mixed):
    _, res, reporter = mixed
    # the three fox frames match each other and make a second model; the lego view matches nothing
    assert res.result["models"] == [6, 3]
    split = [w for w in reporter.warnings if "separate models" in w]
    assert len(split) == 1 and "fox_0001.jpg, fox_0004.jpg, fox_0007.jpg" in split[0]


def test_poses_bounds_follow_the_llff_convention(mixed, fern_dir):
    scene, res, _ = mixed
    pb, bounds = formats.read_poses_bounds(scene / scene_layout.POSES_BOUNDS)
    assert np.allclose(pb[:, :2, 4], [756, 1008])  # H, W of images/
    assert pb[0, 2, 4] == pytest.approx(FERN_FOCAL_4X, rel=0.05)
    assert np.allclose(res.result["hwf"], pb[0, :, 4])
    assert np.all(bounds[:, 0] > 0) and np.all(bounds[:, 1] > bounds[:, 0])
    # the same six cameras as the dataset authors' COLMAP run, up to a similarity
    ref, ref_bounds = formats.read_poses_bounds(fern_dir / "poses_bounds.reference.npy")
    c = similarity.compare_cameras(pb, ref[:6], bounds, ref_bounds[:6])
    assert c.centre_error_mean < 0.05 and c.rotation_error_mean_deg < 0.5
    assert c.near_error_mean < 0.25 and c.far_error_mean < 0.25


def test_transforms_json_and_colmap_model_match_poses_bounds(mixed):
    scene, res, _ = mixed
    pb, _ = formats.read_poses_bounds(scene / scene_layout.POSES_BOUNDS)
    t = formats.read_transforms(scene / scene_layout.TRANSFORMS)
    assert t.camera_model == "OPENCV"
    cam = t.cameras[0]
    assert (cam.w, cam.h, cam.cx, cam.cy) == (1008, 756, 504.0, 378.0)
    assert cam.fl_x == pytest.approx(pb[0, 2, 4]) and cam.k2 == 0.0
    assert np.allclose(t.c2w_gl[:, :3], cv.gl_from_llff(pb))
    assert t.extra["applied_transform"] == np.eye(4)[:3].tolist()
    # colmap/sparse/0 is rescaled to images/: same cameras, reprojection error in full-size pixels
    rec = pycolmap.Reconstruction(scene / "colmap" / "sparse" / "0")
    (camera,) = rec.cameras.values()
    assert (camera.width, camera.height) == (1008, 756)
    assert camera.params[0] == pytest.approx(pb[0, 2, 4])
    images = sorted((rec.images[i] for i in rec.reg_image_ids()), key=lambda im: im.name)
    w2c = np.stack([im.cam_from_world().matrix() for im in images])
    assert np.allclose(cv.llff_from_colmap(w2c), pb[:, :, :4])
    scale = 1008 / res.result["reprojection_error_pixels_of"][0]
    assert rec.compute_mean_reprojection_error() == pytest.approx(res.result["mean_reprojection_error_px"] * scale, rel=0.01)
    assert (scene / "colmap" / "database.db").is_file()


def test_report_and_progress(mixed):
    _, res, reporter = mixed
    r = res.result
    assert r["points3D"] > 100 and 0 < r["mean_reprojection_error_px"] < 2
    assert set(r["seconds"]) == {"copies", "features", "matching", "mapping", "outputs"}
    assert (r["matcher"], r["pairs"], r["sfm_size"]) == ("exhaustive", 45, [504, 378])
    assert res.manifest["result"] == r  # saved in .nerfpipe/poses.json
    tasks = {t.description: t for t in reporter.tasks}
    assert (tasks["features"].total, tasks["features"].done) == (10, 10)
    assert (tasks["matching (exhaustive)"].total, tasks["matching (exhaustive)"].done) == (45, 45)
    assert tasks["registering"].done == 6


def test_cached_unless_parameters_change(mixed):
    scene, res, _ = mixed
    again = poses.run(_params(scene))
    assert not again.ran and again.manifest["fingerprint"] == res.manifest["fingerprint"]
    ingested = load_result(scene, "ingest")
    assert is_up_to_date(scene, poses.stage_spec(_params(scene), ingested))
    assert not is_up_to_date(scene, poses.stage_spec(_params(scene, seed=1), ingested))
    assert not is_up_to_date(scene, poses.stage_spec(_params(scene, camera="per_image"), ingested))
    # threads and verbosity do not change the result
    assert is_up_to_date(scene, poses.stage_spec(_params(scene, threads=1, verbose=True), ingested))


def test_cli_poses_up_to_date_and_compare_poses(mixed, fern_dir, tmp_path):
    scene, _, _ = mixed
    runner = CliRunner()
    out = runner.invoke(app, ["poses", str(scene), "--sfm-size", str(SFM_SIZE)])
    assert out.exit_code == 0 and "up to date: 6 of 10 photos registered" in out.output
    ref = fern_dir / "poses_bounds.reference.npy"
    out = runner.invoke(app, ["compare-poses", str(ref), str(ref), "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["centre_error_max"] == 0
    # the same cameras in another world (rotated, scaled by 2.5, moved) compare as equal; three cameras
    # turned by 30 degrees about their viewing axis show as 30 degrees
    pb = np.load(ref)
    poses_llff, bounds = pb[:, :15].reshape(-1, 3, 5), pb[:, 15:]
    angle = np.radians(40.0)
    world = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    moved = poses_llff.copy()
    moved[:, :, :3] = world @ poses_llff[:, :, :3]
    moved[:, :, 3] = 2.5 * poses_llff[:, :, 3] @ world.T + np.array([1.0, -2.0, 0.5])
    turn = np.radians(30.0)
    spin = np.array([[np.cos(turn), -np.sin(turn), 0], [np.sin(turn), np.cos(turn), 0], [0, 0, 1]])
    moved[[3, 8, 15], :, :3] = moved[[3, 8, 15], :, :3] @ spin  # about the camera's own third (backward) axis
    other = tmp_path / "moved.npy"
    np.save(other, np.concatenate([moved.reshape(-1, 15), 2.5 * bounds], axis=1))
    c = json.loads(runner.invoke(app, ["compare-poses", str(other), str(ref), "--json"]).output)
    assert c["centre_error_max"] < 1e-9 and c["scale"] == pytest.approx(1 / 2.5)
    # with the centres aligned exactly, the alignment's rotation is the true one: 30 degrees on 3 of 20 cameras
    assert c["rotation_error_sim3_mean_deg"] == pytest.approx(30.0 * 3 / 20, abs=0.01)
    assert 20.0 < c["rotation_error_max_deg"] <= 30.0  # the best-fitting global rotation shares the turn out
    assert c["near_error_mean"] < 1e-9
    out = runner.invoke(app, ["compare-poses", str(scene / scene_layout.POSES_BOUNDS), str(ref)])
    assert out.exit_code == 1 and "has 6 cameras" in out.output and "has 20" in out.output


# --------------------------------------------------------------------------------------------------
# Failures: one plain sentence, nothing written


def test_under_half_registered_stops(tmp_path, lego_dir, fox_dir):
    sources = {f"IMG_{4026 + i}.JPG": fern(i) for i in range(3)}
    sources.update({"lego_r_0.jpg": lego_dir / "train" / "r_0.png", "lego_r_50.jpg": lego_dir / "train" / "r_50.png",
                    "fox_0001.jpg": fox_dir / "images" / "0001.jpg", "fox_0030.jpg": fox_dir / "images" / "0030.jpg"})
    scene = _scene(tmp_path, sources)
    reporter = RecordingReporter()
    with pytest.raises(NerfpipeError) as e:
        poses.run(_params(scene), reporter)
    assert "Only 3 of 7 photos" in e.value.sentence and "at least 4" in e.value.sentence
    assert "more overlap" in e.value.sentence and "motion blur" in e.value.sentence
    # a second, more permissive mapping was tried before giving up
    assert any("2nd try" in t.description for t in reporter.tasks)
    _assert_nothing_written(scene)
    # ...and the capture report of the failed run says which photos did not register and why
    failed = json.loads((scene / "report.failed.json").read_text())
    assert failed["poses_failed"] and failed["summary"]["registered"] == 3 and failed["figure"] == "report.failed.png"
    unplaced = [p["name"] for p in failed["photos"] if not p["registered"]]
    assert unplaced == ["fox_0001.jpg", "fox_0030.jpg", "lego_r_0.jpg", "lego_r_50.jpg"]
    said = " ".join(failed["sentences"])
    assert "4 of 7 photos did not register" in said and "too few other photos" in said
    assert failed["sentences"][0] in reporter.warnings
    assert any("report.failed.png" in i for i in reporter.infos)
    with Image.open(scene / "report.failed.png") as figure:
        assert figure.size[0] > 0
    assert not (scene / "report.json").exists()  # the report of a finished run is never written by a failed one


def test_fewer_than_three_registered_stops(tmp_path, lego_dir):
    scene = _scene(tmp_path, {"IMG_4026.JPG": fern(0), "IMG_4027.JPG": fern(1), "lego.jpg": lego_dir / "train" / "r_0.png"})
    with pytest.raises(NerfpipeError, match=r"Only [0-2] of 3 photos .*at least 3 are needed"):
        poses.run(_params(scene))
    _assert_nothing_written(scene)


def test_unrelated_photos_have_no_matches(tmp_path, lego_dir, fox_dir):
    scene = _scene(tmp_path, {"IMG_4026.JPG": fern(0), "lego.jpg": lego_dir / "train" / "r_0.png",
                              "fox.jpg": fox_dir / "images" / "0001.jpg"})
    with pytest.raises(NerfpipeError, match=r"No two of the 3 photos .* share enough matching features \(3 pairs tried\)"):
        poses.run(_params(scene))
    _assert_nothing_written(scene)
    failed = json.loads((scene / "report.failed.json").read_text())
    assert failed["summary"]["registered"] == 0 and "3 of 3 photos did not register" in failed["sentences"][0]


def test_photo_of_another_size_stops_and_keeps_the_finished_outputs(tmp_path):
    sources = {f"IMG_{4026 + i}.JPG": fern(i) for i in range(4)}
    sources["IMG 4029 (copy).JPG"] = sources.pop("IMG_4029.JPG")  # spaces in a name are fine
    scene = _scene(tmp_path, sources)
    first = poses.run(_params(scene, threads=1))
    assert first.result["images"] == ["IMG 4029 (copy).jpg", "IMG_4026.jpg", "IMG_4027.jpg", "IMG_4028.jpg"]
    assert first.result["unregistered"] == []
    assert formats.read_transforms(scene / scene_layout.TRANSFORMS).file_paths[0] == "images/IMG 4029 (copy).jpg"
    before = (scene / scene_layout.POSES_BOUNDS).read_bytes()
    # run again: seeded, one thread -> bit-identical poses
    again = poses.run(_params(scene, threads=1, force=True))
    assert (scene / scene_layout.POSES_BOUNDS).read_bytes() == before and again.ran
    # someone replaces a photo of images/ with a half-size copy
    photo = scene / "images" / "IMG_4027.jpg"
    with Image.open(photo) as img:
        img.resize((504, 378)).save(photo, quality=90)
    with pytest.raises(NerfpipeError, match=r"images/IMG_4027.jpg changed since the ingest stage wrote it: run "
                                            r"`nerfpipe ingest PHOTOS --scene .* --force`"):
        poses.run(_params(scene, threads=1))
    # the failing run changed nothing that had finished
    assert (scene / scene_layout.POSES_BOUNDS).read_bytes() == before
    assert load_manifest(scene, "poses")["fingerprint"] == again.manifest["fingerprint"]
    assert not list((scene / ".nerfpipe" / "tmp").glob("poses-*"))


def test_bad_parameters_and_missing_ingest(tmp_path):
    with pytest.raises(NerfpipeError, match="needs the ingest stage"):
        poses.run(_params(tmp_path))
    with pytest.raises(NerfpipeError, match="not one of single, per_image"):
        poses.run(replace(_params(tmp_path), camera="pinhole"))
    with pytest.raises(NerfpipeError, match="too small for SfM"):
        poses.run(replace(_params(tmp_path), sfm_size=100))


def test_photos_named_like_the_sfm_copies(tmp_path):
    """Photos called 0001.jpg ... (video frames, instant-ngp captures) clash with the SfM copies'
    own names while they are renamed back: every photo still registers under its own name."""
    scene = _scene(tmp_path, {f"{i + 1:04d}.jpg": fern(i) for i in range(5)})
    res = poses.run(_params(scene))
    assert res.result["images"] == [f"{i + 1:04d}.jpg" for i in range(5)]
    assert res.result["registered"] == 5
