"""`nerfpipe convert`: poses_bounds.npy <-> transforms.json round trips (exact), lossy cases, refusals, missing files."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from nerfpipe.cameras.formats import (
    PinholeCamera,
    poses_bounds_from_transforms,
    read_transforms,
    transforms_from_poses_bounds,
    write_transforms,
)
from nerfpipe.cli import app
from nerfpipe.errors import NerfpipeError
from nerfpipe.stages import convert

RUNNER = CliRunner()


def _one_line(output: str) -> str:
    return " ".join(output.split())


def _random_rotations(rng, n):
    q, _ = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    return q * np.sign(np.linalg.det(q))[:, None, None]  # proper rotations


def _small_poses_bounds(rng, n=5, hwf=(30.0, 40.0, 50.0)):
    """(n, 17): random rigid LLFF poses, one hwf, near < far."""
    poses = np.concatenate([_random_rotations(rng, n), rng.normal(size=(n, 3, 1))], axis=2)
    poses = np.concatenate([poses, np.broadcast_to(np.array(hwf)[None, :, None], (n, 3, 1))], axis=2)
    near = rng.uniform(1.0, 2.0, size=n)
    return np.concatenate([poses.reshape(n, 15), near[:, None], (near * rng.uniform(3, 5, size=n))[:, None]], axis=1)


def _images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")  # convert only needs the names


def test_reference_file_round_trips_exactly(fern_dir, tmp_path):
    """The LLFF authors' fern file -> transforms.json -> poses_bounds.npy gives the same array to the bit."""
    ref = np.load(fern_dir / "poses_bounds.reference.npy")
    tj, pb = tmp_path / "transforms.json", tmp_path / "poses_bounds.npy"
    convert.run(convert.ConvertParams(fern_dir / "poses_bounds.reference.npy", tj, images=fern_dir / "images"))
    t = read_transforms(tj)
    assert [p.rsplit("/", 1)[1] for p in t.file_paths] == sorted(p.name for p in (fern_dir / "images").glob("*.JPG"))
    assert t.cameras[0] == PinholeCamera(fl_x=ref[0, 14], fl_y=ref[0, 14], cx=2016.0, cy=1512.0, w=4032, h=3024)
    assert (tmp_path / t.file_paths[0]).is_file()  # paths are relative to the written file
    out = convert.run(convert.ConvertParams(tj, pb))
    assert out.warnings == [] and out.frames == 20
    back = np.load(pb)
    assert back.dtype == np.float64 and np.array_equal(back, ref)


def test_small_array_round_trips_both_ways(tmp_path):
    arr = _small_poses_bounds(np.random.default_rng(0))
    scene = tmp_path / "scene"
    _images(scene / "images", [f"{i:02d}.png" for i in range(5)])
    np.save(scene / "poses_bounds.npy", arr)
    # pb -> tj -> pb: the array again, to the bit (names from images/ beside it, as the LLFF loader)
    convert.run(convert.ConvertParams(scene / "poses_bounds.npy", scene / "transforms.json"))
    t = read_transforms(scene / "transforms.json")
    assert t.file_paths == [f"images/{i:02d}.png" for i in range(5)]
    assert np.array_equal(t.bounds, arr[:, 15:])
    convert.run(convert.ConvertParams(scene / "transforms.json", tmp_path / "pb.npy"))
    assert np.array_equal(np.load(tmp_path / "pb.npy"), arr)
    # tj -> pb -> tj: the same JSON, key for key and number for number
    first = json.loads((scene / "transforms.json").read_text())
    convert.run(convert.ConvertParams(tmp_path / "pb.npy", scene / "again.json", images=scene / "images"))
    assert json.loads((scene / "again.json").read_text()) == first
    # the pure functions agree with the files
    poses, bounds, losses = poses_bounds_from_transforms(transforms_from_poses_bounds(
        arr[:, :15].reshape(-1, 3, 5), arr[:, 15:], [str(i) for i in range(5)]))
    assert losses == [] and np.array_equal(poses.reshape(5, 15), arr[:, :15]) and np.array_equal(bounds, arr[:, 15:])


def test_nerfpipe_scene_takes_names_from_the_poses_manifest(tmp_path):
    arr = _small_poses_bounds(np.random.default_rng(1), n=3)
    np.save(tmp_path / "poses_bounds.npy", arr)
    _images(tmp_path / "images", ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])  # d.jpg was not registered
    (tmp_path / ".nerfpipe").mkdir()
    manifest = {"fingerprint": "f", "inputs": {}, "upstream": {}, "outputs": {}, "result": {"images": ["a.jpg", "c.jpg", "d.jpg"]}}
    (tmp_path / ".nerfpipe" / "poses.json").write_text(json.dumps(manifest))
    convert.run(convert.ConvertParams(tmp_path / "poses_bounds.npy", tmp_path / "out" / "t.json"))
    assert read_transforms(tmp_path / "out" / "t.json").file_paths == ["../images/a.jpg", "../images/c.jpg", "../images/d.jpg"]
    with pytest.raises(NerfpipeError, match="holds 3 cameras but .* has 4 images: pass .*--images"):
        convert.run(convert.ConvertParams(tmp_path / "poses_bounds.npy", tmp_path / "t2.json", images=tmp_path / "images"))


