"""Training on your own poses: a transforms.json scene (undistortion, its own recentring, a short real training)."""

import json

import cv2
import numpy as np
import pytest
from conftest import TINY_NERF

from nerfpipe.cache import load_manifest
from nerfpipe.cameras.formats import PinholeCamera, read_transforms, write_transforms
from nerfpipe.cameras.normalize import estimate_bounds, look_at
from nerfpipe.cameras.scene_type import classify
from nerfpipe.cameras.undistort import border_inside, source_pixels
from nerfpipe.datasets.transforms import load_transforms, scene_cameras
from nerfpipe.errors import NerfpipeError
from nerfpipe.progress import RecordingReporter
from nerfpipe.stages import sources, train, undistort

TINY = TINY_NERF


pytestmark = pytest.mark.usefixtures("one_thread")


def _k(cam: PinholeCamera) -> np.ndarray:
    return np.array([[cam.fl_x, 0, cam.cx], [0, cam.fl_y, cam.cy], [0, 0, 1.0]])


def _dist(cam: PinholeCamera) -> np.ndarray:
    return np.array([cam.k1, cam.k2, cam.p1, cam.p2])


CAM = PinholeCamera(fl_x=200.0, fl_y=203.0, cx=165.0, cy=117.0, w=320, h=240, k1=-0.25, k2=0.05, p1=0.002, p2=-0.001)


def test_lookup_matches_opencv():
    """Our target -> source pixel lookup is OpenCV's undistortion map and OpenCV's projection."""
    focal, width, height = 190.0, 288, 208
    new_k = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1.0]])
    map_x, map_y = cv2.initUndistortRectifyMap(_k(CAM), _dist(CAM), None, new_k, (width, height), cv2.CV_32FC1)
    v, u = np.mgrid[0:height, 0:width]
    xs, ys = source_pixels(CAM, focal, width, height, u, v)
    assert np.abs(xs - map_x).max() < 1e-3 and np.abs(ys - map_y).max() < 1e-3
    # a 3D point: where the pinhole target camera sees it, the lookup lands where OpenCV projects it in the photo
    pts = np.array([[0.3, -0.2, 1.0], [-0.5, 0.4, 2.0], [0.1, 0.1, 0.7]])
    photo, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), _k(CAM), _dist(CAM))
    target = pts[:, :2] / pts[:, 2:] * focal + [width / 2, height / 2]
    xs, ys = source_pixels(CAM, focal, width, height, target[:, 0], target[:, 1])
    assert np.allclose(np.stack([xs, ys], 1), photo[:, 0], atol=1e-9)


def _line_rows(img: np.ndarray, columns: range) -> np.ndarray:
    """Intensity-weighted row of a thin bright horizontal line in each of ``columns``."""
    rows = np.arange(img.shape[0], dtype=np.float64)
    return np.array([(img[:, c] * rows).sum() / img[:, c].sum() for c in columns])


def test_undistortion_brings_straight_lines_back():
    """A straight 3D line photographed through a barrel lens is curved; undistorted, it is straight
    and where the pinhole camera sees it."""
    line = np.stack([np.linspace(-0.9, 0.9, 400), np.full(400, 0.35), np.ones(400)], axis=1)
    photo_pts, _ = cv2.projectPoints(line, np.zeros(3), np.zeros(3), _k(CAM), _dist(CAM))
    photo = np.zeros((CAM.h, CAM.w), np.uint8)
    shift = 4  # sub-pixel drawing
    cv2.polylines(photo, [np.round(photo_pts * (1 << shift)).astype(np.int32)], False, 255, 1, cv2.LINE_AA, shift)
    p = undistort.plan([CAM], 1)
    assert p.resample and p.width % 16 == 0 and p.height % 16 == 0 and border_inside(CAM, p.focal, p.width, p.height)
    out = undistort.resample(photo[..., None].repeat(3, 2), CAM, p.focal, p.width, p.height)[..., 0].astype(np.float64)
    cols = range(40, p.width - 40)
    rows = _line_rows(out, cols)
    fit = np.polyval(np.polyfit(np.array(cols, float), rows, 1), np.array(cols, float))
    assert np.abs(rows - fit).max() < 0.25
    assert np.abs(rows - (p.focal * 0.35 + p.height / 2)).max() < 0.35
    bent = _line_rows(photo.astype(np.float64), range(40, CAM.w - 40))
    bent_fit = np.polyval(np.polyfit(np.arange(40, CAM.w - 40, dtype=float), bent, 1), np.arange(40, CAM.w - 40))
    assert np.abs(bent - bent_fit).max() > 3.0  # it was curved


