"""The stage cache: fingerprints, manifests and atomic outputs, shared by every stage.

A stage declares a :class:`StageSpec` (its inputs, parameters, the stages it depends on and the
scene-relative paths it owns) and hands :func:`run_stage` a body. The body knows nothing of caching:
it writes its outputs under the folder it is given and returns a JSON-able summary.

- Up to date: the manifest ``.nerfpipe/<stage>.json`` holds the same fingerprint (stage version,
  parameters, content of the inputs, fingerprints of the upstream manifests) and every output is
  still there as it was left. Then nothing runs and no file is touched.
- Otherwise the body writes into ``.nerfpipe/tmp/<stage>-*``; when it returns, the old manifest is
  removed, each output is renamed into place (outputs the previous run owned and this one does not
  are removed), and the new manifest is written last. A run that fails or is interrupted leaves the
  old outputs or no manifest, never a state that a later run takes for finished.

Input content is hashed once; the manifest keeps (size, mtime) beside each hash so that a re-run
with unchanged files hashes nothing.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from nerfpipe import __version__
from nerfpipe.errors import NerfpipeError

MANIFEST_DIR = ".nerfpipe"
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class StageSpec:
    """What a stage depends on and what it owns."""

    name: str
    """Manifest name: ``.nerfpipe/<name>.json``."""
    version: str
    """Bump when the stage's outputs change meaning for the same inputs."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """JSON-able parameters that change the outputs."""
    inputs: Sequence[Path] = ()
    """Files whose content the outputs depend on."""
    upstream: Sequence[str] = ()
    """Stages whose finished manifests this one depends on."""
    outputs: Sequence[str] = ()
    """Scene-relative paths (files or folders) this stage writes."""
    staged: bool = True
    """True: the body writes into a temporary folder and the cache renames outputs into place.
    False: the body writes into the scene itself (resumable work such as training), and only the
    manifest, written last, marks the stage finished."""


@dataclass
class StageResult:
    name: str
    ran: bool
    """False when the stage was up to date and nothing ran."""
    manifest: dict

    @property
    def result(self) -> dict:
        return self.manifest.get("result", {})

    @property
    def seconds(self) -> float:
        return float(self.manifest.get("seconds", 0.0))


def manifest_path(scene: Path, name: str) -> Path:
    return Path(scene) / MANIFEST_DIR / f"{name}.json"


def load_manifest(scene: Path, name: str) -> dict | None:
    """The finished manifest of stage ``name``, or None if it never finished (or is unreadable)."""
    path = manifest_path(scene, name)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def require_manifest(scene: Path, name: str, needed_by: str) -> dict:
    manifest = load_manifest(scene, name)
    if manifest is None:
        raise NerfpipeError(
            f"{needed_by} needs the {name} stage to have finished in {scene}: "
            f"run `nerfpipe {name}` there first."
        )
    return manifest


def file_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _input_key(scene: Path, path: Path) -> str:
    path = Path(path).absolute()
    try:
        return path.relative_to(Path(scene).absolute()).as_posix()
    except ValueError:
        return str(path)


def hash_inputs(scene: Path, inputs: Sequence[Path], previous: Mapping[str, Any] | None = None) -> dict:
    """{key: [size, mtime_ns, hash]}, reusing the previous manifest's hash where size and mtime match."""
    previous = previous or {}
    out: dict[str, list] = {}
    for path in inputs:
        key = _input_key(scene, path)
        st = os.stat(path)
        old = previous.get(key)
        if old and old[0] == st.st_size and old[1] == st.st_mtime_ns:
            out[key] = list(old)
        else:
            out[key] = [st.st_size, st.st_mtime_ns, file_hash(Path(path))]
    return out


