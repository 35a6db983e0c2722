"""The typed contract between stages: each stage's result as a dataclass, and :func:`load_result` to read one back.

A stage body returns one of these; the cache writes it (``dataclasses.asdict``) as its manifest's
``result`` and hands it back, typed, as ``StageResult.value`` (the stage names its type to
``run_stage``). A later stage, the CLI or a benchmark reads
another stage's result with ``load_result(scene, "poses") -> PosesResult``, never by string keys into
the manifest. The JSON is what the manifests held before these types existed, so finished stages stay
finished. Nested records that only one place writes and one place prints stay plain dicts; the ones
read in several places (the pose check, the verdict) are types of their own.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from nerfpipe.cache import load_manifest, require_manifest, typed_result

T = TypeVar("T")


class Record:
    """A result type: built from its manifest's JSON (unknown keys ignored, nested records built too)."""

    @classmethod
    def from_dict(cls: type[T], data: dict) -> T:
        hints = _hints(cls)
        values = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in data:
                values[f.name] = _build(hints[f.name], data[f.name])
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise KeyError(f.name)
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(hint: Any, value: Any) -> Any:
    """``value`` as ``hint`` when that is a record (or an optional one); anything else as it is."""
    if value is None:
        return None
    for option in (typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)):
        if isinstance(option, type) and issubclass(option, Record):
            return option.from_dict(value)
    return value


# --------------------------------------------------------------------------------------------------
# ingest

BackgroundKind = Literal["photo", "white", "cut_out", "masked", "masked_on_white"]
"""The photos as they are; cut out on white or on transparency (found by ingest); with the user's
masks, kept whole for training or cut out on white with them."""
ON_WHITE_KINDS = ("white", "cut_out", "masked_on_white")
"""Scenes trained as an object on white (white background, the box of the object's points)."""


@dataclass(frozen=True)
class IngestResult(Record):
    photos_dir: str
    images: list[str]
    """Names in images/, in natural order."""
    stems: list[str]
    sources: dict[str, str]
    """images/ name -> the file in the photo folder it came from (a video's name for its frames)."""
    videos: list[str]
    frames: dict[str, dict]
    """images/ name -> where in its video a frame was taken (frames only)."""
    skipped: list[dict]
    """{'file', 'reason'} of each input left out."""
    sizes: dict[str, list[int]]
    """Folder (images, images_4, ...) -> [width, height]."""
    factors: list[int]
    background: dict
    """{'kind': BackgroundKind, 'cut_out_photos', 'masks'} and, for masks given to ingest, 'from'."""
    body_seconds: float

    @property
    def background_kind(self) -> BackgroundKind:
        return self.background.get("kind", "photo")

    @property
    def mask_folder(self) -> str | None:
        """The scene's object masks folder (photos cut out on white or on transparency, or masks given to
        ingest with --masks), or None."""
        return self.background.get("masks") if self.background_kind != "photo" else None

    @property
    def stem_of(self) -> dict[str, str]:
        return dict(zip(self.images, self.stems))


# --------------------------------------------------------------------------------------------------
# poses

PoseCheckKind = Literal["consistent", "doubtful_photos", "inconsistent"]


@dataclass(frozen=True)
class PoseCheck(Record):
    """Do the matches agree with the recovered cameras (see ``stages.poses.pose_check``)?"""

    result: PoseCheckKind
    unexplained: float
    unexplained_in_fitted_pairs: float
    wrong_pairs: int
    pairs: int
    median_photo: float
    photos: dict[str, float]
    doubtful: list[str]
    sentence: str | None
    threshold_px: float


@dataclass(frozen=True)
class PosesResult(Record):
    images: list[str]
    """The registered photos, in the order of the rows of poses_bounds.npy."""
    stems: list[str]
    unregistered: list[str]
    registered: int
    photos: int
    hwf: list[float]
    """[height, width, focal] of images/ (the mean focal with a camera per photo)."""
    camera: dict
    """{'mode': 'single' | 'per_image', 'model', 'focal_px', 'k1'}."""
    points3D: int
    observations: int
    mean_reprojection_error_px: float
    reprojection_error_pixels_of: list[int]
    near_far_range: list[float]
    pose_check: PoseCheck | None
    matcher: str
    masks: str | None
    pairs: int
    verified_pairs: int
    models: list[int]
    mapping_attempts: int
    sfm_factor: float
    sfm_size: list[int]
    seconds: dict[str, float]
    pycolmap: str

    @property
    def height(self) -> int:
        return int(self.hwf[0])

    @property
    def width(self) -> int:
        return int(self.hwf[1])

    @property
    def focal(self) -> float:
        return float(self.hwf[2])


# --------------------------------------------------------------------------------------------------
# report

@dataclass(frozen=True)
class ReportResult(Record):
    photos: int
    registered: int
    problems: int
    sentences: list[str]
    files: list[str]


