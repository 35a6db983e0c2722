"""Recipes: named training configurations in ``recipes/*.toml``, checked against typed dataclasses.

A recipe file has a ``model`` key naming a registered model (:mod:`nerfpipe.nerf.registry`), the
tables ``[data]`` (:class:`DataConfig`) and ``[training]`` (:class:`TrainingConfig`) shared by every
model, and one table named after the model (``[nerf]``, ``[fast]``) parsed into that model's config
dataclass. A recipe states only how it differs from the dataclass defaults. Every key is checked:
a key that matches no field stops with the file, the key and the closest valid key.

``--set table.key=value`` (or a bare ``key=value`` when only one table has that key) overrides one
value; values are TOML (``--set nerf.lindisp=true``), bare words are taken as strings.
The resolved recipe is saved beside each run (:func:`dump_recipe`) and reloads with :func:`load_recipe`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

from nerfpipe.errors import NerfpipeError
from nerfpipe.scene import missing
from nerfpipe.nerf.registry import get_model, model_names
from nerfpipe.nerf.trainer import TrainingConfig

def _shipped_recipes() -> Path:
    """``nerfpipe/_recipes``: in a checkout a link to the repo's ``recipes/``, in a wheel a copy of it.
    A checkout made without links (git on Windows) holds a small text file there: then ``recipes/``."""
    package = Path(__file__).resolve().parent
    bundled = package / "_recipes"
    return bundled if bundled.is_dir() else package.parent / "recipes"


RECIPES_DIR = _shipped_recipes()
"""The recipes shipped with nerfpipe (``--recipe NAME`` looks here)."""
SHARED_TABLES = ("data", "training")


@dataclass(frozen=True)
class DataConfig:
    """How the scene's images and cameras are read (names in parentheses: the reference code's options)."""

    factor: int = 8
    """Train on images_<factor>/ of an LLFF scene (factor)."""
    llffhold: int = 8
    """Hold out every llffhold-th LLFF image for evaluation; 0 holds out none (llffhold)."""
    ndc: bool = True
    """Warp forward-facing LLFF rays to normalised device coordinates (not no_ndc)."""
    spherify: bool = False
    """Normalise a 360-degree LLFF capture around its centre instead (spherify; needs ndc = false)."""
    bd_factor: float = 0.75
    """LLFF: scale the world so the nearest bound lands at 1 / bd_factor."""
    white_bkgd: bool = False
    """Composite RGBA images and renders on white (white_bkgd)."""
    half_res: bool = False
    """Blender: load images at half resolution, 400x400 (half_res)."""
    object: bool = False
    """An object photographed all around on white (photos cut out on white; set by train for such scenes):
    the scene box is the box of the sparse points instead of a sphere around everything, rays end on white."""

    undistort: bool = True
    """A nerfpipe scene whose SfM camera has lens distortion (SIMPLE_RADIAL k1 != 0) trains on its photos
    undistorted onto a pinhole camera (``images_undistorted_<k>/``); false: on ``images_<k>/`` as if
    they were pinhole (what nerfpipe did before; for comparison)."""
    BOUNDS: ClassVar[dict[str, str]] = {"factor": ">= 1", "llffhold": ">= 0", "bd_factor": "> 0"}
    """Allowed values (see :func:`_check_bound`)."""

    def problems(self) -> dict[str, str]:
        """{key: what is wrong} for values that are each allowed but do not fit together."""
        if self.ndc and self.spherify:
            return {"spherify": "needs data.ndc = false (NDC is for forward-facing scenes)"}
        if self.ndc and self.object:
            return {"object": "needs data.ndc = false (NDC is for forward-facing scenes)"}
        return {}


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str
    data: DataConfig
    training: TrainingConfig
    model_config: Any
    """An instance of the model's registered config dataclass."""
    path: str = ""
    """The file it came from."""

    def to_dict(self) -> dict:
        """Plain data: model, data, training and the model's table (what :func:`dump_recipe` writes)."""
        return {
            "model": self.model,
            "data": _plain(dataclasses.asdict(self.data)),
            "training": _plain(dataclasses.asdict(self.training)),
            self.model: _plain({k: v for k, v in dataclasses.asdict(self.model_config).items() if k != "loss"}),
        }


