"""Recipes: the shipped values, checked keys with the closest valid one, overrides, round trip, the wheel."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from nerfpipe import recipes
from nerfpipe.errors import NerfpipeError
from nerfpipe.recipes import dump_recipe, load_recipe


def test_llff_recipe_has_the_papers_values():
    r = load_recipe("llff")
    assert r.model == "nerf"
    assert (r.data.factor, r.data.llffhold, r.data.ndc, r.data.bd_factor) == (8, 8, True, 0.75)
    t = r.training
    assert (t.batch_rays, t.batching, t.iters, t.loss) == (1024, "all_images", 200_000, "mse")
    m = r.model_config
    assert (m.n_samples, m.n_importance, m.use_viewdirs, m.raw_noise_std) == (64, 64, True, 1.0)
    assert (m.netdepth, m.netwidth, m.multires, m.multires_views, m.skips) == (8, 256, 10, 4, (4,))
    assert (m.lrate, m.lrate_decay) == (5e-4, 250)


def test_blender_recipe_has_the_papers_values():
    r = load_recipe("blender")
    assert (r.data.white_bkgd, r.data.half_res) == (True, True)
    assert (r.training.batching, r.training.precrop_iters, r.training.precrop_frac) == ("one_image", 500, 0.5)
    assert (r.model_config.n_importance, r.model_config.raw_noise_std, r.model_config.lrate_decay) == (128, 0.0, 500)


def test_unknown_key_names_file_key_and_closest(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('model = "nerf"\n[nerf]\nn_sample = 32\n')
    with pytest.raises(NerfpipeError) as e:
        load_recipe(str(path))
    assert str(path) in e.value.sentence and "nerf.n_sample" in e.value.sentence and "nerf.n_samples?" in e.value.sentence
    path.write_text('model = "nerf"\n[trainig]\niters = 3\n')
    with pytest.raises(NerfpipeError, match="did you mean training"):
        load_recipe(str(path))
    path.write_text('model = "nerf"\n[fast]\nx = 1\n')
    with pytest.raises(NerfpipeError, match=r"\[fast\] does not apply"):
        load_recipe(str(path))
    path.write_text('model = "nerf"\n[nerf]\nloss = "l1"\n')
    with pytest.raises(NerfpipeError, match="belongs in \\[training\\]"):
        load_recipe(str(path))


def test_wrong_types_are_rejected(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('model = "nerf"\n[training]\nloss = "l2"\n')
    with pytest.raises(NerfpipeError, match="'mse', 'smooth_l1', 'l1'"):
        load_recipe(str(path))
    path.write_text('model = "nerf"\n[data]\nfactor = "8"\n')
    with pytest.raises(NerfpipeError, match="whole number"):
        load_recipe(str(path))


def test_overrides_dotted_bare_and_typed():
    r = load_recipe("llff", ["training.iters=50", "n_samples=32", "loss=smooth_l1", "nerf.lindisp=true", "factor=4"])
    assert r.training.iters == 50 and r.model_config.n_samples == 32 and r.data.factor == 4
    assert r.training.loss == "smooth_l1" and r.model_config.loss == "smooth_l1"  # copied into the model config
    assert r.model_config.lindisp is True
    with pytest.raises(NerfpipeError, match="did you mean training.iters"):
        load_recipe("llff", ["iter=5"])
    with pytest.raises(NerfpipeError, match="^--set: unknown key nerf.n_sample; did you mean nerf.n_samples"):
        load_recipe("llff", ["nerf.n_sample=5"])
    with pytest.raises(NerfpipeError, match="key=value"):
        load_recipe("llff", ["iters"])


def test_resolved_recipe_round_trips(tmp_path):
    r = load_recipe("blender", ["iters=7", "nerf.skips=[2]", "netdepth=4"])
    path = tmp_path / "recipe.toml"
    path.write_text(dump_recipe(r))
    again = load_recipe(str(path))
    assert again.to_dict() == r.to_dict()
    assert again.model_config == r.model_config


def test_recipe_by_name_or_path_and_default(tmp_path, monkeypatch):
    with pytest.raises(NerfpipeError, match="no recipe named 'lff'.*Did you mean llff"):
        load_recipe("lff")
    with pytest.raises(NerfpipeError, match="does not exist"):
        load_recipe(str(tmp_path / "missing.toml"))
    monkeypatch.setattr(recipes, "RECIPES_DIR", tmp_path)
    (tmp_path / "llff.toml").write_text('model = "nerf"\n')
    assert recipes.default_recipe_name() == "llff"
    (tmp_path / "fast.toml").write_text('model = "fast"\n')
    assert recipes.default_recipe_name() == "fast"
    assert Path(recipes.resolve_recipe_path("llff")) == tmp_path / "llff.toml"


REPO = Path(__file__).resolve().parents[1]


def test_a_wheel_carries_the_recipes_and_finds_them_installed(tmp_path):
    """pip install from PyPI gets a wheel, not this checkout: recipes/ must travel inside the package."""
    pytest.importorskip("setuptools", reason="building a wheel without network needs setuptools in this environment")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(tmp_path / "dist"), str(REPO)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("nerfpipe-*.whl")
    shipped = {p.name: p.read_text() for p in (REPO / "recipes").glob("*.toml")}
    with zipfile.ZipFile(wheel) as zf:
        inside = {Path(n).name: zf.read(n).decode() for n in zf.namelist() if n.startswith("nerfpipe/_recipes/")}
        weights = zf.read("nerfpipe/nerf/weights/lpips_alex.npz")  # LPIPS travels too, with its licences
        assert "BSD 3-Clause" in zf.read("nerfpipe/nerf/weights/LICENSES.txt").decode()
        zf.extractall(tmp_path / "site")
    assert weights == (REPO / "nerfpipe" / "nerf" / "weights" / "lpips_alex.npz").read_bytes()
    assert inside == shipped and "llff.toml" in inside
    # the installed package (no checkout beside it) finds them by name
    probe = ("import nerfpipe.recipes as r; print(r.RECIPES_DIR); print(','.join(r.recipe_names())); "
             "print(r.load_recipe('llff').model_config.n_importance); "
             "import torch; from nerfpipe.nerf.metrics import Lpips; print(Lpips()(torch.zeros(64, 64, 3), torch.ones(64, 64, 3)) > 0)")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    assert run.returncode == 0, run.stderr[-2000:]
    where, names, n_importance, lpips_runs = run.stdout.split()
    assert lpips_runs == "True"
    assert Path(where) == (tmp_path / "site" / "nerfpipe" / "_recipes").resolve()
    assert names.split(",") == sorted(Path(n).stem for n in shipped) and n_importance == "64"
