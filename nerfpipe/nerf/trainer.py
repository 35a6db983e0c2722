"""The optimisation loop shared by every model: ray batches, Adam, schedule, checkpoints, logs.

The trainer knows models only through :class:`nerfpipe.nerf.interface.Model`, datasets through
:class:`TrainingData`, and takes its own :class:`TrainingConfig` (a recipe's ``[training]`` table).
It is deterministic given the recipe's seed and resumes exactly: each step's ray batch and each
step's sampling noise come from generators seeded by (seed, step), so a run interrupted at step k and
resumed gives the same batches as an uninterrupted one.

Run folder (``runs/<run>/``): ``checkpoints/step_<n>.pt`` (the last :data:`KEEP_CHECKPOINTS`),
``metrics.jsonl`` (one JSON object per logged step), and TensorBoard event files when the optional
``tensorboard`` package is installed.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, Protocol

import torch
from torch import Tensor

from nerfpipe.errors import NerfpipeError
from nerfpipe.nerf.metrics import mse_to_psnr
from nerfpipe.nerf.interface import LossKind, Model, RayBundle
from nerfpipe.progress import Reporter

@dataclass(frozen=True)
class TrainingConfig:
    """The optimisation loop, shared by every model."""

    iters: int = 200_000
    """Optimisation steps (N_iters)."""
    minutes: float = 0.0
    """Also stop after this many minutes of training; 0: no time limit. The schedule still assumes iters."""
    batch_rays: int = 1024
    """Rays per step (N_rand)."""
    batching: Literal["all_images", "one_image"] = "all_images"
    """Draw each step's rays from all training images (shuffled once per epoch), or from one random image (no_batching)."""
    precrop_iters: int = 0
    """With one_image batching, draw rays from the image's centre for this many first steps (precrop_iters)."""
    precrop_frac: float = 0.5
    """Side of that centre crop as a fraction of the image (precrop_frac)."""
    checkpoint_every: int = 10_000
    """Save a checkpoint every this many steps (i_weights); also at the end and on Ctrl-C."""
    log_every: int = 100
    """Write a line of metrics.jsonl every this many steps (i_print)."""
    seed: int = 0
    """Seed of every random choice: ray batches, sample jitter, density noise, initial weights."""
    loss: LossKind = "mse"
    """Photometric loss: mse, smooth_l1 or l1. PSNR is always computed from the MSE."""
    average: float = 0.0
    """Evaluation, rendering and exports use an exponential moving average of the weights with this
    decay a step (:class:`WeightAverage`; 0.995 averages about the last 200 steps); training goes on
    from the weights themselves. 0: the weights as trained."""
    average_start: float = 0.25
    """Fraction of the step budget at which the average starts from a copy of the weights (the fast
    recipes' grids grow until 0.3 of it, and each growth starts the average over). Early, so that a
    run the time budget stops soon gains too: fern stopped at 1435 of 3000 steps, 24.97 dB held-out
    averaged against 24.72 for the last weights."""

    BOUNDS: ClassVar[dict[str, str]] = {
        "iters": ">= 1", "minutes": ">= 0", "batch_rays": ">= 1", "precrop_iters": ">= 0", "precrop_frac": "(0, 1]",
        "checkpoint_every": ">= 1", "log_every": ">= 1", "seed": ">= 0", "average": "[0, 1)", "average_start": "[0, 1]",
    }
    """Allowed values (checked where a recipe sets them: :mod:`nerfpipe.recipes`)."""


class TrainingData(Protocol):
    """What the trainer needs of a dataset (:class:`nerfpipe.datasets.base.SceneData` is one)."""

    images: Tensor
    """(N, H, W, 3) colours in [0, 1]."""
    i_train: list[int]
    """Indices of the training images."""
    height: int
    width: int

    def rays(self, cam: Tensor, x: Tensor, y: Tensor) -> RayBundle:
        """Rays of pixels (x column, y row) of cameras ``cam`` (each (rays,) long)."""
        ...


CHECKPOINTS = "checkpoints"
METRICS_LOG = "metrics.jsonl"
KEEP_CHECKPOINTS = 3
"""Older checkpoints are deleted once a newer one is written. Only the newest keeps Adam's moments
(twice the weights' size): the older ones, there in case the newest is damaged, are rewritten with
the weights and their average alone (the fern example's three: 165 + 2 x 82 MB)."""
CHECKPOINT_FORMAT = 1
ADAM_BETAS = (0.9, 0.999)
_SEED_STRIDE = 1_000_003
"""Per-step generators are seeded with seed * _SEED_STRIDE + step (+ a stream offset)."""


