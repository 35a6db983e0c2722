"""Model names -> (config dataclass, builder): what a recipe's ``model`` key may say.

The paper's NeRF registers as ``"nerf"`` (:mod:`nerfpipe.nerf.nerf_model`); the fast grid model
registers as ``"fast"`` when its module (``nerfpipe.nerf.fast``) is imported. :func:`get_model`
imports those modules lazily, so a missing or broken fast module never breaks the paper model.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Callable

from nerfpipe.nerf.interface import Model, SceneBox


@dataclass(frozen=True)
class ModelEntry:
    name: str
    config_cls: type
    """A frozen dataclass with a ``loss`` field; the recipe's model table is parsed into it."""
    builder: Callable[[object, SceneBox], Model]
    """builder(config, scene_box) -> Model"""


MODELS: dict[str, ModelEntry] = {}

_MODEL_MODULES = {"nerf": "nerfpipe.nerf.nerf_model", "fast": "nerfpipe.nerf.fast"}
"""Modules that register a model name when imported (looked up lazily by :func:`get_model`)."""


def register_model(name: str, config_cls: type, builder: Callable[[object, SceneBox], Model]) -> None:
    """Make ``name`` usable as a recipe's ``model``. The config class must be a dataclass with ``loss``."""
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"{config_cls} is not a dataclass")
    if "loss" not in {f.name for f in dataclasses.fields(config_cls)}:
        raise TypeError(f"{config_cls.__name__} has no 'loss' field (see nerfpipe.nerf.interface)")
    MODELS[name] = ModelEntry(name, config_cls, builder)


def model_names() -> list[str]:
    """Names a recipe may use: registered ones and those whose module can be imported on demand."""
    return sorted(set(MODELS) | set(_MODEL_MODULES))


def get_model(name: str) -> ModelEntry:
    """The registry entry for ``name``, importing its module on first use.

    Raises KeyError for a name nobody registers, and ImportError (with the cause chained) when the
    module that should register it cannot be imported.
    """
    if name not in MODELS and name in _MODEL_MODULES:
        importlib.import_module(_MODEL_MODULES[name])
    if name not in MODELS:
        raise KeyError(name)
    return MODELS[name]


def build_model(name: str, config, scene_box: SceneBox) -> Model:
    return get_model(name).builder(config, scene_box)
