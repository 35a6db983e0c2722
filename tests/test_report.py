"""The capture report: the problem rules on hand-made numbers, the measures on a real photo, the
figure, one real run (ingest + pycolmap poses + report) on five fern photos and a blurred sixth, and
the reasons for unregistered photos on test_poses.py's mixed capture (fern, fox and lego photos).

The real scene is built as in test_poses.py: example fern photos (1008x756, iPhone EXIF), SfM on
504x378 copies (sfm_size 512), a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFilter
from typer.testing import CliRunner

from nerfpipe.capture import figure, measurements, rules, wording
from nerfpipe.cache import load_manifest
from nerfpipe.cli import app
from nerfpipe.errors import NerfpipeError
from nerfpipe.progress import RecordingReporter
from nerfpipe.stages import ingest, pipeline, poses
from nerfpipe.stages import report as rp

REPO = Path(__file__).resolve().parents[1]
FERN_PHOTOS = REPO / "examples" / "fern" / "photos"
RUNNER = CliRunner()
DEPTH = 20.0
"""Scene depth of the hand-made captures: steps of 1 between cameras are 5% of it (fern: 2.5 to 10%)."""


def fern(i: int) -> Path:
    return FERN_PHOTOS / f"IMG_{4026 + i}.JPG"


def photo(n: int, *, sharp: float = 1.0, mean: float = 0.5, dark: float = 0.0, bright: float = 0.0,
          registered: bool = True, neighbours=None, points: int = 800, x: float | None = None,
          forward=(0.0, 0.0, 1.0)) -> rules.PhotoStats:
    """Photo number n (p07.jpg): by default sharp, well exposed, registered, at (n, 0, 0) looking along +z."""
    return rules.PhotoStats(
        number=n, name=f"p{n:02d}.jpg", sharpness=1000.0 * sharp, relative_sharpness=sharp, mean_luminance=mean,
        dark_fraction=dark, bright_fraction=bright, registered=registered,
        neighbours=list(neighbours) if neighbours is not None else [],
        points3D=points if registered else None,
        centre=[float(n if x is None else x), 0.0, 0.0] if registered else None,
        forward=list(forward) if registered else None,
    )


def capture(n: int, changes: dict | None = None) -> list[rules.PhotoStats]:
    """n good photos, each matched with every other; changes[k] = keyword overrides for photo k."""
    changes = changes or {}
    out = []
    for k in range(1, n + 1):
        kw = {"neighbours": [j for j in range(1, n + 1) if j != k], **changes.get(k, {})}
        out.append(photo(k, **kw))
    return out


def kinds(problems) -> list[str]:
    return [p.kind for p in problems]


# --------------------------------------------------------------------------------------------------
# Wording


def test_ranges_and_names():
    assert wording.photo_ranges([5, 3, 4, 9, 12, 13]) == [(3, 5), (9, 9), (12, 13)]
    assert wording.photo_ranges([]) == []
    names = {n: f"p{n:02d}.jpg" for n in range(1, 41)}
    assert wording.describe_photos([12, 13, 14, 15], names) == "photos 12 to 15 (p12.jpg to p15.jpg)"
    assert wording.describe_photos([7], names) == "photo 7 (p07.jpg)"
    assert wording.describe_photos([9, 3, 4], names) == "photos 3, 4 and 9 (p03.jpg, p04.jpg and p09.jpg)"
    # names are left out when they would make the sentence long
    assert wording.describe_photos(list(range(1, 40, 2)), names) == (
        "photos 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 33, 35, 37 and 39"
    )


def test_a_good_capture_has_no_problem():
    problems = rules.find_problems(capture(10), scene_points=5000, scene_depth=DEPTH)
    assert problems == [] and rules.sentences(problems) == [rules.FINE]


# --------------------------------------------------------------------------------------------------
# The rules, on hand-made numbers


def test_blurred_runs_are_grouped():
    sharp = {3: 0.2, 4: 0.3, 5: 0.25, 7: 0.1, 8: 0.45}  # 0.45 is above BLURRED_BELOW = 0.4: not blurred
    photos = capture(9, {k: {"sharp": v} for k, v in sharp.items()})
    problems = rules.find_problems(photos, 5000, DEPTH)
    assert kinds(problems) == ["blurred", "blurred"]
    assert problems[0].photos == (3, 4, 5) and problems[1].photos == (7,)
    assert problems[0].sentence == (
        "Photos 3 to 5 (p03.jpg to p05.jpg) are blurred (sharpness 20% to 30% of the median photo's): "
        "retake them or drop them."
    )
    assert problems[1].sentence == "Photo 7 (p07.jpg) is blurred (sharpness 10% of the median photo's): retake it or drop it."


def test_exposure():
    photos = capture(8, {2: {"dark": 0.4, "mean": 0.2}, 5: {"bright": 0.3, "mean": 0.7}, 7: {"mean": 0.25},
                           8: {"mean": 0.4}})
    problems = rules.find_problems(photos, 5000, DEPTH)
    assert kinds(problems) == ["under_exposed", "over_exposed", "darker"]
    assert problems[0].sentence.startswith("Photo 2 (p02.jpg) is under-exposed (40% of the pixels black")
    assert problems[1].sentence.startswith("Photo 5 (p05.jpg) is over-exposed (30% of the pixels blown white)")
    # 0.25 against a median of 0.5: 2.2 * log2(0.5) = -2.2 stops; 0.4 is -0.7 stops, within one stop
    assert rules.stops_from_median(0.25, 0.5) == pytest.approx(-2.2)
    assert problems[2].photos == (7,) and "up to 2.2 stops darker than the median photo" in problems[2].sentence
    assert "lock the exposure" in problems[2].sentence


def _still_capture(x: list[float], changes: dict | None = None) -> list[rules.PhotoStats]:
    photos = capture(len(x), changes)
    for p, xi in zip(photos, x):
        if p.registered:
            p.centre = [xi, 0.0, 0.0]
    return photos


def test_hardly_moved_run_is_found():
    # photos 1-3 a step of 1 apart, 3 to 9 within a millimetre of each other, then steps of 1 again
    x = [0, 1, 2] + [2 + 0.001 * k for k in range(1, 7)] + [3.006, 4.006, 5.006]
    problems = rules.find_problems(_still_capture(x), 5000, DEPTH)
    assert kinds(problems) == ["hardly_moved"]
    assert problems[0].photos == tuple(range(3, 10))
    assert problems[0].sentence == (
        "The camera hardly moved between photos 3 and 9 (p03.jpg and p09.jpg): step sideways between shots "
        "(about a hand's width for a close subject) so that each photo sees the scene from a new place."
    )
    # an unregistered photo inside the run does not break it; turning on the spot is said
    turning = {k: {"forward": (np.sin(np.radians(10 * (k - 3))), 0.0, np.cos(np.radians(10 * (k - 3))))}
               for k in range(3, 10)}
    turning[5] = {"registered": False, "neighbours": [4, 6]}
    problems = rules.hardly_moved_problems(_still_capture(x, turning), DEPTH)
    assert [p.photos for p in problems] == [(3, 4, 6, 7, 8, 9)]
    assert "between photos 3 and 9 (p03.jpg and p09.jpg), turning 60 degrees on the spot: step" in problems[0].sentence


def test_hardly_moved_whole_capture_and_single_pause():
    # a tripod: every step 0.05 (0.25% of the depth), all alike, so only the depth rule sees it
    problems = rules.hardly_moved_problems(_still_capture([0.05 * k for k in range(8)]), DEPTH)
    assert [p.photos for p in problems] == [tuple(range(1, 9))]
    # two photos from one spot (one still step) are harmless
    assert rules.hardly_moved_problems(_still_capture([0, 1, 2, 2.0001, 3, 4]), DEPTH) == []
    # the same steps in a scene 100x deeper are still: parallax is what counts
    assert rules.still_runs(np.array([[k, 0.0, 0.0] for k in range(5)]), np.tile([0.0, 0.0, 1.0], (5, 1)), 2000.0) == [
        (0, 4, 0.0)
    ]


def test_unregistered_reasons_come_from_the_matches():
    # photos 1-6 registered and matched with each other; 7 matches nothing; 8 and 9 only each other;
    # 10 matches three registered photos yet was not placed
    changes = {k: {"neighbours": [j for j in range(1, 7) if j != k] + ([10] if k <= 3 else [])} for k in range(1, 7)}
    changes[7] = {"registered": False, "neighbours": []}
    changes[8] = {"registered": False, "neighbours": [9]}
    changes[9] = {"registered": False, "neighbours": [8]}
    changes[10] = {"registered": False, "neighbours": [1, 2, 3]}
    problems = rules.unregistered_problems(capture(10, changes))
    assert [p.photos for p in problems] == [(7,), (8, 9), (10,)]
    apart, separate, disagree = (p.sentence for p in problems)
    assert apart == (
        "1 of 10 photos did not register (photo 7, p07.jpg) because it matches too few other photos, as if facing "
        "away from the rest or showing something else: take photos in between that overlap both, or drop it."
    )
    assert separate.startswith("2 of 10 photos did not register (photos 8 and 9, p08.jpg and p09.jpg) because they "
                               "match each other but none of the rest")
    assert disagree.startswith("1 of 10 photos did not register (photo 10, p10.jpg) although it matches 3 registered")
    # a photo matched with only one registered photo counts as apart
    changes[10] = {"registered": False, "neighbours": [1]}
    problems = rules.unregistered_problems(capture(10, changes))
    assert [p.photos for p in problems] == [(7, 10), (8, 9)]
    assert problems[0].sentence.startswith("2 of 10 photos did not register (photos 7 and 10, p07.jpg and p10.jpg) "
                                           "because they match too few other photos")


def test_few_neighbours_and_few_points():
    photos = capture(8, {4: {"neighbours": [3]}, 6: {"points": 50}})
    problems = rules.find_problems(photos, scene_points=150, scene_depth=DEPTH)
    assert kinds(problems) == ["few_neighbours", "few_points", "few_scene_points"]
    assert problems[0].sentence.startswith("Photo 4 (p04.jpg) matches only 1 other photo, so its camera position")
    assert problems[1].sentence.startswith("Photo 6 (p06.jpg) sees fewer than 100 3D points")
    assert problems[2].photos == () and "only 150 3D points (under 200)" in problems[2].sentence


def test_neighbours_from_inlier_counts():
    names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    inliers = {("a.jpg", "b.jpg"): 200, ("a.jpg", "c.jpg"): measurements.NEIGHBOUR_MIN_INLIERS - 1, ("b.jpg", "c.jpg"): 30,
               ("c.jpg", "zzz.jpg"): 500}  # a name not in the scene is ignored
    assert measurements.neighbours_of(names, inliers) == {"a.jpg": [2], "b.jpg": [1, 3], "c.jpg": [2], "d.jpg": []}


# --------------------------------------------------------------------------------------------------
# Measures on a real photo


def test_sharpness_orders_a_photo_and_its_blurred_copy():
    rgb = measurements.read_rgb(fern(0))
    sharp = measurements.measure(rgb)
    blurred = measurements.measure(cv2.GaussianBlur(rgb, (0, 0), 2.0))
    slightly = measurements.measure(cv2.GaussianBlur(rgb, (0, 0), 0.5))
    assert sharp.sharpness > slightly.sharpness > blurred.sharpness
    assert blurred.sharpness / sharp.sharpness < rules.BLURRED_BELOW < slightly.sharpness / sharp.sharpness
    # the measure is taken at a fixed size: the same photo twice as large measures about the same
    bigger = measurements.measure(cv2.resize(rgb, (2016, 1512), interpolation=cv2.INTER_CUBIC))
    assert bigger.sharpness == pytest.approx(sharp.sharpness, rel=0.25)
    # exposure: fern is mid-grey with a little sky; a copy at 15% of the light is under-exposed
    assert 0.4 < sharp.mean_luminance < 0.7 and sharp.dark_fraction < 0.01
    dark = measurements.measure((rgb * 0.15).astype(np.uint8))
    assert dark.mean_luminance < rules.UNDER_EXPOSED_MEAN


def test_measuring_folder():
    assert measurements.measuring_folder({"images": [4032, 3024], "images_4": [1008, 752], "images_8": [496, 368]}) == "images_4"
    assert measurements.measuring_folder({"images": [1008, 756], "images_2": [496, 368]}) == "images"
    assert measurements.measuring_folder({"images": [640, 480]}) == "images"


# --------------------------------------------------------------------------------------------------
# The figure


def _ring(n: int, radius: float = 5.0):
    """n cameras on a circle in the z = 0 plane looking at the origin, world up +z."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    centres = np.stack([radius * np.cos(t), radius * np.sin(t), np.zeros(n)], axis=1)
    return centres, -centres / radius, np.tile([0.0, 0.0, 1.0], (n, 1))


