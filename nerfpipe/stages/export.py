"""The export stage (``nerfpipe export``): a posed scene's cameras and points in the formats other tools open.

Writes ``exports/`` in the scene (stage ``export``, downstream of ``poses``):

| path | opens in | what |
| --- | --- | --- |
| ``exports/sparse_pc.ply`` | nerfstudio's splatfacto, gsplat, any PLY viewer | the sparse SfM points with their colours (binary PLY: x, y, z as float, red, green, blue as uchar), in the world of ``transforms.json`` |
| ``exports/nerfstudio/transforms.json`` | nerfstudio (``ns-train ... --data``) | the poses stage's cameras (OpenGL camera-to-world, OPENCV intrinsics), its images by relative path, and ``ply_file_path`` naming the points (splatfacto starts from them instead of random points) |
| ``exports/colmap/images/``, ``exports/colmap/sparse/0/`` | 3D Gaussian Splatting (graphdeco's loader), nerfstudio's colmap parser | the photos undistorted by pycolmap onto PINHOLE cameras and the model on those cameras (graphdeco's loader refuses SIMPLE_RADIAL) |
| ``exports/instant-ngp/transforms.json`` | instant-ngp | the cameras recentred on the sparse points and scaled so that 98% of them lie inside instant-ngp's unit cube (its loader maps [-1.5, 1.5] into it), with ``aabb_scale`` (a power of two) large enough to hold every camera and point |

Nothing here changes the scene's own files. The instant-ngp file records what it applied
(``nerfpipe_transform``: the 4x4 that maps the poses stage's world to its world).

From a trained run (stage ``export-<run>``, downstream of ``train-<run>``; any scene with a run,
Blender scenes too), in the world of the scene's own cameras (for a nerfpipe scene the world of
``transforms.json`` and ``sparse_pc.ply``):

| path | what |
| --- | --- |
| ``exports/<run>/mesh.ply`` | marching cubes on a ``resolution``^3 lattice over the field's density (:mod:`nerfpipe.nerf.geometry`): the surface at half the field's median density at the SfM points (without them, where the field is half opaque over 1/64 of the box's mean edge), vertices coloured by the field as the nearest training camera sees them. The lattice spans the scene box of an object or a Blender scene, the inner (uncontracted) cube of a 360 capture, and the training cameras' NDC frustum up to 1.5x their farthest bound for a forward-facing one (the side the photos saw) |
| ``exports/<run>/depth_points.ply`` | a point where a rendered ray of a training view is at least 90% opaque, at the depth of what it hit, coloured as rendered; pixels taken on a regular stride so that at most :data:`MAX_DEPTH_POINTS` points come out |
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfpipe import colmap
from nerfpipe import scene as scene_layout
from nerfpipe.cache import StageResult, StageSpec, run_stage
from nerfpipe.cameras.conventions import to_homogeneous
from nerfpipe.cameras.formats import read_transforms
from nerfpipe.errors import NerfpipeError
from nerfpipe.io import relative_path
from nerfpipe.progress import Reporter
from nerfpipe.stages.results import CameraExportResult, FieldExportResult, PosesResult, require_result

VERSION = "2"
"""2: the run exports (``exports/<run>/``) live beside these: each output is named, not the whole folder."""
FIELD_VERSION = "1"
EXPORTS = "exports"
PLY_NAME = "sparse_pc.ply"
NGP_HALF_EXTENT = 1.5
"""instant-ngp maps [-1.5, 1.5]^3 of its transforms.json into its unit cube (scale 0.33, offset 0.5)."""
NGP_POINT_QUANTILE = 0.98
"""This share of the sparse points lands inside that cube; the rest (stray points) need not."""
NGP_MAX_AABB = 128
CAMERA_OUTPUTS = (PLY_NAME, "nerfstudio", "colmap", "instant-ngp")
MESH_NAME = "mesh.ply"
DEPTH_POINTS_NAME = "depth_points.ply"
MESH_RESOLUTION = 256
MAX_DEPTH_POINTS = 1_000_000
NDC_FAR_MARGIN = 1.5
"""A forward-facing scene's lattice reaches this many times the farthest bound (NDC reaches infinity)."""


