"""How much CPU other processes used while a benchmark ran (the machine is shared; figures taken
while it is well above 0 are not the benchmark's own)."""

from __future__ import annotations

import os
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