def test_plane_basis_looks_from_above():
    centres = np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]])
    right, ahead, up = figure.plane_basis(np.tile([0.0, 0, 1], (3, 1)), np.tile([0.0, 1, 0], (3, 1)), centres)
    assert np.allclose(up, [0, 0, 1]) and np.allclose(ahead, [0, 1, 0]) and np.allclose(right, [1, 0, 0])
    # cameras all around: the mean viewing direction vanishes, the basis is still orthonormal
    centres, forwards, ups = _ring(12)
    right, ahead, up = figure.plane_basis(ups, forwards, centres)
    assert np.allclose(np.stack([right, ahead, up]) @ np.stack([right, ahead, up]).T, np.eye(3), atol=1e-9)


def test_figure_is_an_image_of_the_expected_size():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(size=(3000, 3)), [[1000.0, 1000.0, 0.0]]])  # one far outlier
    centres, forwards, ups = _ring(12)
    flagged = [k == 3 for k in range(12)]
    img = figure.draw_topdown(points, centres, forwards, ups, [str(k + 1) for k in range(12)], flagged, "title", "footer")
    assert img.shape == (figure.FIGURE_SIZE[1], figure.FIGURE_SIZE[0], 3) and img.dtype == np.uint8
    # the outlier did not shrink the view: the ring of cameras spans most of the figure
    blue = np.argwhere(np.all(img == (170, 90, 20), axis=2))
    assert np.ptp(blue[:, 1]) > 0.6 * figure.FIGURE_SIZE[0]
    assert np.any(np.all(img == (40, 40, 220), axis=2))  # the flagged camera is red
    # a forward-facing cluster far from its points gets an enlarged inset; no camera at all still draws
    small = figure.draw_topdown(points + [0, 0, 50], centres * 0.02, np.tile([0.0, 0, 1], (12, 1)),
                            np.tile([0.0, -1, 0], (12, 1)), [str(k) for k in range(12)], [False] * 12, "t", "f")
    assert small.shape == img.shape and np.any(np.all(small == (170, 90, 20), axis=2))
    empty = figure.draw_topdown(points, np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3)), [], [], "t", "f")
    assert empty.shape == img.shape