def _plain(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def default_recipe_name() -> str:
    """"fast" when recipes/fast.toml ships, else "llff"."""
    return "fast" if (RECIPES_DIR / "fast.toml").exists() else "llff"


def resolve_recipe_path(name_or_path: str) -> Path:
    """A recipe name (``llff``) or a path to a .toml file -> the file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists() or "/" in name_or_path:
        if not path.is_file():
            raise NerfpipeError(f"The recipe file {path} {missing(path, 'file')}: check the path, or name one of "
                                f"{', '.join(recipe_names())}.")
        return path
    candidate = RECIPES_DIR / f"{name_or_path}.toml"
    if not candidate.is_file():
        close = difflib.get_close_matches(name_or_path, recipe_names(), n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise NerfpipeError(f"There is no recipe named {name_or_path!r} (known: {', '.join(recipe_names())}).{hint}")
    return candidate


def _closest(key: str, valid) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.0)
    return close[0] if close else ""


def _unknown(where: str, key: str, valid, prefix: str = "") -> NerfpipeError:
    best = _closest(key, valid)
    hint = f" did you mean {prefix}{best}?" if best else ""
    return NerfpipeError(f"{where}: unknown key {prefix}{key};{hint} (valid: {', '.join(sorted(valid))}).")


def _coerce(where: str, key: str, value: Any, hint: Any) -> Any:
    """Check a TOML value against a dataclass field's type; return it in that type."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise NerfpipeError(f"{where}: {key} = {value!r} is not one of {', '.join(map(repr, allowed))}.")
        return value
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, (list, tuple)):
            raise NerfpipeError(f"{where}: {key} = {value!r} should be a list, such as [4].")
        return tuple(_coerce(where, key, v, item) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise NerfpipeError(f"{where}: {key} = {value!r} should be true or false.")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise NerfpipeError(f"{where}: {key} = {value!r} should be a whole number.")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise NerfpipeError(f"{where}: {key} = {value!r} should be a number.")
        if not math.isfinite(value):
            raise NerfpipeError(f"{where}: {key} = {value!r} should be a finite number.")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise NerfpipeError(f"{where}: {key} = {value!r} should be a string.")
        return value
    raise TypeError(f"unsupported field type {hint!r} for {key}")


_BOUND = re.compile(r"^(?:(>=|>)\s*(-?[\d.]+)|([\[(])\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*([\])]))$")


def _check_bound(where: str, key: str, value: Any, bound: str) -> None:
    """Stop unless ``value`` (a number, or each number of a list) lies in ``bound``: ``">= 1"``, ``"> 0"``,
    or an interval such as ``"(0, 1]"``."""
    m = _BOUND.match(bound)
    if m is None:
        raise ValueError(f"bad bound {bound!r} for {key}")
    for v in value if isinstance(value, tuple) else (value,):
        if m.group(1):
            inclusive, lo = m.group(1) == ">=", float(m.group(2))
            if not (v >= lo if inclusive else v > lo):
                num = int(lo) if lo.is_integer() else lo
                wanted = f"{num} or more" if inclusive else f"above {num}"
                raise NerfpipeError(f"{where}: {key} = {_show(value)} should be {wanted}.")
        else:
            lo, hi = float(m.group(4)), float(m.group(5))
            ok = (v >= lo if m.group(3) == "[" else v > lo) and (v <= hi if m.group(6) == "]" else v < hi)
            if not ok:
                raise NerfpipeError(f"{where}: {key} = {_show(value)} should lie in {bound}.")


def _show(value: Any) -> str:
    return "[" + ", ".join(map(repr, value)) + "]" if isinstance(value, tuple) else repr(value)


def _build(cls: type, table: dict, origins: dict[str, str], where: str, prefix: str, exclude: tuple[str, ...] = ()) -> Any:
    """``cls`` from a recipe table; each value checked for its type and bounds and named, if wrong, with
    where it came from (``origins``: table key -> the override that set it; the file otherwise)."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in exclude]
    bounds = getattr(cls, "BOUNDS", {})
    values = {}
    for key, value in table.items():
        came_from = origins.get(key, where)
        if key in exclude:
            raise NerfpipeError(f"{came_from}: {prefix}{key} belongs in [training], not in [{prefix[:-1]}].")
        if key not in names:
            raise _unknown(came_from, key, names, prefix)
        values[key] = _coerce(came_from, f"{prefix}{key}", value, hints[key])
        if key in bounds:
            _check_bound(came_from, f"{prefix}{key}", values[key], bounds[key])
    built = cls(**values)
    problems = built.problems() if hasattr(built, "problems") else {}
    for key, what in problems.items():
        raise NerfpipeError(f"{origins.get(key, where)}: {prefix}{key} = {_show(getattr(built, key))} {what}.")
    return built


def recipe_sets(name_or_path: str, key: str) -> bool:
    """Does the recipe file itself write ``key`` (``table.name``), rather than leave it to the default?"""
    table, name = key.split(".")
    try:
        raw = tomllib.loads(resolve_recipe_path(name_or_path).read_text())
    except tomllib.TOMLDecodeError:
        return False  # load_recipe says what is wrong with the file
    return isinstance(raw.get(table), dict) and name in raw[table]


def has_override(overrides, key: str) -> bool:
    """Does one of the ``key=value`` overrides set ``key`` (``table.name``, or its bare ``name``)?"""
    return any(o.split("=", 1)[0].strip() in (key, key.split(".")[-1]) for o in overrides if isinstance(o, str))


def parse_override(text: str) -> tuple[str, Any]:
    """``'training.iters=2000'`` -> ('training.iters', 2000); bare words are strings (``loss=l1``)."""
    if "=" not in text:
        raise NerfpipeError(f"--set {text!r} needs the form key=value, such as --set training.iters=2000.")
    key, raw = (s.strip() for s in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def _apply_overrides(raw: dict, overrides: list[tuple[str, Any]], model: str, model_cls: type,
                     labels: dict[str, str]) -> dict[str, dict[str, str]]:
    """Write ``overrides`` into ``raw``; return {table: {key: label}} for the keys they set (``labels``: the
    override's text as given, by key; default ``--set key=value``)."""
    tables = {
        "data": [f.name for f in dataclasses.fields(DataConfig)],
        "training": [f.name for f in dataclasses.fields(TrainingConfig)],
        model: [f.name for f in dataclasses.fields(model_cls) if f.name != "loss"],
    }
    origins: dict[str, dict[str, str]] = {}
    for key, value in overrides:
        if key == "model":
            continue
        if "." in key:
            table, name = key.split(".", 1)
            if table not in tables:
                raise _unknown("--set", table, tables, "")
            if name not in tables[table]:
                if table == model and name == "loss":
                    raise NerfpipeError("--set: the loss is set with training.loss (or --loss), not with the model table.")
                raise _unknown("--set", name, tables[table], f"{table}.")
        else:
            owners = [t for t, names in tables.items() if key in names]
            if len(owners) > 1:
                raise NerfpipeError(f"--set {key} is ambiguous: write {' or '.join(f'{t}.{key}' for t in owners)}.")
            if not owners:
                everything = [f"{t}.{n}" for t, names in tables.items() for n in names]
                best = _closest(key, everything)
                raise NerfpipeError(f"--set: unknown key {key}; did you mean {best}?")
            table, name = owners[0], key
        raw.setdefault(table, {})[name] = value
        origins.setdefault(table, {})[name] = labels.get(key) or f"--set {key}={value}"
    return origins


def load_recipe(name_or_path: str, overrides: list[str] | list[tuple[str, Any]] = ()) -> Recipe:
    """Read, check and resolve a recipe; ``overrides`` are ``key=value`` strings or (key, value) pairs."""
    path = resolve_recipe_path(name_or_path)
    where = str(path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise NerfpipeError(f"{where} is not valid TOML ({e}): fix the line it names.") from None
    pairs, labels = [], {}
    for o in overrides:
        pairs.append(parse_override(o) if isinstance(o, str) else o)
        if isinstance(o, str):
            labels[pairs[-1][0]] = f"--set {o.strip()}"
    model = dict(pairs).get("model", raw.get("model"))
    if model is None:
        raise NerfpipeError(f"{where} has no model key: add model = \"nerf\" (or one of {', '.join(model_names())}).")
    try:
        entry = get_model(model)
    except KeyError:
        raise NerfpipeError(f"{where}: model = {model!r} is not a known model; did you mean {_closest(model, model_names())}?") from None
    except ImportError as e:
        raise NerfpipeError(f"{where}: model {model!r} cannot be loaded ({e}): use another recipe, such as llff.") from None
    valid_top = ["model", *SHARED_TABLES, model]
    for key in raw:
        if key not in valid_top:
            if key in model_names():
                raise NerfpipeError(f"{where}: the table [{key}] does not apply to model {model!r}; rename it [{model}] or remove it.")
            raise _unknown(where, key, valid_top)
        if key != "model" and not isinstance(raw[key], dict):
            raise NerfpipeError(f"{where}: {key} should be a table ([{key}]).")
    origins = _apply_overrides(raw, pairs, model, entry.config_cls, labels)
    data = _build(DataConfig, raw.get("data", {}), origins.get("data", {}), where, "data.")
    training = _build(TrainingConfig, raw.get("training", {}), origins.get("training", {}), where, "training.")
    model_cfg = _build(entry.config_cls, raw.get(model, {}), origins.get(model, {}), where, f"{model}.", exclude=("loss",))
    model_cfg = dataclasses.replace(model_cfg, loss=training.loss)
    return Recipe(name=path.stem, model=model, data=data, training=training, model_config=model_cfg, path=str(path))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as TOML text (every value written out; reloads with :func:`load_recipe`)."""
    d = recipe.to_dict()
    lines = [f"# resolved recipe {recipe.name!r} (from {recipe.path})", f"model = {_toml_value(d['model'])}"]
    for table in ("data", "training", recipe.model):
        lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in d[table].items()]
    return "\n".join(lines) + "\n"
