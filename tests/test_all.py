"""`nerfpipe all` end to end on a tiny real capture: 6 example fern photos at 504x378."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from nerfpipe.cache import load_manifest
from nerfpipe.cli import app
from nerfpipe.stages.train import POOR_EXIT_CODE
from nerfpipe.video import read_video

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "fern" / "photos"
RUNNER = CliRunner()


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    """A scene folder with photos/ holding 6 consecutive fern photos, halved to 504x378 (EXIF kept)."""
    scene = tmp_path_factory.mktemp("bag scene")
    (scene / "photos").mkdir()
    for path in sorted(EXAMPLE.glob("*.JPG"))[:6]:
        with Image.open(path) as img:
            img.reduce(2).save(scene / "photos" / path.name, quality=92, exif=img.getexif())
    return scene


@pytest.mark.slow
def test_all_end_to_end_then_cached_then_recipe_change(capture):
    args = ["all", str(capture), "--iters", "3", "--frames", "5", "--device", "cpu"]
    result = RUNNER.invoke(app, args)
    # three steps give no geometry: the verdict says so and the command exits 3, everything written
    assert result.exit_code == POOR_EXIT_CODE, result.output
    assert "verdict: POOR, depth" in result.output.replace("\n", " ").replace("│", " ")
    assert "Scene type: forward" in result.output
    for stage in ("ingest", "poses", "train", "render"):
        assert stage in result.output
    render = load_manifest(capture, "render-fast")["result"]
    frames, meta = read_video(capture / render["video"])
    w, h = render["size"]
    assert len(frames) == 5 and frames[0].shape == (h + h % 2, w + w % 2, 3)
    assert (w, h) == (240, 176)  # 504x378 photos -> factor 2 (about 500 px on a CPU) -> 252x189 cropped to 16s
    assert len(read_video(capture / render["depth_video"])[0]) == 5
    ingest = load_manifest(capture, "ingest")["result"]
    assert sorted(ingest["sizes"]) == ["images", "images_2", "images_4", "images_8"]
    metrics = json.loads((capture / "runs" / "fast" / "metrics.json").read_text())
    assert metrics["count"] == 1  # llffhold 8 over 6 photos holds out photo 0

    again = RUNNER.invoke(app, args)
    assert again.exit_code == POOR_EXIT_CODE, again.output
    assert again.output.count("up to date") == 5  # ingest, poses, report, train, render
    assert "ran" not in again.output.replace("Scene type", "")

    changed = RUNNER.invoke(app, ["all", str(capture), "--iters", "4", "--frames", "5", "--device", "cpu"])
    assert changed.exit_code == POOR_EXIT_CODE, changed.output
    lines = {line.split("│")[1].strip(): line for line in changed.output.splitlines() if line.count("│") > 3}
    assert "up to date" in lines["ingest"] and "up to date" in lines["poses"] and "up to date" in lines["report"]
    assert "ran" in lines["train"] and "ran" in lines["render"]
    problems = json.loads((capture / "report.json").read_text())["problems"]
    assert ("no problem found" in lines["report"]) == (not problems)  # the report's verdict stays in the summary


def test_all_on_a_missing_folder_is_one_sentence(tmp_path):
    result = RUNNER.invoke(app, ["all", str(tmp_path / "nothing here")])
    assert result.exit_code == 1 and "does not exist" in result.output and "Traceback" not in result.output