# --------------------------------------------------------------------------------------------------
# A real scene: five fern photos and a blurred copy of a sixth


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[Path, str]:
    """(scene, output of `nerfpipe poses`): photos 1-5 are fern photos, photo 6 a blurred one."""
    root = tmp_path_factory.mktemp("report scene")
    (root / "photos").mkdir()
    for i in range(5):
        (root / "photos" / fern(i).name).write_bytes(fern(i).read_bytes())
    with Image.open(fern(5)) as img:
        img.filter(ImageFilter.GaussianBlur(3)).save(root / "photos" / fern(5).name, quality=92, exif=img.info["exif"])
    ingest.run(ingest.IngestParams(photos=root / "photos", scene=root, factors=(8,)))
    out = RUNNER.invoke(app, ["poses", str(root), "--sfm-size", "512", "--threads", "2"])
    assert out.exit_code == 0, out.output
    return root, out.output


def test_poses_prints_the_report(scene):
    root, output = scene
    assert "capture report" in output and "Photo 6 (IMG_4031.jpg) is blurred" in output
    assert str(root / "report.json") in output and str(root / "report.png") in output
    assert "black/white" not in output  # the per-photo table is for `nerfpipe report`


def test_report_command_on_a_real_scene(scene):
    root, _ = scene
    out = RUNNER.invoke(app, ["report", str(root)])
    assert out.exit_code == 0, out.output
    assert "IMG_4026.jpg" in out.output and "matched" in out.output  # the table
    data = json.loads((root / "report.json").read_text())
    photos = data["photos"]
    assert [p["name"] for p in photos] == [f"IMG_{4026 + i}.jpg" for i in range(6)]
    assert photos[5]["relative_sharpness"] < rules.BLURRED_BELOW < min(p["relative_sharpness"] for p in photos[:5])
    blurred = [p for p in data["problems"] if p["kind"] == "blurred"]
    assert [p["photos"] for p in blurred] == [[6]] and blurred[0]["names"] == ["IMG_4031.jpg"]
    assert blurred[0]["sentence"] in out.output and data["sentences"][0] == data["problems"][0]["sentence"]
    poses = load_manifest(root, "poses")["result"]
    for p in photos[:5]:  # the sharp fern photos register and match each other
        assert p["registered"] and p["points3D"] > rules.FEW_POINTS_PER_PHOTO and set(p["neighbours"]) >= {1, 2, 3, 4, 5} - {p["number"]}
        assert len(p["centre"]) == 3 and np.linalg.norm(p["forward"]) == pytest.approx(1, abs=1e-4)
    assert [p["name"] for p in photos if p["registered"]] == poses["images"]
    assert data["summary"]["points3D"] == poses["points3D"] and data["summary"]["measured_on"] == "images"
    png = cv2.imread(str(root / "report.png"))
    assert png is not None and png.shape == (figure.FIGURE_SIZE[1], figure.FIGURE_SIZE[0], 3)
    # cached: a second run measures nothing and rewrites nothing
    before = (root / "report.json").stat().st_mtime_ns
    again = rp.run(rp.ReportParams(scene=root))
    assert not again.ran and (root / "report.json").stat().st_mtime_ns == before
    # `nerfpipe all` says the same sentences after poses, as warnings
    reporter = RecordingReporter()
    pipeline.capture_report(root, reporter)
    assert blurred[0]["sentence"] in reporter.warnings and str(root / "report.png") in reporter.infos[-1]