@dataclass(frozen=True)
class ExportParams:
    scene: Path = Path(".")
    force: bool = False


def write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray, faces: np.ndarray | None = None) -> None:
    """(P, 3) points and (P, 3) uint8 colours -> binary little-endian PLY (x, y, z float; red, green, blue
    uchar); with ``faces`` (F, 3) vertex indices also a face element (a mesh)."""
    xyz = np.asarray(xyz, dtype="<f4").reshape(-1, 3)
    rgb = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)
    header = (f"ply\nformat binary_little_endian 1.0\ncomment written by nerfpipe export\nelement vertex {len(xyz)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\n")
    if faces is not None:
        header += f"element face {len(faces)}\nproperty list uchar int vertex_indices\n"
    header += "end_header\n"
    rows = np.empty(len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    rows["x"], rows["y"], rows["z"] = xyz.T
    rows["r"], rows["g"], rows["b"] = rgb.T
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(rows.tobytes())
        if faces is not None:
            tri = np.empty(len(faces), dtype=[("n", "u1"), ("v", "<i4", (3,))])
            tri["n"], tri["v"] = 3, np.asarray(faces, dtype="<i4").reshape(-1, 3)
            f.write(tri.tobytes())


def read_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The vertices of a PLY that :func:`write_ply` wrote: ((P, 3) float32, (P, 3) uint8)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    count = int(next(line.split()[2] for line in header if line.startswith("element vertex")))
    rows = np.frombuffer(data[end:], dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"),
                                             ("b", "u1")], count=count)
    return np.stack([rows["x"], rows["y"], rows["z"]], 1), np.stack([rows["r"], rows["g"], rows["b"]], 1)


def ngp_transform(c2w_gl: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, int]:
    """(4x4 world -> instant-ngp world, aabb_scale): recentred on the points' median, scaled so that
    :data:`NGP_POINT_QUANTILE` of them lie within +-:data:`NGP_HALF_EXTENT`, aabb_scale the smallest power
    of two whose box holds every camera centre and point."""
    centre = np.median(points, axis=0) if len(points) else c2w_gl[:, :3, 3].mean(axis=0)
    spread = np.quantile(np.abs(points - centre).max(axis=1), NGP_POINT_QUANTILE) if len(points) else \
        np.abs(c2w_gl[:, :3, 3] - centre).max()
    scale = NGP_HALF_EXTENT / max(float(spread), 1e-9)
    transform = np.diag([scale, scale, scale, 1.0])
    transform[:3, 3] = -scale * centre
    everything = np.concatenate([c2w_gl[:, :3, 3], points]) if len(points) else c2w_gl[:, :3, 3]
    reach = float(np.abs((everything - centre) * scale).max()) / NGP_HALF_EXTENT
    aabb = 1
    while aabb < reach and aabb < NGP_MAX_AABB:
        aabb *= 2
    return transform, aabb


