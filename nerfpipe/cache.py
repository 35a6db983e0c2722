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
with unchanged files hashes nothing. Outputs are recorded the same way (size, mtime and content hash
of every file), so an output changed in place, even to the same size, is not taken for finished, and
a stage that reads an upstream stage's outputs first checks they are still what that stage wrote.

One nerfpipe process works on a scene at a time: :func:`run_stage` holds the scene's lock
(``.nerfpipe/lock``, an OS file lock that dies with its process) while it checks, runs and records a
stage; a second process waits for it, saying so, and then finds the stage up to date.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from filelock import FileLock, Timeout

from nerfpipe import __version__
from nerfpipe.errors import NerfpipeError
from nerfpipe.io import write_json_atomic
from nerfpipe.progress import Reporter
from nerfpipe.scene import require_folder

MANIFEST_DIR = ".nerfpipe"
LOCK_FILE = "lock"
OWNER_FILE = "lock.owner"
"""Who holds the scene's lock (pid and command line), for the sentence of a process that waits."""
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
    result_type: Any = None
    """The stage's result type (a class with ``from_dict``, see ``stages.results``), or None."""
    scene: Path = Path(".")

    @property
    def result(self) -> dict:
        """The result as the manifest holds it (JSON)."""
        return self.manifest.get("result", {})

    @property
    def value(self) -> Any:
        """The result as its type (see :func:`typed_result`)."""
        if self.result_type is None:
            raise TypeError(f"the {self.name} stage did not name its result type")
        return typed_result(self.scene, self.name, self.result, self.result_type)

    @property
    def seconds(self) -> float:
        return float(self.manifest.get("seconds", 0.0))


def typed_result(scene: Path, name: str, result: dict, result_type: Any) -> Any:
    """``result_type.from_dict(result)`` for the manifest of stage ``name``; a manifest of the same stage
    version that lacks a field of the type (an older nerfpipe wrote it) is a sentence saying how to redo it."""
    try:
        return result_type.from_dict(result)
    except KeyError as e:
        raise NerfpipeError(f"The {name} stage of {scene} was recorded by another nerfpipe version (no {e} in its "
                            f"manifest): run `{stage_command(name, scene, redo=True)}` to redo it.") from None


def manifest_path(scene: Path, name: str) -> Path:
    return Path(scene) / MANIFEST_DIR / f"{name}.json"


_MANIFEST_SHAPE = {"fingerprint": str, "outputs": dict, "result": dict, "inputs": dict, "upstream": dict}
"""Keys every manifest has, and their JSON types: a file without them is damaged, not finished."""


def _read_manifest(path: Path) -> tuple[dict | None, bool]:
    """(manifest, damaged): (None, False) when the file is absent, (None, True) when it is not a manifest."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None, False
    except (OSError, ValueError):
        return None, True
    if not isinstance(data, dict) or any(not isinstance(data.get(k), t) for k, t in _MANIFEST_SHAPE.items()):
        return None, True
    return data, False


def load_manifest(scene: Path, name: str) -> dict | None:
    """The finished manifest of stage ``name``, or None if it never finished or is damaged (unreadable,
    or JSON of another shape): a damaged manifest makes its stage run again."""
    return _read_manifest(manifest_path(scene, name))[0]


def stage_command(name: str, scene: Path | str = ".", redo: bool = False) -> str:
    """The command that runs stage ``name`` in ``scene`` (``redo``: again, though it looks up to date):
    ``train-fast`` -> ``nerfpipe train SCENE --run fast``."""
    base, _, rest = name.partition("-")
    if base == "ingest":
        return f"nerfpipe ingest PHOTOS --scene {scene}" + (" --force" if redo else "")
    if base in ("train", "undistort"):
        run = f" --run {rest}" if base == "train" and rest else ""
        return f"nerfpipe train {scene}{run}" + (" --fresh" if redo else "")
    if base in ("eval", "render", "export") and rest:
        return f"nerfpipe {base} {scene} --run {rest}" + (" --force" if redo else "")
    return f"nerfpipe {name} {scene}" + (" --force" if redo else "")


def require_manifest(scene: Path, name: str, needed_by: str) -> dict:
    path = manifest_path(scene, name)
    manifest, damaged = _read_manifest(path)
    if damaged:
        raise NerfpipeError(f"{path} is damaged (not a nerfpipe manifest): run `{stage_command(name, scene)}` to "
                            "redo that stage.")
    if manifest is None:
        raise NerfpipeError(
            f"{needed_by} needs the {name} stage to have finished in {scene}: "
            f"run `{stage_command(name, scene)}` first."
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


def _file_signature(path: Path) -> list:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, file_hash(path)]


def _signature(path: Path) -> Any:
    """Signature of an output: [size, mtime_ns, content hash] of a file; sorted [name, size, mtime_ns,
    hash] of a folder's files."""
    if path.is_file():
        return _file_signature(path)
    if path.is_dir():
        return sorted([p.relative_to(path).as_posix(), *_file_signature(p)] for p in path.rglob("*") if p.is_file())
    return None


