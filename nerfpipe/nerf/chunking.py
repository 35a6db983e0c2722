"""Rendering many rays in chunks that fit the device: the chunk size from free memory, and a whole image."""

from __future__ import annotations

import itertools
import os
from typing import Callable

import torch

from nerfpipe.nerf.interface import Model, RayBundle, RenderOutput


MEMORY_FRACTION = 0.25
"""Share of the device's free memory that one rendering chunk may use."""
MIN_CHUNK, MAX_CHUNK = 256, 65536
"""Chunk bounds in rays: below MIN_CHUNK per-call overhead dominates; above MAX_CHUNK nothing is gained."""


def free_memory_bytes(device: torch.device | str) -> int:
    """Memory free for tensors on ``device``: CUDA's free memory, MPS's recommended budget minus what
    is allocated, or the host's MemAvailable for a CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "mps":
        return int(torch.mps.recommended_max_memory() - torch.mps.current_allocated_memory())
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def chunk_size(model: Model, device: torch.device | str, *, train: bool = False) -> int:
    """Rays per rendering call so that one call uses at most MEMORY_FRACTION of the free memory."""
    budget = free_memory_bytes(device) * MEMORY_FRACTION
    rays = int(budget // max(1, model.bytes_per_ray(train)))
    rays = max(MIN_CHUNK, min(model.CPU_CHUNK if torch.device(device).type == "cpu" else MAX_CHUNK, rays))
    return 1 << (rays.bit_length() - 1)  # a power of two, rounded down


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for an empty module)."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def render_image(
    model: Model,
    rays: RayBundle,
    chunk: int | None = None,
    *,
    train: bool = False,
    on_chunk: Callable[[int], None] | None = None,
) -> RenderOutput:
    """``model.render`` over any number of rays in chunks, concatenated; memory stays bounded.

    ``rays`` may live on the CPU: each chunk moves to the model's device and each output back to the
    rays' device. ``chunk`` defaults to :func:`chunk_size` for the model's device. No autograd when
    train=False. ``on_chunk(n_rays)`` is called after each chunk (progress bars).
    """
    device = model_device(model)
    chunk = chunk or chunk_size(model, device, train=train)
    out_device = rays.origins.device
    outs = []
    with torch.set_grad_enabled(train and torch.is_grad_enabled()):
        for start in range(0, len(rays), chunk):
            o = model.render(rays[start : start + chunk].to(device), train=train)
            if device != out_device:
                o = RenderOutput(o.rgb.to(out_device), o.depth.to(out_device), o.acc.to(out_device),
                                 {k: v.to(out_device) for k, v in o.aux.items()})
            outs.append(o)
            if on_chunk is not None:
                on_chunk(len(o.rgb))
    return RenderOutput.cat(outs)
