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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfpipe import colmap
from nerfpipe import scene as scene_layout
from nerfpipe.cache import StageResult, StageSpec, require_manifest, run_stage
from nerfpipe.cameras.conventions import read_transforms, to_homogeneous
from nerfpipe.errors import NerfpipeError
from nerfpipe.io import relative_path
from nerfpipe.progress import Reporter

VERSION = "1"
EXPORTS = "exports"
PLY_NAME = "sparse_pc.ply"
NGP_HALF_EXTENT = 1.5
"""instant-ngp maps [-1.5, 1.5]^3 of its transforms.json into its unit cube (scale 0.33, offset 0.5)."""
NGP_POINT_QUANTILE = 0.98
"""This share of the sparse points lands inside that cube; the rest (stray points) need not."""
NGP_MAX_AABB = 128


@dataclass(frozen=True)
class ExportParams:
    scene: Path = Path(".")
    force: bool = False


def write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """(P, 3) points and (P, 3) uint8 colours -> binary little-endian PLY (x, y, z float; red, green, blue uchar)."""
    xyz = np.asarray(xyz, dtype="<f4").reshape(-1, 3)
    rgb = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)
    header = (f"ply\nformat binary_little_endian 1.0\ncomment written by nerfpipe export\nelement vertex {len(xyz)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    rows = np.empty(len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    rows["x"], rows["y"], rows["z"] = xyz.T
    rows["r"], rows["g"], rows["b"] = rgb.T
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(rows.tobytes())


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
    posed = require_manifest(scene, "poses", "`nerfpipe export`")["result"]
    model_dir = scene / scene_layout.COLMAP / "sparse" / "0"
    spec = StageSpec(name="export", version=VERSION, upstream=["poses"], outputs=[EXPORTS])

    def body(out: Path) -> dict:
        folder = out / EXPORTS
        folder.mkdir(parents=True)
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
                "registered": posed.get("registered"), "folder": EXPORTS}

    return run_stage(scene, spec, body, force=params.force, reporter=reporter)
