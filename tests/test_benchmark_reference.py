"""The reference benchmark's preparation: the scene folder holds what the reference's loader reads, with
the shapes it expects, and the patches apply to the reference's lines (run itself: not in the suite)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nerfpipe.benchmarks import reference as bench
from nerfpipe.errors import NerfpipeError

REPO = Path(__file__).resolve().parents[1]
FERN_PHOTOS = REPO / "examples" / "fern" / "photos"


def _fern_like(root: Path, n: int = 4) -> Path:
    """A fern-shaped source: ``images/`` with n of the example's photos and an N x 17 poses file."""
    (root / "images").mkdir(parents=True)
    for path in sorted(FERN_PHOTOS.glob("*.JPG"))[:n]:
        (root / "images" / path.name).write_bytes(path.read_bytes())
    rot = np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, -1]])
    rows = [np.concatenate([np.concatenate([rot, [[0.1 * i], [0], [0]], [[3024], [4032], [3260]]], 1).ravel(), [1, 9]])
            for i in range(n)]
    np.save(root / "poses_bounds.reference.npy", np.stack(rows))
    return root


def test_the_fern_scene_holds_what_the_reference_reads(tmp_path):
    scene = bench.prepare_fern(_fern_like(tmp_path / "src"), tmp_path / "work", factor=8)
    shapes = bench.check_llff_layout(scene, 8)
    # the reference's _load_data: poses_bounds (N, 17) whose rows match the sorted PNGs of images_8/,
    # and a first JPG/png in images/ it reads the size of
    assert shapes == {"poses": [4, 17], "images": 4, "size": [112, 80], "folder": "images_8"}
    poses = np.load(scene / "poses_bounds.npy")
    assert np.array_equal(poses, np.load(tmp_path / "src" / "poses_bounds.reference.npy"))
    assert poses[:, :-2].reshape([-1, 3, 5]).shape == (4, 3, 5)
    names = sorted(p.name for p in (scene / "images_8").iterdir())
    assert names == [f"IMG_{4026 + i}.png" for i in range(4)]
    with Image.open(scene / "images_8" / names[0]) as img:
        assert img.mode == "RGB" and img.size == (112, 80)  # 1008x756 / 8 = 126x94, cropped to multiples of 16
    assert sorted(p.name for p in (scene / "images").iterdir())[0].endswith("jpg")
    # a folder that does not match stops with a sentence, as the reference would stop (it prints and returns)
    (scene / "images_8" / names[0]).unlink()
    with pytest.raises(NerfpipeError, match="has 3 images for 4 poses"):
        bench.check_llff_layout(scene, 8)


def _fake_reference(root: Path, drop: int | None = None) -> Path:
    """A folder with the reference's lines that the benchmark patches (not the reference itself)."""
    root.mkdir()
    lines = {p.file: [] for p in bench.PATCHES}
    for i, patch in enumerate(bench.PATCHES):
        if i != drop:
            lines[patch.file].append(patch.old)
    for name, body in lines.items():
        (root / name).write_text("import os\n" + "\n".join(body) + "\n")
    return root


def test_the_patches_apply_once_each_and_are_reported(tmp_path):
    copy, applied = bench.prepare_reference(_fake_reference(tmp_path / "ref"), tmp_path / "work")
    assert [a["file"] for a in applied] == [p.file for p in bench.PATCHES]
    assert all(a["why"] and a["line"] >= 2 for a in applied)
    patched = (copy / "run_nerf.py").read_text()
    assert f"os.environ['{bench.ITERS_ENV}']" in patched and "200000" not in patched
    assert "if torch.cuda.is_available(): torch.set_default_tensor_type" in patched
    assert "ignoregamma" not in (copy / "load_llff.py").read_text()
    assert "200000" in (tmp_path / "ref" / "run_nerf.py").read_text()  # the user's checkout is left as it was
    with pytest.raises(NerfpipeError, match="does not hold the line 'N_iters = 200000 \\+ 1' exactly once"):
        bench.prepare_reference(_fake_reference(tmp_path / "ref2", drop=2), tmp_path / "work2")
    with pytest.raises(NerfpipeError, match="has no run_nerf.py"):
        bench.prepare_reference(tmp_path, tmp_path / "work3")


def test_the_reference_log_is_read_through_its_progress_bar():
    log = ("Begin\n 33%|###| 1/3 [00:36<00:38, 19.06s/it][STEP] 1 19.05 0\r 67%|## [STEP] 2 17.02 1048576\n"
           "[TRAIN] Iter: 2 Loss: 0.1764  PSNR: 10.547\n")
    assert [m.groups() for m in bench.STEP_LINE.finditer(log)] == [("1", "19.05", "0"), ("2", "17.02", "1048576")]
    assert [m.groups() for m in bench.TRAIN_LINE.finditer(log)] == [("2", "0.1764", "10.547")]
    rows = bench.same_values({"N_rand": "1024", "perturb": "1.0", "no_ndc": "False", "no_batching": "True"},
                             {"training": {"batch_rays": 1024, "batching": "one_image"}, "nerf": {"perturb": True},
                              "data": {"ndc": True}})
    same = {r["option"]: r["same"] for r in rows}
    assert same["N_rand"] and same["perturb"] and same["no_ndc"] and same["no_batching"] and not same["N_samples"]
    json.dumps(rows)


def test_renders_are_scored_against_the_held_out_photos(tmp_path):
    scene = bench.prepare_fern(_fern_like(tmp_path / "src", n=9), tmp_path / "work", factor=8)  # held out: 0 and 8
    renders, expected = [], []
    for i, name in ((0, "IMG_4026.png"), (8, "IMG_4034.png")):
        with Image.open(scene / "images_8" / name) as img:
            truth = np.asarray(img).astype(np.float64)
        pixels = truth.copy()
        pixels[::2, ::2] = np.clip(pixels[::2, ::2] + 8 * (i + 1), 0, 255)  # a known error on a quarter of the pixels
        path = tmp_path / f"{i:03d}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        renders.append(str(path))
        expected.append(-10 * np.log10(np.mean(((pixels - truth) / 255) ** 2)))
    scored = bench.score_renders("fern", scene, 8, renders)
    assert [v["view"] for v in scored["views"]] == [0, 8]
    # at most -10 log10(0.25 (8/255)^2) = 36.1 dB for view 0 (clipping lowers the error), 17.0 dB for view 8
    assert [v["psnr"] for v in scored["views"]] == pytest.approx(expected, abs=2e-3)
    assert expected[0] >= 36.0 and 16.9 < expected[1] < expected[0]
    assert bench.score_renders("fern", scene, 8, renders[:1])["error"] == "1 renders for 2 held-out views"
