"""The one adapter for pycolmap: every pycolmap call in nerfpipe goes through this module.

Pinned to pycolmap 4.2 (pyproject: ``pycolmap>=4.2,<5``). pycolmap's API drifts between releases
(``cam_from_world`` became a method, ``Database(path)`` became ``Database.open(path)``); when it drifts
again, this is the only file to change. Facts this module relies on, measured on 4.2.1
(``../shared/notes/pycolmap-4.2.1.md``):

- ``max_image_size=-1`` means 3200 px for SIFT, not "full resolution": we pass the copy's own size.
- The default RANSAC seed (-1) makes verification vary run to run: every seed is set from ``seed``.
- ``num_threads`` is set in the four places it exists (extraction, matching, mapper, pipeline).
- ``num_verified_image_pairs()`` also counts pairs that failed verification: we count inliers.
- Extraction and matching take no progress callback; they commit one row per image (keypoints) and
  per pair (two-view geometry) to the database, which is in WAL mode, so the progress callbacks
  here are fed by counting those rows (through pycolmap's own ``Database``) while pycolmap runs in
  a worker thread. Mapping calls back on every registered image. No log is parsed.
- Each long call runs in a worker thread with a ``CancellationToken``; Ctrl-C cancels it. pycolmap
  then returns at once while its own threads finish the block of work they hold (an image or two,
  the rest of the pairs, a model), and tearing the interpreter down under them crashes (SIGSEGV in
  faiss at exit). So after a cancelled call the process ends from an ``atexit`` hook with
  ``os._exit(130)``, skipping that teardown; what the stage wrote is in its temporary folder, which
  the stage cache has already removed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Literal, Sequence

import numpy as np

from nerfpipe.scene import natural_key


class _ImportedOnUse:
    """pycolmap, imported where it is first used: training, evaluating and rendering a scene whose
    poses are given import this module (through the scene's sources) and never need pycolmap, so
    they run where it is not installed (a GPU machine that gets only torch and the checkout)."""

    def __getattr__(self, name: str):
        import pycolmap as module

        globals()["pycolmap"] = module
        return getattr(module, name)


pycolmap = _ImportedOnUse()

MIN_PAIR_INLIERS = 15
"""A pair counts as matched with at least this many geometrically verified matches (COLMAP's default)."""
POLL_SECONDS = 0.2
"""How often progress is read from the database while extraction or matching runs."""

Progress = Callable[[int], None]
"""Called with the number of items done so far (images, pairs or registered images)."""

CameraMode = Literal["single", "per_image"]


@dataclass(frozen=True)
class SfmSettings:
    """How pycolmap is run; everything that changes the result is here."""

    camera_mode: CameraMode = "single"
    """One shared camera for all photos (one phone), or one camera per photo."""
    camera_model: str = "SIMPLE_RADIAL"
    """COLMAP camera model: focal, principal point (kept at the centre), one radial term."""
    max_num_features: int = 8192
    """SIFT features kept per image."""
    num_threads: int = 2
    seed: int = 0
    """Seed of every RANSAC and of the mapper."""


@contextlib.contextmanager
def colmap_logging(verbose: bool) -> Iterator[None]:
    """COLMAP's own log: everything when verbose, else nothing (nerfpipe says what failed). Restored on exit."""
    old = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 0 if verbose else 3
    try:
        yield
    finally:
        if not _ABANDONED_WORK:  # else pycolmap's threads may still log: stay quiet until the exit
            pycolmap.logging.minloglevel = old


_ABANDONED_WORK = False
"""True once a pycolmap call was cancelled: its threads may still be running."""


def _exit_without_teardown() -> None:
    if _ABANDONED_WORK:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)


_EXIT_HOOKED = False


def _hook_exit() -> None:
    """Register :func:`_exit_without_teardown` once, before the first long pycolmap call (not on import):
    hooks registered after it run before it (atexit runs the last-registered first)."""
    global _EXIT_HOOKED
    if not _EXIT_HOOKED:
        atexit.register(_exit_without_teardown)
        _EXIT_HOOKED = True


def _run_cancellable(fn: Callable[[pycolmap.CancellationToken], object], poll: Callable[[], None] | None = None):
    """Run ``fn(token)`` in a worker thread; call ``poll()`` every POLL_SECONDS until it returns.

    pycolmap releases the GIL while it works. Ctrl-C (KeyboardInterrupt in the main thread) cancels
    the token, waits for the call to return and re-raises (see the module docstring for what follows).
    Exceptions of ``fn`` are re-raised here.
    """
    _hook_exit()
    token = pycolmap.CancellationToken()
    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["result"] = fn(token)
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    worker = threading.Thread(target=work, name="pycolmap", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(POLL_SECONDS)
            if poll is not None:
                poll()
    except BaseException:
        global _ABANDONED_WORK
        token.cancel()
        worker.join()
        _ABANDONED_WORK = True
        raise
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("result")


class _DatabaseCounter:
    """Counts what pycolmap has committed to a database, through pycolmap's own SQLite.

    Never through Python's ``sqlite3``: two SQLite libraries in one process do not share POSIX locks,
    and closing one's connection drops the other's locks (a crash seen here: SIGBUS in a WAL checkpoint).
    """

    def __init__(self, database: Path, what: Literal["images_with_keypoints", "pairs"]):
        self._db = pycolmap.Database.open(Path(database))
        self._what = what

    def __call__(self) -> int:
        if self._what == "pairs":
            return int(self._db.num_verified_image_pairs())  # every verified pair, passed or not
        return sum(1 for im in self._db.read_all_images() if self._db.exists_keypoints(im.image_id))

    def close(self) -> None:
        self._db.close()


def _run_counted(fn, database: Path, what, on_progress: Progress | None) -> None:
    """:func:`_run_cancellable` with ``on_progress`` fed by a :class:`_DatabaseCounter`."""
    if on_progress is None:
        _run_cancellable(fn)
        return
    counter = _DatabaseCounter(database, what)
    last = [-1]

    def poll() -> None:
        try:
            n = counter()
        except (RuntimeError, ValueError):  # the writer holds a lock right now: show the count next time
            return
        if n != last[0]:
            last[0] = n
            on_progress(n)

    try:
        _run_cancellable(fn, poll)
        poll()
    finally:
        counter.close()


def create_database(path: Path) -> None:
    """An empty COLMAP database at ``path``."""
    pycolmap.Database.open(Path(path)).close()


def extract_features(
    database: Path,
    image_dir: Path,
    names: Sequence[str],
    settings: SfmSettings,
    *,
    max_image_size: int,
    mask_dir: Path | None = None,
    on_progress: Progress | None = None,
) -> None:
    """SIFT on the CPU for ``names`` in ``image_dir`` (at most ``max_image_size`` px), into ``database``.

    ``mask_dir``: no features where ``mask_dir/<name>.png`` is black (COLMAP's naming: ``0001.jpg.png``).

    ``on_progress(images_done)``. The camera(s) start from the EXIF focal length when the images carry
    one, else from 1.2 x the longer side (COLMAP's rule); the principal point is the image centre.
    """
    reader = pycolmap.ImageReaderOptions(camera_model=settings.camera_model)
    if mask_dir is not None:
        reader.mask_path = str(mask_dir)
    options = pycolmap.FeatureExtractionOptions()
    options.num_threads = settings.num_threads
    options.use_gpu = False
    options.max_image_size = int(max_image_size)
    options.sift.max_num_features = settings.max_num_features
    mode = pycolmap.CameraMode.SINGLE if settings.camera_mode == "single" else pycolmap.CameraMode.PER_IMAGE

    def run(token):
        pycolmap.extract_features(
            database,
            image_dir,
            image_names=list(names),
            camera_mode=mode,
            reader_options=reader,
            extraction_options=options,
            device=pycolmap.Device.cpu,
            cancellation_token=token,
        )

    _run_counted(run, database, "images_with_keypoints", on_progress)


def match_pairs(
    database: Path,
    pairs: Sequence[tuple[str, str]],
    pairs_file: Path,
    settings: SfmSettings,
    *,
    on_progress: Progress | None = None,
) -> None:
    """Match and geometrically verify the image pairs (by name), in one pycolmap call.

    ``pairs_file`` receives the list pycolmap reads. ``on_progress(pairs_done)``.
    """
    Path(pairs_file).write_text("".join(f"{a} {b}\n" for a, b in pairs))
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = settings.num_threads
    matching.use_gpu = False
    pairing = pycolmap.ImportedPairingOptions()
    pairing.match_list_path = str(pairs_file)
    pairing.block_size = max(len(pairs), 1)
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.random_seed = settings.seed
    verification.min_num_inliers = MIN_PAIR_INLIERS

    def run(token):
        pycolmap.match_image_pairs(
            database,
            matching_options=matching,
            pairing_options=pairing,
            verification_options=verification,
            device=pycolmap.Device.cpu,
            cancellation_token=token,
        )

    _run_counted(run, database, "pairs", on_progress)


def verified_pairs(database: Path) -> dict[tuple[str, str], int]:
    """{(name_a, name_b): inlier matches} for every pair with at least MIN_PAIR_INLIERS verified matches."""
    return {pair: n for pair, n in pair_inliers(database).items() if n >= MIN_PAIR_INLIERS}


@contextlib.contextmanager
def reading(database: Path) -> Iterator[pycolmap.Database]:
    """``with reading(path) as db``: a COLMAP database opened for reading. pycolmap opens a database for
    writing and touches it, so this opens a temporary copy: the poses stage's output stays byte for byte
    what it wrote (the cache checks its content)."""
    with tempfile.TemporaryDirectory(prefix="nerfpipe-db-") as tmp:
        copy = Path(tmp) / "database.db"
        shutil.copyfile(database, copy)
        db = pycolmap.Database.open(copy)
        try:
            yield db
        finally:
            db.close()


def pair_inliers(database: Path) -> dict[tuple[str, str], int]:
    """{(name_a, name_b): verified inlier matches} for every pair the database holds a two-view
    geometry for (names sorted within a pair; pairs that failed verification count 0 or a few)."""
    with reading(database) as db:
        names = {im.image_id: im.name for im in db.read_all_images()}
        pair_ids, inliers = db.read_two_view_geometry_num_inliers()
    out = {}
    for pair_id, n in zip(pair_ids, inliers):
        a, b = pycolmap.pair_id_to_image_pair(pair_id)
        if a in names and b in names:
            out[tuple(sorted((names[a], names[b])))] = int(n)
    return out


def rename_images(database: Path, rec: pycolmap.Reconstruction, new_names: dict[str, str]) -> None:
    """Rename images (old name -> new name) in the database and in ``rec``.

    Names are unique in the database and a new name may be another image's old one (photos named
    like the SfM copies, 0001.jpg), so every renamed image first gets a temporary name.
    """
    db = pycolmap.Database.open(Path(database))
    try:
        renamed = [(image, new_names[image.name]) for image in db.read_all_images() if image.name in new_names]
        for image, _new in renamed:
            image.name = f"nerfpipe-renaming-{image.image_id}"
            db.update_image(image)
        for image, new in renamed:
            image.name = new
            db.update_image(image)
    finally:
        db.close()
    for image in rec.images.values():
        image.name = new_names.get(image.name, image.name)


def incremental_mapping(
    database: Path,
    image_dir: Path,
    output_dir: Path,
    settings: SfmSettings,
    *,
    init_min_tri_angle: float | None = None,
    min_model_size: int | None = None,
    on_progress: Progress | None = None,
) -> list[pycolmap.Reconstruction]:
    """Incremental SfM; every model found, largest first. ``on_progress(images_registered)``.

    ``init_min_tri_angle`` (degrees) overrides COLMAP's 16 for the initial pair; ``min_model_size``
    its minimum size of a model to keep (COLMAP: 10, or 0.8 x the images when fewer).
    """
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = settings.num_threads
    options.random_seed = settings.seed
    options.extract_colors = False
    options.multiple_models = True
    options.mapper.num_threads = settings.num_threads
    options.mapper.random_seed = settings.seed
    options.triangulation.random_seed = settings.seed
    if init_min_tri_angle is not None:
        options.mapper.init_min_tri_angle = float(init_min_tri_angle)
    if min_model_size is not None:
        options.min_model_size = int(min_model_size)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    # Callbacks come from pycolmap's thread: the current model's count and the best count so far.
    # Each new model (multiple_models) starts again from its initial pair.
    count = {"current": 0, "best": 0}
    lock = threading.Lock()

    def on_init() -> None:
        with lock:
            count["current"] = 2
            count["best"] = max(count["best"], 2)

    def on_next() -> None:
        with lock:
            count["current"] += 1
            count["best"] = max(count["best"], count["current"])

    shown = [-1]

    def poll() -> None:
        with lock:
            n = count["best"]
        if n != shown[0]:
            shown[0] = n
            on_progress(n)

    def run(token):
        return pycolmap.incremental_mapping(
            database,
            image_dir,
            output_dir,
            options,
            initial_image_pair_callback=on_init,
            next_image_callback=on_next,
            cancellation_token=token,
        )

    pycolmap.set_random_seed(settings.seed)
    found = _run_cancellable(run, poll if on_progress is not None else None) or {}
    models = sorted(found.values(), key=lambda r: (-r.num_reg_images(), -r.num_points3D()))
    if on_progress is not None:
        on_progress(models[0].num_reg_images() if models else 0)  # exact, whatever the callbacks counted
    return models


@dataclass
class SparseModel:
    """A reconstruction as numpy arrays, images in natural name order (:func:`nerfpipe.scene.natural_key`)."""

    names: list[str]
    """Registered image names, in natural order."""
    w2c_cv: np.ndarray
    """(N, 3, 4) COLMAP world-to-camera."""
    intrinsics: list[dict[str, float]]
    """Each image's camera in the model's pixels as OPENCV keys (fl_x, fl_y, cx, cy, k1, ...;
    :func:`opencv_intrinsics`), read by the camera model's parameter names; [] for a model OPENCV cannot hold."""
    camera_model: str
    camera_ids: list[int]
    image_size: tuple[int, int]
    """(width, height) of the images the model was computed on."""
    points: np.ndarray
    """(P, 3) sparse 3D points."""
    point_images: list[np.ndarray]
    """Per point, the row indices (into ``names``) of the images that observe it."""
    mean_reprojection_error: float
    """Pixels of the model's images."""
    observations: int


def sparse_model(rec: pycolmap.Reconstruction) -> SparseModel:
    """Read a pycolmap Reconstruction into numpy arrays (images in natural name order)."""
    images = sorted((rec.images[i] for i in rec.reg_image_ids()), key=lambda im: natural_key(im.name))
    row_of = {im.image_id: row for row, im in enumerate(images)}
    w2c = np.stack([np.asarray(im.cam_from_world().matrix(), dtype=np.float64) for im in images])
    cams = [rec.cameras[im.camera_id] for im in images]
    models = {c.model_name for c in cams}
    sizes = {(int(c.width), int(c.height)) for c in cams}
    if len(models) != 1 or len(sizes) != 1:
        raise ValueError(f"mixed camera models {models} or sizes {sizes} in one reconstruction")
    xyz, seen = [], []
    for point in rec.points3D.values():
        rows = sorted({row_of[e.image_id] for e in point.track.elements if e.image_id in row_of})
        if rows:
            xyz.append(np.asarray(point.xyz, dtype=np.float64))
            seen.append(np.asarray(rows, dtype=np.int64))
    return SparseModel(
        names=[im.name for im in images],
        w2c_cv=w2c,
        intrinsics=[opencv_intrinsics(c) for c in cams] if cams[0].model_name in OPENCV_MODELS else [],
        camera_model=models.pop(),
        camera_ids=[int(im.camera_id) for im in images],
        image_size=sizes.pop(),
        points=np.stack(xyz) if xyz else np.zeros((0, 3)),
        point_images=seen,
        mean_reprojection_error=float(rec.compute_mean_reprojection_error()),
        observations=int(rec.compute_num_observations()),
    )


def read_sparse_model(model_dir: Path) -> SparseModel:
    """The binary or text model in ``model_dir`` (e.g. ``colmap/sparse/0``) as a :class:`SparseModel`."""
    return sparse_model(pycolmap.Reconstruction(Path(model_dir)))


UNEXPLAINED_PX = 4.0
"""A verified match lies this many pixels (Sampson distance, in the pixels SfM ran on) or more off the epipolar
geometry of the model's two cameras: the cameras do not explain it (the model's mean reprojection error is
about 0.5 px)."""


def unexplained_matches(database: Path, rec: pycolmap.Reconstruction,
                        min_inliers: int = MIN_PAIR_INLIERS) -> dict[tuple[str, str], tuple[int, int]]:
    """{(name_a, name_b): (unexplained, verified)}: how many of the verified matches of each pair of registered
    images (pairs with at least ``min_inliers``) the model's cameras do not explain (see UNEXPLAINED_PX).

    Each pair's two-view verification found its matches consistent with *some* relative motion; here they
    are checked against the motion of the model. On a consistent capture nearly all are explained, but for
    a few wrong pairs (a repeated pattern matched across far-apart views, left out by the mapper); a
    camera out of place leaves all of its pairs unexplained, and a capture where part of the view moved
    (an object on a turntable with the room still) leaves part of every pair unexplained. See
    :func:`nerfpipe.stages.poses.pose_check` for the figures.
    ``rec`` may be rescaled (colmap/sparse/0 is in the pixels of images/, the database in those of the SfM copy).
    """
    registered = {rec.images[i].name: rec.images[i] for i in rec.reg_image_ids()}
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    with reading(database) as db:
        images = {im.image_id: im for im in db.read_all_images()}
        names = {i: im.name for i, im in images.items()}
        db_width = {c.camera_id: c.width for c in db.read_all_cameras()}
        pair_ids, geometries = db.read_two_view_geometries()
        normalised: dict[int, np.ndarray] = {}

        def rays(image_id: int) -> np.ndarray:  # (K, 3) keypoints as normalised image points
            if image_id not in normalised:
                image = registered[names[image_id]]
                scale = rec.cameras[image.camera_id].width / db_width[images[image_id].camera_id]
                xy = np.asarray(db.read_keypoints(image_id), dtype=np.float64)[:, :2] * scale
                cam_xy = np.asarray(rec.cameras[image.camera_id].cam_from_img(xy), dtype=np.float64)
                normalised[image_id] = np.concatenate([cam_xy, np.ones((len(cam_xy), 1))], axis=1)
            return normalised[image_id]

        for pair_id, geometry in zip(pair_ids, geometries):
            a, b = pycolmap.pair_id_to_image_pair(pair_id)
            name_a, name_b = names.get(a), names.get(b)
            matches = np.asarray(geometry.inlier_matches)
            if name_a not in registered or name_b not in registered or len(matches) < min_inliers:
                continue
            pose_a = np.asarray(registered[name_a].cam_from_world().matrix(), dtype=np.float64)
            pose_b = np.asarray(registered[name_b].cam_from_world().matrix(), dtype=np.float64)
            rot = pose_b[:, :3] @ pose_a[:, :3].T
            t = pose_b[:, 3] - rot @ pose_a[:, 3]
            norm = np.linalg.norm(t)
            if norm == 0:
                continue
            t = t / norm
            essential = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]]) @ rot
            x1, x2 = rays(a)[matches[:, 0]], rays(b)[matches[:, 1]]
            ex1, etx2 = x1 @ essential.T, x2 @ essential
            sampson = np.sum(x2 * ex1, axis=1) ** 2 / (ex1[:, 0] ** 2 + ex1[:, 1] ** 2 + etx2[:, 0] ** 2 + etx2[:, 1] ** 2)
            cam_a = rec.cameras[registered[name_a].camera_id]
            focal = float(cam_a.mean_focal_length()) / (cam_a.width / db_width[images[a].camera_id])
            off = int(np.sum(np.sqrt(sampson) * focal > UNEXPLAINED_PX))
            counts[tuple(sorted((name_a, name_b)))] = (off, len(matches))
    return counts


