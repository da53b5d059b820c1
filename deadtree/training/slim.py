"""Slim checkpoints: the exported network's weights in half precision plus what cards and exports read.

A training checkpoint holds optimiser moments, a second copy of the weights and, for a translator, the
discriminator and projection heads: four to eight times what export needs. Slim copies are what gets kept
in git and what comes back from a rented GPU, whose file transfers are small."""
from __future__ import annotations

from pathlib import Path

import torch

# what the card reads: how the frames were prepared says which scores it may quote as `segment`'s
SEGMENTER_STATE = ("step", "history", "best", "train_seconds", "machine", "frames_prepared", "refits")


def _half(weights: dict) -> dict:
    return {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}


def slim(ckpt: dict) -> dict:
    if "generator" in ckpt:  # a translator: only the generator is exported
        return {"generator": _half(ckpt["generator"]), "config": ckpt["config"], "state": ckpt["state"],
                "data": ckpt.get("data"), "scaling": ckpt.get("scaling")}
    return {"model": _half(ckpt["model"]), "config": ckpt["config"], "split": ckpt.get("split"),
            "scaling": ckpt.get("scaling"), "state": {k: ckpt["state"][k] for k in SEGMENTER_STATE if k in ckpt["state"]}}


def write_slim_checkpoint(checkpoint: Path | str, path: Path | str) -> Path:
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    torch.save(slim(ckpt), tmp)
    tmp.replace(path)
    return path