def _fingerprint(spec: StageSpec, input_hashes: Mapping[str, list], upstream: Mapping[str, str]) -> str:
    payload = {
        "stage": spec.name,
        "version": spec.version,
        "params": spec.params,
        "inputs": sorted((k, v[2]) for k, v in input_hashes.items()),
        "upstream": dict(sorted(upstream.items())),
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _signature(path: Path) -> Any:
    """Cheap signature of an output: size of a file, sorted (name, size) of a folder's files."""
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sorted(
            [p.relative_to(path).as_posix(), p.stat().st_size] for p in path.rglob("*") if p.is_file()
        )
    return None


def _upstream_fingerprints(scene: Path, spec: StageSpec) -> dict[str, str]:
    return {name: require_manifest(scene, name, f"`nerfpipe {spec.name}`")["fingerprint"] for name in spec.upstream}


def is_up_to_date(scene: Path, spec: StageSpec) -> bool:
    scene = Path(scene)
    manifest = load_manifest(scene, spec.name)
    if manifest is None:
        return False
    try:
        upstream = _upstream_fingerprints(scene, spec)
        hashes = hash_inputs(scene, spec.inputs, manifest.get("inputs"))
    except (NerfpipeError, OSError):
        return False
    if manifest.get("fingerprint") != _fingerprint(spec, hashes, upstream):
        return False
    for rel, sig in manifest.get("outputs", {}).items():
        path = scene / rel
        if not path.exists():
            return False
        if spec.staged and _signature(path) != sig:
            return False
    return True


def _ensure_writable(scene: Path) -> None:
    try:
        (scene / MANIFEST_DIR / "tmp").mkdir(parents=True, exist_ok=True)
        probe = scene / MANIFEST_DIR / f".write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise NerfpipeError(
            f"Cannot write into the scene folder {scene} ({e.strerror or e}): "
            "choose a folder you can write to with --scene."
        ) from None


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False, default=str))
    os.replace(tmp, path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def run_stage(
    scene: Path,
    spec: StageSpec,
    body: Callable[[Path], dict],
    *,
    force: bool = False,
) -> StageResult:
    """Run ``body`` unless the stage is up to date; return the manifest either way.

    ``body(out)`` writes each declared output at ``out / <relative path>`` and returns a JSON-able
    summary, stored as the manifest's ``result``. For a staged spec ``out`` is a temporary folder;
    otherwise it is the scene folder.
    """
    scene = Path(scene)
    if not scene.is_dir():
        raise NerfpipeError(f"The scene folder {scene} does not exist: create it or pass another --scene.")
    previous = load_manifest(scene, spec.name)
    if not force and is_up_to_date(scene, spec):
        assert previous is not None
        return StageResult(spec.name, ran=False, manifest=previous)

    _ensure_writable(scene)
    upstream = _upstream_fingerprints(scene, spec)
    hashes = hash_inputs(scene, spec.inputs, previous.get("inputs") if previous else None)
    fingerprint = _fingerprint(spec, hashes, upstream)

    tmp_root = scene / MANIFEST_DIR / "tmp"
    for stale in tmp_root.glob(f"{spec.name}-*"):  # left by a killed run
        _remove(stale)
    mpath = manifest_path(scene, spec.name)

    t0 = time.perf_counter()
    if spec.staged:
        work = tmp_root / f"{spec.name}-{uuid.uuid4().hex[:8]}"
        work.mkdir(parents=True)
        try:
            result = body(work)
            missing = [rel for rel in spec.outputs if not (work / rel).exists()]
            if missing:
                raise RuntimeError(f"stage {spec.name} did not write {missing}")
            # From here on the old outputs are replaced: invalidate the old manifest first.
            if mpath.exists():
                mpath.unlink()
            trash = tmp_root / f"{spec.name}-trash-{uuid.uuid4().hex[:8]}"
            trash.mkdir()
            old_outputs = set(previous.get("outputs", {})) if previous else set()
            for i, rel in enumerate(sorted(old_outputs | set(spec.outputs))):
                dest = scene / rel
                if dest.exists() or dest.is_symlink():
                    os.replace(dest, trash / str(i))
                if rel in spec.outputs:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(work / rel, dest)
            _remove(trash)
        finally:
            _remove(work)
    else:
        if mpath.exists():
            mpath.unlink()
        result = body(scene)
        if previous:
            for rel in set(previous.get("outputs", {})) - set(spec.outputs):
                _remove(scene / rel)

    seconds = time.perf_counter() - t0
    manifest = {
        "stage": spec.name,
        "version": spec.version,
        "nerfpipe_version": __version__,
        "fingerprint": fingerprint,
        "params": dict(spec.params),
        "inputs": hashes,
        "upstream": upstream,
        "outputs": {rel: (_signature(scene / rel) if spec.staged else None) for rel in spec.outputs},
        "result": result,
        "seconds": round(seconds, 3),
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    _write_json_atomic(mpath, manifest)
    return StageResult(spec.name, ran=True, manifest=manifest)
