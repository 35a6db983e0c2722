"""The layers of nerfpipe, lowest first; a module imports only from its own layer or lower ones.

1. ``errors``, ``scene``, ``io``: the error type, the scene folder's names, atomic writes and PNGs;
   nothing of nerfpipe below them.
2. ``cameras``, ``colmap``, ``photos``, ``progress``, ``device``: conventions and paths, the one pycolmap
   adapter, reading photos, progress reporting, the torch device. Plain functions over arrays and files.
3. ``cache``, ``frames``, ``video``, ``nerf``, ``capture``: the stage cache; video in and out; the NeRF
   itself (fields, samplers, rendering, metrics, and the trainer, which takes a dataset protocol and its
   own config and so imports neither datasets nor recipes); judging a capture from its photos and
   sparse model (the capture report's rules, measurements and figure).
4. ``datasets``, ``recipes``: scene folders read into tensors; named training configurations.
5. ``stages``: one module per stage, sharing results through manifests.
6. ``cli``, ``benchmarks``: entry points.

The test parses every module's imports (``ast``, nothing is imported) and fails on an import that runs
up the layers, naming the module, the line and both layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = [
    ("errors", "scene", "io", "__init__", "__version__"),
    ("cameras", "colmap", "photos", "progress", "device"),
    ("cache", "frames", "video", "nerf", "capture"),
    ("datasets", "recipes"),
    ("stages",),
    ("cli", "benchmarks", "__main__"),
]


def layer_of(module: str) -> int | None:
    """Layer index of ``nerfpipe.<top>...``; None for modules outside nerfpipe."""
    parts = module.split(".")
    if parts[0] != "nerfpipe" or len(parts) < 2:
        return 0 if module == "nerfpipe" else None
    for i, names in enumerate(LAYERS):
        if parts[1] in names:
            return i
    raise AssertionError(f"{module} is in no layer: add its top-level name to LAYERS (and the docstring)")


def upward_imports(path: Path) -> list[str]:
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    mine = layer_of(module)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] if node.module != "nerfpipe" else [f"nerfpipe.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for target in targets:
            theirs = layer_of(target)
            if theirs is not None and mine is not None and theirs > mine:
                found.append(f"{module}:{node.lineno} imports {target} (layer {theirs + 1} over layer {mine + 1})")
    return found


def test_no_module_imports_a_higher_layer():
    offenders = [line for path in sorted((REPO / "nerfpipe").rglob("*.py")) for line in upward_imports(path)]
    assert not offenders, "\n".join(offenders)


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    fake = REPO / "nerfpipe" / "nerf" / "_layer_probe.py"
    assert not fake.exists()
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "from nerfpipe.recipes import load_recipe\nimport numpy\n")
    assert upward_imports(fake) == ["nerfpipe.nerf._layer_probe:1 imports nerfpipe.recipes (layer 4 over layer 3)"]