def test_report_needs_ingest_then_poses(tmp_path):
    out = RUNNER.invoke(app, ["report", str(tmp_path / "missing")])
    assert out.exit_code == 1 and "does not exist" in out.output and "Traceback" not in out.output
    out = RUNNER.invoke(app, ["report", str(tmp_path)])
    assert out.exit_code == 1 and "run `nerfpipe ingest" in out.output and "Traceback" not in out.output
    (tmp_path / "photos").mkdir()
    for i in range(3):
        (tmp_path / "photos" / fern(i).name).write_bytes(fern(i).read_bytes())
    ingest.run(ingest.IngestParams(photos=tmp_path / "photos", scene=tmp_path, factors=(8,)))
    out = RUNNER.invoke(app, ["report", "--scene", str(tmp_path)])
    assert out.exit_code == 1 and "run `nerfpipe poses" in out.output and "Traceback" not in out.output
    with pytest.raises(NerfpipeError, match="no camera poses yet"):
        rp.run(rp.ReportParams(scene=tmp_path))
    assert not (tmp_path / "report.json").exists()


def test_unregistered_reasons_on_a_real_scene(tmp_path, lego_dir, fox_dir):
    """test_poses.py's mixed capture: six fern photos, three fox frames that match each other only, a lego view."""
    from test_poses import _params, _scene

    sources = {f"IMG_{4026 + i}.JPG": fern(i) for i in range(6)}
    sources.update({f"fox_{n}.jpg": fox_dir / "images" / f"{n}.jpg" for n in ("0001", "0004", "0007")})
    sources["lego_r_0.jpg"] = lego_dir / "train" / "r_0.png"
    scene = _scene(tmp_path, sources)
    poses.run(_params(scene, threads=2))
    rp.run(rp.ReportParams(scene=scene))
    unregistered = [p for p in json.loads((scene / "report.json").read_text())["problems"] if p["kind"] == "unregistered"]
    assert [p["photos"] for p in unregistered] == [[10], [7, 8, 9]]
    assert unregistered[0]["sentence"].startswith("1 of 10 photos did not register (photo 10, lego_r_0.jpg) because it "
                                                  "matches too few other photos")
    assert "(photos 7 to 9, fox_0001.jpg to fox_0007.jpg) because they match each other but none of the rest" in (
        unregistered[1]["sentence"])


def test_every_problem_the_report_makes_is_a_problem_kind():
    import ast
    from typing import get_args

    kinds = set(get_args(rules.ProblemKind))
    tree = ast.parse(Path(rules.__file__).read_text())
    made = {node.args[0].value for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "Problem" and isinstance(node.args[0], ast.Constant)}
    assert len(made) >= 8 and made <= kinds, made - kinds