# --------------------------------------------------------------------------------------------------
# undistort, and the sparse model of a COLMAP source

@dataclass(frozen=True)
class UndistortResult(Record):
    names: list[str]
    files: list[str]
    focal: float
    size: list[int]
    full_focal: float
    full_size: list[int]
    undistorted: bool
    masks: list[str] | None = None
    """Per frame, its object mask prepared like the image (PNG in ``masks_undistorted_<k>/``), when the stage was given masks."""


@dataclass(frozen=True)
class ColmapSourceResult(Record):
    images: int
    points: int
    model: str


# --------------------------------------------------------------------------------------------------
# train and eval

@dataclass(frozen=True)
class TrainResult(Record):
    run: str
    run_dir: str
    """runs/RUN, relative to the scene."""
    model: str
    recipe: str
    source: str
    device: str
    tf32: bool
    steps: int
    stopped: str
    steps_this_session: int
    train_seconds: float
    s_per_it: float
    load_seconds: float
    last: dict | None
    images: dict
    """{'train': count, 'test': count, 'size': [width, height]}."""
    focal: float
    scene_type: str | None
    normalization: dict
    scene_box: dict
    checkpoint: str


VerdictKind = Literal["good", "doubtful_views", "doubtful_geometry", "doubtful_poses", "poor"]


@dataclass(frozen=True)
class Verdict(Record):
    """Held-out against training PSNR, the held-out depth and the pose check (see ``stages.evaluation.verdict``)."""

    result: VerdictKind
    gap_db: float
    test_psnr: float
    train_psnr: float
    poor_gap_db: float
    worst_views: list[str]
    sentence: str
    depth_rel_error_median: float | None = None
    """The held-out views' mean depth figure the verdict weighed (None without a sparse model)."""
    pose_check: str | None = None
    """The pose check's result it weighed (None without one)."""


@dataclass(frozen=True)
class EvalResult(Record):
    """metrics.json less its per-view list (the manifest keeps the means)."""

    mean: dict[str, float]
    train_views: list[dict]
    train_psnr: float | None
    verdict: Verdict | None
    count: int
    size: list[int]
    lpips: str
    seconds: float
    s_per_view: float
    chunk: int
    run: str
    step: int
    """The checkpoint's step."""
    checkpoint: str


# --------------------------------------------------------------------------------------------------
# render and export

@dataclass(frozen=True)
class RenderResult(Record):
    run: str
    video: str
    """The colour video, relative to the scene."""
    depth_video: str
    path: str
    """spiral, circle, arc or turntable."""
    frames: int
    size: list[int]
    fps: int
    checkpoint_step: int
    device: str
    seconds_per_frame: float


@dataclass(frozen=True)
class CameraExportResult(Record):
    points: int
    frames: int
    aabb_scale: int
    registered: int | None
    folder: str


@dataclass(frozen=True)
class FieldExportResult(Record):
    run: str
    folder: str
    step: int
    mesh: dict | None
    """{'file', 'vertices', 'faces', 'resolution', 'level', 'level_from', 'box', 'space'}; None: no surface."""
    depth_points: dict
    """{'file', 'points', 'views', 'stride'}."""


# --------------------------------------------------------------------------------------------------
# reading

_BY_NAME: dict[str, type[Record]] = {"ingest": IngestResult, "poses": PosesResult, "report": ReportResult,
                                     "import-colmap": ColmapSourceResult, "export": CameraExportResult}
_BY_PREFIX: dict[str, type[Record]] = {"train-": TrainResult, "eval-": EvalResult, "render-": RenderResult,
                                       "export-": FieldExportResult, "undistort-": UndistortResult}


def result_type(stage: str) -> type[Record]:
    """The result type of the stage named ``stage`` (a manifest name: 'poses', 'train-RUN', ...)."""
    if stage in _BY_NAME:
        return _BY_NAME[stage]
    for prefix, kind in _BY_PREFIX.items():
        if stage.startswith(prefix):
            return kind
    raise KeyError(f"no result type for the stage {stage!r}")


def load_result(scene: Path, stage: str) -> Any:
    """The typed result of the finished stage ``stage`` of ``scene``, or None when it never finished.

    A manifest that lacks a field of its type (written by an older nerfpipe of the same stage version)
    ends in a sentence that says how to redo the stage.
    """
    manifest = load_manifest(Path(scene), stage)
    if manifest is None:
        return None
    return typed_result(Path(scene), stage, manifest["result"], result_type(stage))


def require_result(scene: Path, stage: str, needed_by: str) -> Any:
    """:func:`load_result`, and a sentence that says which command to run first when ``stage`` never finished."""
    return typed_result(Path(scene), stage, require_manifest(Path(scene), stage, needed_by)["result"], result_type(stage))

