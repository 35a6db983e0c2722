"""Which torch device a command runs on: "auto" (cuda, then mps, then cpu) or a named one, checked once."""

from __future__ import annotations

import torch

from nerfpipe.errors import NerfpipeError


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def pick_device(name: str = "auto") -> torch.device:
    """"auto": cuda, then mps, then cpu; otherwise the named device, which this machine must have.

    The sentence of a bad name names no command-line flag (a Python caller has none); the CLI checks
    its ``--device`` first and says so there.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise NerfpipeError(f"{name!r} is not a device: use auto, cpu, cuda, cuda:1 or mps.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NerfpipeError(f"{name} asks for CUDA, which this machine's torch cannot use: use auto or cpu.")
    if device.type == "mps" and not mps_available():
        raise NerfpipeError(f"{name} asks for Apple's MPS, which is not available here: use auto or cpu.")
    return device