def write_rescaled_model(rec: pycolmap.Reconstruction, output_dir: Path, width: int, height: int) -> None:
    """Write ``rec`` (binary) with its cameras and 2D points rescaled to images of ``width`` x ``height``.

    The model was computed on a smaller copy of the photos; written this way it matches images/.
    Modifies ``rec``.
    """
    scales = {}
    for cam_id, cam in rec.cameras.items():
        sx, sy = width / cam.width, height / cam.height
        scales[cam_id] = np.array([sx, sy])
        cam.rescale(int(width), int(height))
    for image in rec.images.values():
        s = scales[image.camera_id]
        for p in image.points2D:
            p.xy = np.asarray(p.xy) * s
    rec.update_point_3d_errors()  # in pixels of the full-resolution images from here on
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    rec.write_binary(Path(output_dir))


def point_colors(model_dir: Path, image_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The sparse points of the model in ``model_dir``: (P, 3) float64 positions and (P, 3) uint8 colours,
    the mean colour of each point's observations in the images of ``image_dir`` when given (the poses
    stage maps on grey-level copies, so the model itself holds no colour)."""
    rec = pycolmap.Reconstruction(Path(model_dir))
    if image_dir is not None:
        with colmap_logging(verbose=False):
            rec.extract_colors_for_all_images(Path(image_dir))
    points = list(rec.points3D.values())
    xyz = np.array([p.xyz for p in points], dtype=np.float64).reshape(-1, 3)
    rgb = np.array([p.color for p in points], dtype=np.uint8).reshape(-1, 3)
    return xyz, rgb


def undistort_to_pinhole(model_dir: Path, image_dir: Path, output: Path) -> None:
    """Undistort the images of the model onto PINHOLE cameras: ``output/images/`` and ``output/sparse/0/``,
    the layout 3D Gaussian Splatting and nerfstudio read (COLMAP's own undistorter, COLMAP output type;
    its dense-stereo extras are left out)."""
    output = Path(output)
    with colmap_logging(verbose=False):
        pycolmap.undistort_images(output, Path(model_dir), Path(image_dir), output_type="COLMAP")
    model = output / "sparse" / "0"
    model.mkdir(parents=True)
    for f in list((output / "sparse").iterdir()):
        if f.is_file():
            f.rename(model / f.name)
    for extra in ("stereo",):
        shutil.rmtree(output / extra, ignore_errors=True)
    for script in output.glob("run-colmap-*.sh"):
        script.unlink()


OPENCV_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
"""COLMAP camera models that an OPENCV camera (fx, fy, cx, cy, k1, k2, p1, p2) holds exactly."""
_OPENCV_NAME = {"f": ("fl_x", "fl_y"), "fx": ("fl_x",), "fy": ("fl_y",), "cx": ("cx",), "cy": ("cy",),
                "k": ("k1",), "k1": ("k1",), "k2": ("k2",), "p1": ("p1",), "p2": ("p2",)}


def opencv_intrinsics(camera: pycolmap.Camera) -> dict[str, float]:
    """A COLMAP camera as transforms.json's OPENCV keys (fl_x, fl_y, cx, cy, w, h, k1, k2, p1, p2), read by
    the model's own parameter names (never by position). ValueError for a model OPENCV cannot hold."""
    if camera.model_name not in OPENCV_MODELS:
        raise ValueError(f"camera {camera.camera_id} is {camera.model_name}, which nerfpipe cannot train on "
                         f"(it reads {', '.join(OPENCV_MODELS)})")
    out = {"w": int(camera.width), "h": int(camera.height), "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}
    names = [n.strip() for n in camera.params_info.split(",")]
    for name, value in zip(names, np.asarray(camera.params, dtype=np.float64)):
        for key in _OPENCV_NAME[name]:
            out[key] = float(value)
    return out