def run(params: ExportParams, reporter: Reporter | None = None) -> StageResult:
    reporter = reporter or Reporter()
    scene = scene_layout.require_folder(Path(params.scene), "The scene folder", "pass a folder you ran `nerfpipe poses` in")
    posed: PosesResult = require_result(scene, "poses", "`nerfpipe export`")
    model_dir = scene / scene_layout.COLMAP / "sparse" / "0"
    spec = StageSpec(name="export", version=VERSION, upstream=["poses"], outputs=[f"{EXPORTS}/{n}" for n in CAMERA_OUTPUTS])

    def body(out: Path) -> dict:
        folder = out / EXPORTS
        folder.mkdir(parents=True)  # the stage owns only its entries of exports/
        try:
            xyz, rgb = colmap.point_colors(model_dir, scene / scene_layout.IMAGES)
        except (RuntimeError, ValueError, OSError) as e:
            raise NerfpipeError(f"{model_dir} cannot be read ({e}): run `nerfpipe poses {scene} --force`.") from None
        write_ply(folder / PLY_NAME, xyz, rgb)

        # nerfstudio: the poses stage's transforms.json, paths from the export folder, and the points
        t = read_transforms(scene / scene_layout.TRANSFORMS)
        ns = json.loads((scene / scene_layout.TRANSFORMS).read_text())
        for frame in ns["frames"]:
            frame["file_path"] = relative_path(scene / frame["file_path"], scene / EXPORTS / "nerfstudio")
        ns["ply_file_path"] = f"../{PLY_NAME}"
        (folder / "nerfstudio").mkdir()
        (folder / "nerfstudio" / "transforms.json").write_text(json.dumps(ns, indent=2))

        # COLMAP, undistorted onto PINHOLE cameras (3D Gaussian Splatting's loader reads only those)
        with reporter.task("undistorting", total=None, unit="images"):
            colmap.undistort_to_pinhole(model_dir, scene / scene_layout.IMAGES, folder / "colmap")

        # instant-ngp: recentred and scaled into its cube, with aabb_scale
        transform, aabb = ngp_transform(t.c2w_gl, xyz)
        ngp = {k: v for k, v in ns.items() if k not in ("frames", "ply_file_path", "applied_transform")}
        ngp["frames"] = []
        for frame, c2w in zip(ns["frames"], to_homogeneous(t.c2w_gl)):
            moved = transform @ c2w
            moved[:3, :3] /= transform[0, 0]  # keep the rotation a rotation: only the centre is scaled
            ngp["frames"].append({**frame, "file_path": relative_path(scene / EXPORTS / "nerfstudio" / frame["file_path"],
                                                                  scene / EXPORTS / "instant-ngp"),
                                  "transform_matrix": moved.tolist()})
        ngp.update({"aabb_scale": aabb, "nerfpipe_transform": transform.tolist()})
        (folder / "instant-ngp").mkdir()
        (folder / "instant-ngp" / "transforms.json").write_text(json.dumps(ngp, indent=2))
        return {"points": int(len(xyz)), "frames": len(ns["frames"]), "aabb_scale": aabb,
                "registered": posed.registered, "folder": EXPORTS}

    return run_stage(scene, spec, body, force=params.force, reporter=reporter, result_type=CameraExportResult)


@dataclass(frozen=True)
class FieldExportParams:
    scene: Path = Path(".")
    run: str | None = None
    """The run to export; default: the only run, else the default recipe's name."""
    resolution: int = MESH_RESOLUTION
    """Lattice points along each axis of the mesh's box."""
    device: str = "auto"
    force: bool = False