def _file_matches(path: Path, sig: list) -> bool:
    """Same size and content hash; the hash is recomputed only when the mtime moved."""
    try:
        st = path.stat()
    except OSError:
        return False
    if len(sig) != 3 or st.st_size != sig[0]:
        return False
    return st.st_mtime_ns == sig[1] or file_hash(path) == sig[2]


def _first_change(path: Path, sig: Any) -> str | None:
    """None when the output at ``path`` is still what its manifest recorded (content, not only sizes);
    otherwise the file (or folder) that differs, relative to ``path`` ('' for ``path`` itself)."""
    if isinstance(sig, int):  # manifests of nerfpipe 0.1: sizes only
        return None if path.is_file() and path.stat().st_size == sig else ""
    if isinstance(sig, list) and sig and isinstance(sig[0], (int, float)):
        return None if path.is_file() and _file_matches(path, sig) else ""
    if not (isinstance(sig, list) and path.is_dir()):
        return ""
    recorded = {entry[0]: entry[1:] for entry in sig}
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    extra = sorted(set(files) - set(recorded)) + sorted(set(recorded) - set(files))
    if extra:
        return extra[0]
    for name, rest in recorded.items():
        if len(rest) == 1:  # nerfpipe 0.1
            if (path / name).stat().st_size != rest[0]:
                return name
        elif not _file_matches(path / name, rest):
            return name
    return None


def changed_outputs(scene: Path, manifest: dict) -> list[str]:
    """Outputs of a finished stage (scene-relative; the file itself inside a folder) that are missing or
    no longer hold what the stage wrote."""
    changed = []
    for rel, sig in manifest.get("outputs", {}).items():
        path = Path(scene) / rel
        if not path.exists():
            changed.append(rel)
        elif sig is not None and (inner := _first_change(path, sig)) is not None:
            changed.append(f"{rel}/{inner}" if inner else rel)
    return changed


def _upstream_fingerprints(scene: Path, spec: StageSpec) -> dict[str, str]:
    """The fingerprints of the upstream manifests, once their outputs are checked to be what they wrote."""
    out = {}
    for name in spec.upstream:
        manifest = require_manifest(scene, name, f"`{stage_command(spec.name, scene)}`")
        changed = changed_outputs(scene, manifest)
        if changed:
            raise NerfpipeError(f"{Path(scene) / changed[0]} changed since the {name} stage wrote it: run "
                                f"`{stage_command(name, scene, redo=True)}` to redo it.")
        out[name] = manifest["fingerprint"]
    return out


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
    return not changed_outputs(scene, manifest)


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


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


_LOCKS: dict[str, FileLock] = {}


@contextlib.contextmanager
def scene_lock(scene: Path, reporter: Reporter | None = None) -> Iterator[None]:
    """Hold the scene's lock inside the block (re-entrant in one process: nested stages share it).

    When another process holds it, say so once through ``reporter.warn`` and wait. A scene folder that
    cannot be written takes no lock (nothing can be written there to fight over).
    """
    folder = Path(scene) / MANIFEST_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        yield
        return
    path = str((folder / LOCK_FILE).resolve())
    lock = _LOCKS.setdefault(path, FileLock(path, thread_local=False))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            owner = (folder / OWNER_FILE).read_text().strip()
        except OSError:
            owner = "another process"
        (reporter or Reporter()).warn(f"Another nerfpipe ({owner}) is working on {scene}: waiting for it to finish "
                                      "(Ctrl-C stops this one; nothing is lost).")
        lock.acquire()
    except OSError:
        yield  # a read-only scene: no lock to take
        return
    try:
        yield
    finally:
        lock.release()


def _sign_lock(scene: Path) -> None:
    """Note who holds the lock, for a process that waits (written only when a stage runs: an up-to-date
    check touches no file)."""
    command = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))
    with contextlib.suppress(OSError):
        (Path(scene) / MANIFEST_DIR / OWNER_FILE).write_text(f"pid {os.getpid()}: {command}")


def run_stage(
    scene: Path,
    spec: StageSpec,
    body: Callable[[Path], Any],
    *,
    force: bool = False,
    reporter: Reporter | None = None,
    result_type: Any = None,
) -> StageResult:
    """:func:`_run_stage` under the scene's lock (see :func:`scene_lock`). ``body`` returns a JSON-able
    dict or a record with ``to_dict`` (then ``result_type``, its class, types ``StageResult.value``)."""
    require_folder(Path(scene), "The scene folder", "create it or pass another --scene")
    with scene_lock(scene, reporter):
        res = _run_stage(Path(scene), spec, body, force=force)
    return dataclasses.replace(res, result_type=result_type, scene=Path(scene))


def _json_result(result: Any) -> dict:
    return result.to_dict() if hasattr(result, "to_dict") else result


def _run_stage(
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
    previous = load_manifest(scene, spec.name)
    if not force and is_up_to_date(scene, spec):
        assert previous is not None
        return StageResult(spec.name, ran=False, manifest=previous)

    _ensure_writable(scene)
    _sign_lock(scene)
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
            result = _json_result(body(work))
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
        result = _json_result(body(scene))
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
    write_json_atomic(mpath, manifest)
    return StageResult(spec.name, ran=True, manifest=manifest)
