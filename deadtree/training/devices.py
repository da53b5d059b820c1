"""Where training runs: the device a user asked for, or a clear error when it is not there."""
from __future__ import annotations

import torch

from deadtree.errors import InputError
from deadtree.machine import machine_description


def training_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but torch sees no CUDA GPU")
    if name not in ("cpu", "cuda"):
        raise InputError(f"unknown --device {name!r}: use auto, cpu or cuda")
    return torch.device(name)


def training_machine(device: torch.device) -> str:
    """The machine line of a model card, naming the GPU when there was one."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} GPU; host {machine_description()}"
    return machine_description()