def lattice_box(meta: dict) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The box (rays' space) the mesh lattice spans; see the module docstring."""
    box = meta["scene_box"]
    lo, hi = (list(map(float, corner)) for corner in box["aabb"])
    if box["kind"] == "ndc":
        far = NDC_FAR_MARGIN * float(np.max(meta["bounds"]))
        hi[2] = min(hi[2], 1.0 - 2.0 * float(meta["ndc_near"]) / far)
    return tuple(lo), tuple(hi)


def run_field(params: FieldExportParams, reporter: Reporter | None = None) -> StageResult:
    """Write (or find up to date) ``exports/<run>/``: the mesh and the points from depth of a trained run."""
    import torch
    from scipy.spatial import cKDTree

    from nerfpipe.cameras.normalize import Normalization, apply_to_points, undo_on_points
    from nerfpipe.cameras.rays import ndc_point, world_point
    from nerfpipe.datasets.base import make_rays
    from nerfpipe.nerf.geometry import density_grid, depth_points, extract_mesh, points_level, surface_level
    from nerfpipe.nerf.chunking import render_image
    from nerfpipe.nerf.interface import Model
    from nerfpipe.device import pick_device
    from nerfpipe.stages import runs, sources

    reporter = reporter or Reporter()
    scene = scene_layout.require_folder(Path(params.scene), "The scene folder", "pass a folder you trained a run in")
    if params.resolution < 8:
        raise NerfpipeError(f"A mesh resolution of {params.resolution} is too coarse: use 8 or more, such as 256.")
    run_name = runs.find_run(scene, params.run)
    if run_name in CAMERA_OUTPUTS:
        raise NerfpipeError(f"A run named {run_name!r} would export into exports/{run_name}/, which holds the camera "
                            "export of that name: train it again under another --run name to export it.")
    device = pick_device(params.device)
    rel = f"{EXPORTS}/{run_name}"
    spec = StageSpec(name=f"export-{run_name}", version=FIELD_VERSION, upstream=[f"train-{run_name}"],
                     params={"resolution": params.resolution}, outputs=[rel])

    def body(out: Path) -> dict:
        model, recipe, meta = runs.load_run(scene, run_name, device, reporter)
        if type(model).field_at is Model.field_at:
            raise NerfpipeError(f"Run {run_name}'s model ({recipe.model}) cannot be read at points, so it gives no mesh: "
                                "export a run of the fast or the paper recipe.")
        steps = [Normalization.from_dict(d) for d in meta["normalization"]]
        ndc = bool(meta["ndc"])
        h, w, focal = int(meta["height"]), int(meta["width"]), float(meta["focal"])

        def to_normalised(pts: np.ndarray) -> np.ndarray:  # rays' space -> normalised world
            if not ndc:
                return pts
            return world_point(h, w, focal, float(meta["ndc_near"]), torch.from_numpy(pts)).numpy()

        c2w = np.asarray(meta["c2w"], dtype=np.float64)
        centres = c2w[meta["i_train"], :3, 3]
        cameras = cKDTree(centres)

        def view_from(verts: np.ndarray) -> np.ndarray:  # from the nearest training camera towards the vertex
            world = to_normalised(verts)
            d = world - centres[cameras.query(world)[1]]
            return d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-12)

        folder = out / rel
        folder.mkdir(parents=True)
        lo, hi = lattice_box(meta)
        with reporter.task("mesh: density lattice", total=params.resolution, unit="slabs") as task:
            grid = density_grid(model, lo, hi, params.resolution, on_slab=task.advance)
        points = sources.sparse_points(scene)
        level, level_from = None, "box"
        if points is not None:
            for step in steps:
                points = apply_to_points(points, step)
            if ndc:
                points = ndc_point(h, w, focal, float(meta["ndc_near"]), torch.from_numpy(points)).numpy()
            level = points_level(grid, lo, hi, points)
            level_from = "sparse points"
        if level is None:
            level, level_from = surface_level(lo, hi), "box"
        with reporter.task("mesh: marching cubes", total=None, unit="meshes"):
            mesh = extract_mesh(model, grid, lo, hi, level, view_from)
        if mesh is None:
            reporter.warn(f"The field of run {run_name} is nowhere dense enough for a surface: no mesh written "
                          "(train longer, or look at the depth video).")
        else:
            write_ply(folder / MESH_NAME, undo_on_points(to_normalised(mesh.vertices), steps), mesh.colors, mesh.faces)

        views = list(meta["i_train"])
        stride = max(1, int(np.ceil(np.sqrt(len(views) * h * w / MAX_DEPTH_POINTS))))
        ys, xs = torch.meshgrid(torch.arange(0, h, stride), torch.arange(0, w, stride), indexing="ij")
        xs, ys = xs.reshape(-1).float(), ys.reshape(-1).float()
        points, colors = [], []
        c2w_t = torch.from_numpy(c2w).float()
        with reporter.task("points from depth", total=len(views), unit="views") as task:
            for i in views:
                rays = make_rays(c2w_t[i], xs, ys, h, w, focal, ndc=ndc, near=float(meta["near"]), far=float(meta["far"]))
                rendered = render_image(model, rays)
                pts, keep = depth_points(rays, rendered)
                points.append(pts.double().numpy())
                colors.append((rendered.rgb[keep].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))
                task.advance(1)
        xyz = undo_on_points(to_normalised(np.concatenate(points)), steps)
        write_ply(folder / DEPTH_POINTS_NAME, xyz, np.concatenate(colors))
        return {
            "run": run_name,
            "folder": rel,
            "step": meta["step"],
            "mesh": None if mesh is None else {"file": f"{rel}/{MESH_NAME}", "vertices": len(mesh.vertices),
                                                "faces": len(mesh.faces), "resolution": params.resolution,
                                                "level": round(level, 4), "level_from": level_from,
                                                "box": [list(lo), list(hi)], "space": meta["scene_box"]["kind"]},
            "depth_points": {"file": f"{rel}/{DEPTH_POINTS_NAME}", "points": int(len(xyz)), "views": len(views),
                             "stride": stride},
        }

    return run_stage(scene, spec, body, force=params.force, reporter=reporter, result_type=FieldExportResult)
