"""The typed contract between stages (nerfpipe/stages/results.py): a stage's result reads back as its
dataclass, the JSON of a manifest is exactly that dataclass's, and a manifest without a field of its
type is a sentence naming the command that redoes the stage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nerfpipe.cache import manifest_path
from nerfpipe.errors import NerfpipeError
from nerfpipe.progress import RecordingReporter
from nerfpipe.stages import ingest
from nerfpipe.stages.results import IngestResult, PoseCheck, PosesResult, load_result, result_type

REPO = Path(__file__).resolve().parents[1]
FERN_PHOTOS = REPO / "examples" / "fern" / "photos"


def test_ingest_result_round_trips_through_its_manifest(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("IMG_4026.JPG", "IMG_4027.JPG", "IMG_4028.JPG"):
        shutil.copy(FERN_PHOTOS / name, photos / name)
    scene = tmp_path / "s"
    res = ingest.run(ingest.IngestParams(photos=photos, scene=scene, factors=(8,)), RecordingReporter())
    typed = load_result(scene, "ingest")
    assert isinstance(typed, IngestResult) and typed == res.value
    assert typed.to_dict() == json.loads(manifest_path(scene, "ingest").read_text())["result"]
    assert typed.images == ["IMG_4026.jpg", "IMG_4027.jpg", "IMG_4028.jpg"]
    assert typed.sizes["images"] == [1008, 756] and "images_8" in typed.sizes and typed.background_kind == "photo" and typed.mask_folder is None
    assert typed.stem_of["IMG_4027.jpg"] == "IMG_4027"

    # a manifest of the same stage version without a field of the type: a sentence, not a KeyError
    path = manifest_path(scene, "ingest")
    manifest = json.loads(path.read_text())
    del manifest["result"]["stems"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(NerfpipeError, match=r"no 'stems' in its manifest\): run `nerfpipe ingest PHOTOS --scene .* --force`"):
        load_result(scene, "ingest")
    assert load_result(tmp_path / "nowhere", "poses") is None


def test_poses_result_of_real_sfm_is_typed_to_the_pose_check(fern_posed):
    scene, res, _ = fern_posed
    posed = res.value
    assert isinstance(posed, PosesResult) and isinstance(posed.pose_check, PoseCheck)
    assert posed.to_dict() == res.result  # the manifest's JSON is the dataclass's, nested record and all
    assert (posed.width, posed.height) == (1008, 756) and posed.focal == pytest.approx(posed.hwf[2])
    assert load_result(scene, "poses") == posed


def test_every_stage_name_has_a_result_type():
    names = {"ingest": "IngestResult", "poses": "PosesResult", "report": "ReportResult",
             "import-colmap": "ColmapSourceResult", "train-fast": "TrainResult", "eval-fast": "EvalResult",
             "render-fast": "RenderResult", "export": "CameraExportResult", "export-fast": "FieldExportResult",
             "undistort-8": "UndistortResult"}
    assert {name: result_type(name).__name__ for name in names} == names
    with pytest.raises(KeyError):
        result_type("nonsense")