@contextmanager
def matmul_precision(tf32: bool) -> Iterator[None]:
    """Let CUDA matrix products use TF32 tensor cores (Ampere and newer) inside the block; restored after.

    Measured on an H100 with the llff recipe on fern (factor 8): 0.0185 s per step instead of 0.0296
    in fp32 (1.6x), held-out PSNR after 15,000 steps 23.80 dB against 23.77. No effect on a CPU.
    """
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def step_generator(seed: int, step: int, stream: int = 0, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator of one stream of one step: 0 the model's sample jitter and density noise (on the
    model's device), 1 the epoch's ray order, 2 the step's ray batch."""
    return torch.Generator(device=device).manual_seed(seed * _SEED_STRIDE + step + stream * 7919)


class RaySampler:
    """Each step's rays and target colours, a pure function of (seed, step).

    all_images: every training pixel once per epoch in a random order (a new permutation each epoch),
    in batches of ``batch_rays`` (an epoch's last batch may be shorter, as in the reference code).
    one_image: ``batch_rays`` distinct pixels of one random training image, from its central
    ``precrop_frac`` window during the first ``precrop_iters`` steps.
    """

    def __init__(self, data: TrainingData, cfg: TrainingConfig):
        self.data = data
        self.cfg = cfg
        self.train_ids = torch.tensor(data.i_train, dtype=torch.long)
        self.pixels = data.height * data.width
        self.total = len(data.i_train) * self.pixels
        self.batches_per_epoch = math.ceil(self.total / cfg.batch_rays)
        self._epoch = -1
        self._perm: Tensor | None = None

    def _permutation(self, epoch: int) -> Tensor:
        if epoch != self._epoch:
            self._perm = torch.randperm(self.total, generator=step_generator(self.cfg.seed, epoch, stream=1))
            self._epoch = epoch
        return self._perm

    def pixels_of(self, step: int) -> tuple[Tensor, Tensor, Tensor]:
        """(cam, y, x) long tensors (rays,) of the pixels of ``step``."""
        n, h, w = self.cfg.batch_rays, self.data.height, self.data.width
        if self.cfg.batching == "all_images":
            epoch, pos = divmod(step, self.batches_per_epoch)
            flat = self._permutation(epoch)[pos * n : (pos + 1) * n]
            cam = self.train_ids[flat // self.pixels]
            pix = flat % self.pixels
            return cam, pix // w, pix % w
        g = step_generator(self.cfg.seed, step, stream=2)
        cam = self.train_ids[torch.randint(len(self.train_ids), (1,), generator=g)]
        if step < self.cfg.precrop_iters:
            dh, dw = int(h // 2 * self.cfg.precrop_frac), int(w // 2 * self.cfg.precrop_frac)
            y0, x0, wh, ww = h // 2 - dh, w // 2 - dw, 2 * dh, 2 * dw
        else:
            y0, x0, wh, ww = 0, 0, h, w
        count = min(n, wh * ww)
        pick = torch.randperm(wh * ww, generator=g)[:count]
        return cam.expand(count), y0 + pick // ww, x0 + pick % ww

    def batch(self, step: int, device: torch.device) -> tuple[RayBundle, Tensor]:
        """RayBundle (rays) and target colours (rays, 3) of ``step``, on ``device``."""
        cam, y, x = self.pixels_of(step)
        rays = self.data.rays(cam, x, y)
        target = self.data.images[cam, y, x]
        return rays.to(device), target.to(device)


@dataclass
class TrainSummary:
    step: int
    """Steps done in total (including those of earlier, resumed sessions)."""
    stopped: str
    """'iters' (the recipe's steps are done), 'minutes' (time budget reached)."""
    seconds: float
    """Wall time of this session's optimisation steps."""
    steps_this_session: int
    last: dict
    """The last logged metrics line."""


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


CHECKPOINT_NAME = re.compile(r"^step_(\d+)\.pt$")
"""A checkpoint's file name; other files in ``checkpoints/`` are not checkpoints and are left alone."""
DAMAGED_SUFFIX = ".damaged"
"""A damaged checkpoint is renamed ``step_<n>.pt.damaged`` when an older good one takes its place."""


def checkpoint_step(path: Path) -> int:
    """The step in a checkpoint's name (``step_0001300.pt`` -> 1300)."""
    m = CHECKPOINT_NAME.match(Path(path).name)
    if m is None:
        raise ValueError(f"{path} is not named like a checkpoint (step_<n>.pt)")
    return int(m.group(1))


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files of a run (``checkpoints/step_<n>.pt``), oldest first; other files are ignored."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if CHECKPOINT_NAME.match(p.name) and p.is_file()), key=checkpoint_step)


def save_checkpoint(run_dir: Path, model: Model, optimizer: torch.optim.Optimizer | None, step: int, model_name: str,
                    average: WeightAverage | None = None) -> Path:
    """Write ``checkpoints/step_<step>.pt`` atomically, drop all but the newest KEEP_CHECKPOINTS and
    the optimiser state of all but the newest (see :data:`KEEP_CHECKPOINTS`).
    ``average``: a :class:`WeightAverage`, whose weights (by parameter name) are saved beside the model's."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:07d}.pt"
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_name": model_name,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
    }
    if average is not None:
        payload.update(average.checkpoint_entries())
    os.replace(_written_beside(payload, path), path)
    kept = list_checkpoints(run_dir)
    for old in kept[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    for old in kept[-KEEP_CHECKPOINTS:]:
        if checkpoint_step(old) < step:
            _drop_optimizer_state(old)
    return path


def _written_beside(payload: dict, path: Path) -> Path:
    """``payload`` saved to a temporary file beside ``path``, to be moved onto it (atomically)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    torch.save(payload, tmp)
    return tmp


def _drop_optimizer_state(path: Path) -> None:
    """Rewrite an older checkpoint without Adam's moments; a damaged one is left as it is."""
    try:
        ckpt = load_checkpoint(path)  # mapped: the weights are copied from the file as they are written
    except DamagedCheckpoint:
        return
    if not ckpt.get("optimizer"):
        return
    ckpt["optimizer"] = {}
    tmp = _written_beside(ckpt, path)
    del ckpt  # unmaps the file before it is replaced (Windows refuses to replace a mapped file)
    os.replace(tmp, path)


class DamagedCheckpoint(NerfpipeError):
    """A checkpoint file that cannot be loaded, or that is not a nerfpipe checkpoint."""


_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80


def load_checkpoint(path: Path, device: torch.device | str = "cpu", *, mmap: bool = True) -> dict:
    """A checkpoint dict (plain tensors and numbers; loaded with weights_only=True). ``mmap``: tensors
    are read from the file when they are used, so checking that a checkpoint loads costs little (0.05 s
    instead of 0.2 to 0.4 s, measured when the fast recipe's checkpoint was 144 MB; with Adam's moments
    and the weight average of the fern example's final grid it is 165 MB); training loads its own copy (``mmap=False``),
    so the optimiser state never lives in a mapped file that is pruned later.

    Raises :class:`DamagedCheckpoint` with a sentence naming the file for a truncated or garbled file,
    a pickle of other Python objects (refused unread: never loaded with weights_only=False), or a
    dict that lacks what nerfpipe writes. nerfpipe writes zip checkpoints only: anything else is
    never unpickled.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise DamagedCheckpoint(f"The checkpoint {path} cannot be read ({e.strerror or e}).") from None
    if head != _ZIP_MAGIC:
        if head[:1] == bytes([_PICKLE_PROTO]):
            raise DamagedCheckpoint(
                f"{path} is not a nerfpipe checkpoint (it is a pickle of other Python objects) and was not loaded."
            )
        raise DamagedCheckpoint(f"The checkpoint {path} is damaged (not a checkpoint file).")
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols are not for the user
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        raise DamagedCheckpoint(
            f"{path} is not a nerfpipe checkpoint (it holds Python objects other than tensors) and was not loaded."
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise DamagedCheckpoint(f"The checkpoint {path} is truncated or damaged.") from None
    if (not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict) or not isinstance(ckpt.get("step"), int)
            or not all(isinstance(v, torch.Tensor) for v in ckpt["model"].values())):
        raise DamagedCheckpoint(f"{path} is not a nerfpipe checkpoint (it lacks the model's weights or its step).")
    return ckpt


def restore(model: Model, ckpt: dict, path: Path, *, averaged: bool = True) -> None:
    """Load a checkpoint's weights into ``model``; a checkpoint of another model is a sentence, not a traceback.

    ``averaged``: where the checkpoint holds a :class:`WeightAverage`, its weights take the place of the
    trained ones (for evaluation, rendering and exports); training resumes with ``averaged=False``."""
    state = ckpt["model"]
    average = ckpt.get("average")
    since = ckpt.get("average_since", 0)
    if average is not None and not (isinstance(average, dict) and set(average) <= set(state)
                                    and all(isinstance(v, torch.Tensor) for v in average.values())
                                    and isinstance(since, int) and not isinstance(since, bool)):
        raise DamagedCheckpoint(f"{path} holds a weight average that does not fit its weights.")
    if averaged and average:
        state = {**state, **average}
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DamagedCheckpoint(f"{path} holds the weights of another model than its run's recipe ({first}).") from None


def usable_checkpoint(run_dir: Path, device: torch.device | str = "cpu", *, set_aside: bool = False,
                      reporter: Reporter | None = None) -> tuple[Path, dict] | None:
    """The newest checkpoint of a run that loads, and its dict; None when the run has none.

    A damaged newer checkpoint is named in a warning and skipped for an older good one; with
    ``set_aside`` (when training goes on from the older one) it is renamed ``<name>.damaged`` so that
    it neither shadows the new checkpoints nor is deleted. When no checkpoint loads, the newest's
    :class:`DamagedCheckpoint` is raised.
    """
    reporter = reporter or Reporter()
    checkpoints = list_checkpoints(run_dir)
    damaged: list[tuple[Path, DamagedCheckpoint]] = []
    for path in reversed(checkpoints):
        try:
            ckpt = load_checkpoint(path, device)
        except DamagedCheckpoint as e:
            damaged.append((path, e))
            continue
        for bad, error in damaged:
            if set_aside:
                aside = bad.with_name(bad.name + DAMAGED_SUFFIX)
                os.replace(bad, aside)
                reporter.warn(f"{error.sentence[:-1]}: renamed it {aside.name} and went back to {path.name}.")
            else:
                reporter.warn(f"{error.sentence[:-1]}: using the older {path.name} instead.")
        return path, ckpt
    if damaged:
        raise damaged[0][1]
    return None


class Events:
    """TensorBoard scalars and images when the optional tensorboard package is installed; otherwise nothing."""

    def __init__(self, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.writer = None
            return
        self.writer = SummaryWriter(log_dir=str(run_dir))

    def scalars(self, step: int, values: dict) -> None:
        if self.writer is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.writer.add_scalar(k, v, step)

    def images(self, step: int, images: dict[str, Tensor]) -> None:
        """{tag: (H, W, 3) float in [0, 1]} at ``step``."""
        if self.writer is not None:
            for tag, img in images.items():
                self.writer.add_image(tag, img.clamp(0, 1).detach().cpu(), step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class WeightAverage:
    """An exponential moving average of a model's trainable weights (Polyak averaging), for evaluation.

    Late in a schedule Adam's steps still jitter the weights around where they are heading; their
    average lies nearer it. On fern (the fast recipe, 3954 steps of a 4300-step schedule) the
    held-out PSNR of the weights averaged with the decay 0.995 is 0.10 dB above that of the last
    ones (24.97 against 24.87 dB), at no cost to training. The average starts at ``start`` (a copy of the
    weights that step trained) and takes in the weights every :data:`AVERAGE_EVERY` steps; it starts
    over when the model rewrites its weights wholesale (a grid's growth: see
    :meth:`~nerfpipe.nerf.interface.Model.before_step`). ``n`` steps after it (re)started, the decay a
    step is ``min(decay, n / (n + AVERAGE_SPAN))``: the average spans at most about the last quarter of
    those steps, so that in a short run (or one stopped by its time budget soon after the start) it is
    not held back by the weights it started from."""

    def __init__(self, model: Model, decay: float, start: int):
        self.decay = decay
        self.start = start
        self.since = start  # the step the average (re)started at
        self.params = {name: p for name, p in model.named_parameters() if p.requires_grad}
        self.weights: dict[str, Tensor] = {}

    @property
    def active(self) -> bool:
        return self.decay > 0

    def step_decay(self, step: int) -> float:
        """The decay a step, ``step`` steps into training."""
        n = step - self.since
        return min(self.decay, n / (n + AVERAGE_SPAN))

    @torch.no_grad()
    def update(self, step: int, restart: bool = False) -> None:
        """After the optimiser's step that made ``step`` steps done."""
        if not self.active or step < self.start:
            return
        if restart or not self.weights:  # the weights this step trained (a grid's levels not in use have no gradient)
            self.weights = {name: p.detach().clone() for name, p in self.params.items() if p.grad is not None}
            self.since = step
        elif step % AVERAGE_EVERY == 0:  # by the step's number, so that a resumed run averages the same steps
            names = list(self.weights)
            torch._foreach_lerp_([self.weights[n] for n in names], [self.params[n].detach() for n in names],
                                 1.0 - self.step_decay(step) ** AVERAGE_EVERY)

    def state_dict(self) -> dict[str, Tensor] | None:
        return dict(self.weights) if self.weights else None

    def checkpoint_entries(self) -> dict:
        """What a checkpoint keeps of the average (nothing before it starts): its weights by parameter
        name (``"average"``, checked by :func:`restore`) and the step it (re)started at."""
        weights = self.state_dict()
        return {} if weights is None else {"average": weights, "average_since": self.since}

    def load(self, ckpt: dict) -> None:
        """Go on from a checkpoint's average, where it holds one."""
        weights = ckpt.get("average")
        if self.active and weights:
            self.weights = {name: weights[name].clone() for name in self.params if name in weights}
            self.since = int(ckpt.get("average_since", self.start))

    @torch.no_grad()
    def copy_to_model(self) -> None:
        for name, w in self.weights.items():
            self.params[name].copy_(w)


AVERAGE_EVERY = 4
"""Steps between two updates of a :class:`WeightAverage` (on fern's final grid an update of the 10 M
weights in use takes 3 ms, against 150 ms a step)."""

AVERAGE_SPAN = 4.0
"""A :class:`WeightAverage` ``n`` steps after its start spans at most about ``n / AVERAGE_SPAN`` steps.
In a long run this changes nothing that lasts: with the decay 0.995 it has caught up 800 steps after
the start (the example's 3000 steps start averaging over after the growth at step 900)."""


def make_optimizer(model: Model, cfg: TrainingConfig) -> tuple[torch.optim.Optimizer, list[float]]:
    """Adam over the model's parameter groups, and each group's base learning rate.

    On a CPU or a CUDA GPU the fused implementation (one kernel for all parameters instead of a few
    per tensor; the same update up to rounding): 5% faster fast-recipe steps on 2 CPU cores (0.126 s
    -> 0.119 s at the example's final grid), more on a GPU, where a step is launch-bound."""
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    optimizer = torch.optim.Adam(model.param_groups(cfg.iters), betas=ADAM_BETAS, fused=fused or None)
    return optimizer, [g["lr"] for g in optimizer.param_groups]


def train_step(model: Model, optimizer: torch.optim.Optimizer, base_lrs: list[float], sampler: RaySampler, step: int,
               cfg: TrainingConfig, device: torch.device, average: WeightAverage | None = None) -> dict[str, float]:
    """One optimisation step (0-based ``step``): lr schedule, ray batch, render, loss, backward, the
    model's gradient terms (:meth:`~nerfpipe.nerf.interface.Model.gradient_terms`), Adam, and the
    weight ``average`` if given.

    Returns the model's loss stats plus the fine colour's MSE and the PSNR from it.
    """
    rewritten = model.before_step(step)
    if rewritten:  # weights the model emptied (a grid's coarser levels) keep no Adam moments
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.numel() == 0:
                    optimizer.state.pop(p, None)
    factor = model.lr_factor(step, cfg.iters)
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base * factor
    rays, target = sampler.batch(step, device)
    out = model.render(rays, train=True, generator=step_generator(cfg.seed, step, stream=0, device=device))
    loss, stats = model.loss(out, target, step)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    terms = model.gradient_terms(step)
    optimizer.step()
    if average is not None:
        average.update(step + 1, restart=bool(rewritten))
    mse = float(torch.mean((out.rgb.detach() - target) ** 2))
    return {**stats, **terms, "loss": stats["loss"] + sum(terms.values()), "mse": mse, "psnr": mse_to_psnr(mse)}


def train(
    model: Model,
    data: TrainingData,
    cfg: TrainingConfig,
    run_dir: Path,
    *,
    model_name: str,
    device: torch.device,
    reporter: Reporter | None = None,
    resume_from: Path | None = None,
    tf32: bool = False,
) -> TrainSummary:
    """Optimise ``model`` on ``data`` until ``cfg.iters`` steps (or ``cfg.minutes``); checkpoint on the way.
    On return the model holds the :class:`WeightAverage`'s weights when the recipe averages them.

    A KeyboardInterrupt saves a checkpoint of the steps done and is raised again. ``tf32``: CUDA
    matrix products in TF32 (see :func:`matmul_precision`); fp32 otherwise, as the paper.
    """
    reporter = reporter or Reporter()
    run_dir = Path(run_dir)
    model.to(device).train()
    optimizer, base_lrs = make_optimizer(model, cfg)
    start = 0
    if resume_from is not None:
        ckpt = load_checkpoint(resume_from, device, mmap=False)
        restore(model, ckpt, resume_from, averaged=False)
        if ckpt.get("optimizer"):
            try:
                optimizer.load_state_dict(ckpt["optimizer"])
            except (ValueError, KeyError, RuntimeError, TypeError):
                raise DamagedCheckpoint(f"{resume_from} holds an optimiser state that does not fit its model.") from None
        elif ckpt["step"] > 0:
            reporter.warn(f"{Path(resume_from).name} holds no optimiser state (only the newest checkpoint keeps it): "
                          f"Adam's moments start over at step {ckpt['step']}.")
        start = int(ckpt["step"])
    average = WeightAverage(model, cfg.average, round(cfg.average_start * cfg.iters))
    if resume_from is not None:
        average.load(ckpt)
    sampler = RaySampler(data, cfg)
    events = Events(run_dir)
    log_path = run_dir / METRICS_LOG
    _drop_log_lines_after(log_path, start)  # logged by a session killed after its last checkpoint
    window: dict[str, float] = {}
    window_steps = 0
    last: dict = {}
    step = start
    t0 = time.perf_counter()
    deadline = t0 + cfg.minutes * 60.0 if cfg.minutes > 0 else math.inf
    stopped = "iters"
    try:
        with matmul_precision(tf32), reporter.task("train", total=cfg.iters, unit="it") as task, open(log_path, "a") as log:
            task.advance(start)
            while step < cfg.iters:
                if time.perf_counter() >= deadline:
                    stopped = "minutes"
                    break
                stats = train_step(model, optimizer, base_lrs, sampler, step, cfg, device, average)
                if not math.isfinite(stats["loss"]):
                    kept = list_checkpoints(run_dir)
                    raise NerfpipeError(
                        f"Training diverged at step {step + 1}: the loss is {stats['loss']}"
                        + (f" (the checkpoint {kept[-1].name} before it is kept)" if kept else "")
                        + ": lower the learning rate, or check the cameras and images of the scene."
                    )
                step += 1
                for k, v in stats.items():
                    window[k] = window.get(k, 0.0) + v
                window_steps += 1
                task.advance(1, loss=stats["loss"], psnr=stats["psnr"])
                if step % cfg.log_every == 0 or step == cfg.iters:
                    last = _log_line(step, window, window_steps, optimizer, time.perf_counter() - t0, step - start)
                    log.write(json.dumps(last) + "\n")
                    log.flush()
                    events.scalars(step, last)
                    window, window_steps = {}, 0
                if step % cfg.checkpoint_every == 0 and step < cfg.iters:
                    save_checkpoint(run_dir, model, optimizer, step, model_name, average)
            if window_steps:
                last = _log_line(step, window, window_steps, optimizer, time.perf_counter() - t0, step - start)
                log.write(json.dumps(last) + "\n")
    except KeyboardInterrupt:
        if step > start:
            save_checkpoint(run_dir, model, optimizer, step, model_name, average)
        raise
    finally:
        events.close()
    save_checkpoint(run_dir, model, optimizer, step, model_name, average)
    average.copy_to_model()  # what evaluation and rendering load from the checkpoint
    return TrainSummary(step, stopped, time.perf_counter() - t0, step - start, last)


def _drop_log_lines_after(path: Path, step: int) -> None:
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
    if len(kept) != len(lines):
        path.write_text("".join(line + "\n" for line in kept))


def _log_line(step: int, window: dict, n: int, optimizer, seconds: float, steps_done: int) -> dict:
    line = {"step": step}
    line.update({k: round(v / n, 6) for k, v in window.items() if k != "psnr"})
    line["psnr"] = round(mse_to_psnr(line["mse"]), 4) if "mse" in line else None
    line["lr"] = optimizer.param_groups[0]["lr"]
    line["seconds"] = round(seconds, 3)
    line["s_per_it"] = round(seconds / max(1, steps_done), 4)
    return line