def test_plan_keeps_plain_cameras_and_refuses_mixed_sizes():
    plain = PinholeCamera(fl_x=100.0, fl_y=100.0, cx=50.0, cy=40.0, w=100, h=80)
    p = undistort.plan([plain] * 3, 2)
    assert (p.focal, p.width, p.height, p.resample) == (100.0, 96, 64, False)
    other = PinholeCamera(fl_x=100.0, fl_y=100.0, cx=60.0, cy=40.0, w=120, h=80)
    with pytest.raises(NerfpipeError, match="2 image sizes .*one transforms.json per size"):
        undistort.plan([plain, other], 1)


def _arc_scene(folder, c2w, *, bounds=None, extra=None, seed=0):
    """A transforms.json scene of random 64x48 images and a plain pinhole camera."""
    folder.mkdir(parents=True)
    (folder / "images").mkdir()
    rng = np.random.default_rng(seed)
    for i in range(len(c2w)):
        cv2.imwrite(str(folder / "images" / f"{i:02d}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    write_transforms(folder / "transforms.json", [f"images/{i:02d}.png" for i in range(len(c2w))], c2w,
                     PinholeCamera(fl_x=60.0, fl_y=60.0, cx=32.0, cy=24.0, w=64, h=48), extra=extra, bounds=bounds)
    return folder


def _arc_cameras(n=8, span_deg=100.0):
    """Cameras on an arc of radius 4 around the origin, looking at it (a wide arc like the fox)."""
    out = []
    for a in np.radians(np.linspace(-span_deg / 2, span_deg / 2, n)):
        centre = np.array([4 * np.sin(a), 0.5, 4 * np.cos(a)])
        out.append(look_at(centre, np.array([0.0, 1.0, 0.0]), centre))
    return np.stack(out)


def test_estimated_bounds_follow_the_point_the_cameras_look_at():
    c2w = _arc_cameras()  # radius 4 (and 0.5 up) around the origin, every camera looking at it
    depth = np.linalg.norm(c2w[:, :, 3], axis=1)
    assert np.allclose(estimate_bounds(c2w), np.stack([0.5 * depth, 2.5 * depth], 1), atol=1e-9)
    parallel = np.tile(np.eye(4)[:3], (4, 1, 1))
    parallel[:, 0, 3] = [0.0, 1.0, 2.0, 3.0]  # spread sqrt(1.25): axes never meet, 10 spreads it is
    assert np.allclose(estimate_bounds(parallel), [[5 * 1.25**0.5, 25 * 1.25**0.5]] * 4)


@pytest.mark.parametrize("with_bounds", [False, True])
def test_the_files_own_recentring_does_not_matter(tmp_path, with_bounds):
    """instant-ngp / nerfstudio rescale and recentre the world themselves; after nerfpipe's own
    normalisation a random similarity of the poses gives the same cameras."""
    c2w = _arc_cameras()
    rng = np.random.default_rng(7)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = q * np.sign(np.linalg.det(q))
    scale, shift = 0.33, rng.normal(size=3)
    moved = c2w.copy()
    moved[:, :, :3] = rot @ c2w[:, :, :3]
    moved[:, :, 3] = scale * c2w[:, :, 3] @ rot.T + shift
    bounds = np.tile([[2.0, 7.0]], (len(c2w), 1)) if with_bounds else None
    a = _arc_scene(tmp_path / "a", c2w, bounds=bounds)
    b = _arc_scene(tmp_path / "b", moved, bounds=None if bounds is None else bounds * scale,
                   extra={"aabb_scale": 4, "scale": scale, "offset": shift.tolist()})
    prepared = {scene: undistort.run(undistort.UndistortParams(scene=scene, factor=1)).result for scene in (a, b)}
    assert classify(scene_cameras(a)).kind == classify(scene_cameras(b)).kind == "arc"
    for kw in ({"ndc": False, "spherify": True}, {"ndc": True, "spherify": False}):
        da, db = (load_transforms(s, prepared=prepared[s], factor=1, llffhold=4, **kw) for s in (a, b))
        assert np.allclose(da.c2w.numpy(), db.c2w.numpy(), atol=1e-5)
        assert np.allclose(da.bounds, db.bounds) and da.near == pytest.approx(db.near) and da.far == pytest.approx(db.far)
        assert da.source["bounds"] == ("file" if with_bounds else "estimated")
    assert (da.height, da.width, da.focal) == (48, 64, 60.0) and da.i_test == [0, 4]
    assert np.array_equal(da.images[3].numpy(), cv2.imread(str(a / "images" / "03.png"))[..., ::-1] / np.float32(255))


@pytest.fixture(scope="module")
def tiny_fox(fox_dir, tmp_path_factory):
    """8 fox frames spread over the arc (every 7th that exists), at 135x240 (decoded at 1/8), with
    instant-ngp's cameras scaled to that size (OPENCV distortion and off-centre principal point kept)."""
    scene = tmp_path_factory.mktemp("fox")
    (scene / "images").mkdir()
    ref = json.loads((fox_dir / "transforms.reference.json").read_text())
    frames = [f for f in sorted(ref["frames"], key=lambda f: f["file_path"]) if (fox_dir / f["file_path"]).exists()][::7][:8]
    for frame in frames:
        img = cv2.imread(str(fox_dir / frame["file_path"]), cv2.IMREAD_REDUCED_COLOR_8)
        assert img.shape[:2] == (240, 135)
        cv2.imwrite(str(scene / frame["file_path"]).replace(".jpg", ".png"), img)
        frame["file_path"] = frame["file_path"].replace(".jpg", ".png")
    ref["frames"] = frames
    for key in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
        ref[key] = ref[key] / 8
    (scene / "transforms.json").write_text(json.dumps(ref))
    return scene


def test_training_on_a_transforms_scene(tiny_fox):
    rep = RecordingReporter()
    params = train.TrainParams(scene=tiny_fox, recipe="llff", run="t", device="cpu",
                               overrides=TINY + ("factor=2", "iters=20", "log_every=10", "llffhold=4"))
    out = train.run(params, rep)
    r = out.train.result
    assert r["source"] == "transforms" and r["steps"] == 20
    assert r["images"] == {"train": 6, "test": 2, "size": [64, 112]}
    assert any(s.startswith("Scene type: arc") for s in rep.infos)
    prepared = load_manifest(tiny_fox, "undistort-2")
    assert prepared["result"]["undistorted"] and prepared["result"]["size"] == [64, 112]
    assert prepared["result"]["focal"] == pytest.approx((1375.52 + 1374.49) / 2 / 8 / 2)
    dataset = json.loads((tiny_fox / "runs" / "t" / "dataset.json").read_text())
    assert not dataset["ndc"] and [s["name"] for s in dataset["normalization"]] == ["rescale", "recenter", "spherify"]
    assert dataset["source"]["bounds"] == "estimated" and dataset["names"][0] == "images/0001.png"
    assert out.eval is not None and out.eval.result["count"] == 2
    # the second time: nothing is undistorted or trained again
    again = train.run(params, RecordingReporter())
    assert not again.train.ran and load_manifest(tiny_fox, "undistort-2")["finished_at"] == prepared["finished_at"]
    assert read_transforms(tiny_fox / "transforms.json").cameras[0].k1 != 0  # the user's file is untouched
    # other poses, same photos and cameras: the prepared images stay; another camera prepares them again
    meta = json.loads((tiny_fox / "transforms.json").read_text())
    meta["frames"][0]["transform_matrix"][0][3] += 0.1
    (tiny_fox / "transforms.json").write_text(json.dumps(meta))
    assert not undistort.run(undistort.UndistortParams(scene=tiny_fox, factor=2)).ran
    meta["k1"] = 0.0
    (tiny_fox / "transforms.json").write_text(json.dumps(meta))
    assert undistort.run(undistort.UndistortParams(scene=tiny_fox, factor=2)).ran


def test_own_scene_with_lens_distortion_trains_on_undistorted_images(fern_posed):
    """A nerfpipe scene whose SfM camera is SIMPLE_RADIAL with k1 != 0 (real pycolmap on the example
    photos): train reads pinhole images made from images/ (OpenCV's undistortion map, as a reference,
    gives the same pixels), with their focal; the poses stay those of poses_bounds.npy."""
    from nerfpipe.cameras.formats import read_poses_bounds
    from nerfpipe.recipes import load_recipe
    from nerfpipe.photos import downsample

    scene, res, _ = fern_posed
    cam = read_transforms(scene / "transforms.json").cameras[0]
    assert res.result["camera"]["model"] == "SIMPLE_RADIAL" and abs(cam.k1) > 1e-3, res.result["camera"]
    recipe = load_recipe("fast", ["data.factor=8"])
    source = sources.detect_source(scene, recipe)
    assert source.undistort
    data = sources.load_scene(scene, recipe, source, RecordingReporter())
    prepared = load_manifest(scene, "undistort-8")["result"]
    assert prepared["undistorted"] and data.source["undistorted"] and data.source["images"] == "images_undistorted_8"
    assert data.focal == pytest.approx(prepared["focal"]) and [data.width, data.height] == prepared["size"]
    poses_llff, _ = read_poses_bounds(scene / "poses_bounds.npy")
    assert data.c2w.shape[0] == poses_llff.shape[0] == 20
    as_before = load_recipe("fast", ["data.factor=8", "data.undistort=false"])  # as if pinhole, for comparison
    plain_source = sources.detect_source(scene, as_before)
    assert not plain_source.undistort
    plain_data = sources.load_scene(scene, as_before, plain_source, RecordingReporter())
    assert plain_data.source["images"] == "images_8" and not plain_data.source["undistorted"]
    assert plain_data.focal == pytest.approx(poses_llff[0, 2, 4] / 8)

    # the pixels: OpenCV undistorts the full-resolution photo onto the same pinhole camera
    (w, h), f = prepared["full_size"], prepared["full_focal"]
    new_k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    map_x, map_y = cv2.initUndistortRectifyMap(_k(cam), _dist(cam), None, new_k, (w, h), cv2.CV_32FC1)
    name = res.result["images"][3]
    photo = cv2.cvtColor(cv2.imread(str(scene / "images" / name)), cv2.COLOR_BGR2RGB)
    ref = downsample(cv2.remap(photo, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), 8)
    ours = data.images[data.names.index(f"{res.result['stems'][3]}.png")].numpy()
    mse = float(np.mean((ours - ref.astype(np.float32) / 255) ** 2))
    assert mse < 1e-4, mse  # PSNR over 40 dB (measured: the same pixels)
    # ... and differ from the distorted images_8/ towards the corners, not at the centre
    plain = cv2.cvtColor(cv2.imread(str(scene / "images_8" / f"{res.result['stems'][3]}.png")), cv2.COLOR_BGR2RGB) / 255
    if plain.shape == ours.shape:
        diff = np.abs(plain - ours).mean(-1)
        hh, ww = diff.shape
        assert diff[hh // 3: 2 * hh // 3, ww // 3: 2 * ww // 3].mean() < diff[: hh // 4, : ww // 4].mean()


def test_masks_are_undistorted_as_their_images_are(tmp_path):
    """Given a folder of object masks, the stage resamples and downsamples each as its image (an object
    cut out on white): the coloured pixels of a prepared image are those its prepared mask covers.
    Without a mask for every frame it prepares none."""
    scene = tmp_path / "scene"
    (scene / "images").mkdir(parents=True)
    (scene / "masks").mkdir()
    yy, xx = np.mgrid[0:CAM.h, 0:CAM.w]
    for i, (cx, cy) in enumerate([(60, 60), (250, 180), (160, 120)]):  # near the corners, where the lens bends most
        inside = ((xx - cx) / 50.0) ** 2 + ((yy - cy) / 35.0) ** 2 <= 1.0
        photo = np.full((CAM.h, CAM.w, 3), 255, np.uint8)
        photo[inside] = (40, 90, 160)
        cv2.imwrite(str(scene / "images" / f"{i:02d}.png"), photo)
        cv2.imwrite(str(scene / "masks" / f"{i:02d}.png"), inside.astype(np.uint8) * 255)
    c2w = _arc_cameras(3)
    write_transforms(scene / "transforms.json", [f"images/{i:02d}.png" for i in range(3)], c2w, CAM)
    out = undistort.run(undistort.UndistortParams(scene=scene, factor=2, masks=scene / "masks"))
    result = out.result
    assert result["undistorted"] and result["masks"] == result["files"]
    for name in result["files"]:
        image = cv2.imread(str(scene / "images_undistorted_2" / name))
        alpha = cv2.imread(str(scene / "masks_undistorted_2" / name), cv2.IMREAD_GRAYSCALE)
        assert image.shape[:2] == alpha.shape == (result["size"][1], result["size"][0])
        coloured = image.min(axis=2) < 128
        assert coloured.sum() > 500
        assert (alpha[coloured] >= 128).all() and (~coloured[alpha > 200]).sum() == 0
    (scene / "masks" / "01.png").unlink()
    again = undistort.run(undistort.UndistortParams(scene=scene, factor=2, masks=scene / "masks"))
    assert again.ran and again.result["masks"] is None and not (scene / "masks_undistorted_2").exists()