def test_what_llff_cannot_hold_is_one_warning_sentence(tmp_path):
    rng = np.random.default_rng(2)
    _images(tmp_path / "images", ["b.png", "a.png", "c.png"])
    c2w = np.concatenate([_random_rotations(rng, 3), rng.normal(size=(3, 3, 1))], axis=2)
    cam = PinholeCamera(fl_x=100.0, fl_y=102.0, cx=41.0, cy=30.0, w=80, h=60, k1=-0.1, p2=0.001)
    write_transforms(tmp_path / "transforms.json", ["images/b.png", "images/a.png", "images/c.png"], c2w, cam)
    out = convert.run(convert.ConvertParams(tmp_path / "transforms.json", tmp_path / "pb.npy"))
    assert len(out.warnings) == 1
    sentence = out.warnings[0]
    for part in ("lens distortion (k1 -0.1", "fl_x 100 and fl_y 102 differ and their mean is kept",
                 "principal point (41, 30) is off the image centre (40, 30)", "estimated from the cameras"):
        assert part in sentence
    assert sentence.endswith(".") and ". " not in sentence  # one sentence
    poses = np.load(tmp_path / "pb.npy")[:, :15].reshape(3, 3, 5)
    assert np.allclose(poses[:, :, 4], [60.0, 80.0, 101.0])
    # rows in sorted file_path order: a, b, c
    assert np.allclose(poses[0, :, 1], c2w[1, :, 0]) and np.allclose(poses[1, :, 1], c2w[0, :, 0])


def test_existing_destination_needs_force_and_the_source_is_never_written(tmp_path):
    arr = _small_poses_bounds(np.random.default_rng(3), n=3)
    np.save(tmp_path / "poses_bounds.npy", arr)
    _images(tmp_path / "images", ["a.png", "b.png", "c.png"])
    (tmp_path / "t.json").write_text("keep me")
    res = RUNNER.invoke(app, ["convert", str(tmp_path / "poses_bounds.npy"), str(tmp_path / "t.json")])
    assert res.exit_code == 1 and "already exists: pass --force" in _one_line(res.output)
    assert (tmp_path / "t.json").read_text() == "keep me"
    res = RUNNER.invoke(app, ["convert", str(tmp_path / "poses_bounds.npy"), str(tmp_path / "t.json"), "--force"])
    assert res.exit_code == 0, res.output
    assert len(read_transforms(tmp_path / "t.json").file_paths) == 3
    res = RUNNER.invoke(app, ["convert", str(tmp_path / "t.json"), str(tmp_path / "t.json"), "--force"])
    assert res.exit_code == 1 and "never overwritten" in _one_line(res.output)
    res = RUNNER.invoke(app, ["convert", str(tmp_path / "poses_bounds.npy"), str(tmp_path / "x.txt")])
    assert res.exit_code == 1 and "neither a .npy" in _one_line(res.output)


def _scene_with_missing(tmp_path):
    """transforms.json naming 4 images of which only 2 exist."""
    _images(tmp_path / "images", ["0.png", "2.png"])
    c2w = np.tile(np.eye(4), (4, 1, 1))
    c2w[:, 0, 3] = np.arange(4)
    write_transforms(tmp_path / "transforms.json", [f"images/{i}.png" for i in range(4)], c2w,
                     PinholeCamera(fl_x=50.0, fl_y=50.0, cx=20.0, cy=15.0, w=40, h=30))
    return tmp_path


def test_missing_images_stop_training_with_one_sentence(tmp_path):
    scene = _scene_with_missing(tmp_path)
    res = RUNNER.invoke(app, ["train", str(scene), "--recipe", "llff", "--device", "cpu"])
    text = _one_line(res.output)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1 and ". " not in text  # one line, one sentence
    assert text.startswith("error: 2 of the 4 images that ") and "are missing (images/1.png, images/3.png)" in text
    assert "keep the 2 that exist with `nerfpipe convert" in text and "--drop-missing`" in text
    # the way on: a cleaned transforms.json in a new folder, paths pointing back at the images
    res = RUNNER.invoke(app, ["convert", str(scene / "transforms.json"), str(tmp_path / "kept" / "transforms.json"),
                              "--drop-missing"])
    assert res.exit_code == 0, res.output
    assert "2 frames whose image is missing are left out: images/1.png, images/3.png." in _one_line(res.output)
    kept = read_transforms(tmp_path / "kept" / "transforms.json")
    assert kept.file_paths == ["../images/0.png", "../images/2.png"] and np.allclose(kept.c2w_gl[:, 0, 3], [0, 2])


def test_fox_reference_names_17_missing_frames(fox_dir, tmp_path):
    """The real case: instant-ngp's fox file names 67 frames, 50 of which are in fox/images."""
    shutil.copy(fox_dir / "transforms.reference.json", tmp_path / "transforms.json")
    (tmp_path / "images").symlink_to(fox_dir / "images")
    res = RUNNER.invoke(app, ["train", str(tmp_path), "--device", "cpu"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "17 of the 67 images that" in _one_line(res.output) and "keep the 50 that exist" in _one_line(res.output)
