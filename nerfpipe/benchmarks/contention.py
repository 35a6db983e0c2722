"""How much CPU other processes used while a benchmark ran (the machine is shared; figures taken
while it is well above 0 are not the benchmark's own), and how fast the machine is."""

from __future__ import annotations

import os
import time
from pathlib import Path


def machine_busy_s() -> float:
    """CPU seconds spent by everything on the machine since boot (Linux /proc/stat), 0 elsewhere."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process and its finished children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def reference_workload_s(repeats: int = 9) -> float:
    """Median seconds of a fixed workload shaped like a fast-recipe training step (plane lookups of
    4 corners and their sparse backward, a feature projection, on 262,144 samples) with the torch
    threads as set: machines of the same kind differ by 2x from one session to the next, and a
    benchmark figure in minutes is read against this one. Deterministic inputs; about 1 s."""
    import torch

    from nerfpipe.nerf.grid import interpolate, plane_corners

    g = torch.Generator().manual_seed(0)
    table = torch.randn(300 * 300, 48, generator=g).requires_grad_()
    x = torch.rand(2, 262_144, generator=g) * 2 - 1
    basis = torch.randn(48, 27, generator=g)
    idx, w = plane_corners(x[0], x[1], 300, 300)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = interpolate(table, idx, w) @ basis
        out.square().mean().backward()
        times.append(time.perf_counter() - t0)
        table.grad = None
    return round(sorted(times)[len(times) // 2], 4)
