"""Record in each shipped segmenter (and its precision variants) the counties it was trained on.

    python scripts/record_training_counties.py [--models models] [--check]

Models exported from 2026-11-27 carry `extra.training_groups` from their checkpoint's split. The ones shipped
before recorded only their validation counties. Their training counties are recomputed here from the
checkpoint kept in models/checkpoints: every county of the training data (and of the states the run was limited
to) that is not a validation county. The frame count must equal the checkpoint's own record of its training
frames, or nothing is written. `deadtree validate` uses the list to keep training counties' flattering scores
apart from those of counties the model never saw. Only the metadata changes; the weights stay byte for byte.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from deadtree.runtime.metadata import read_model_info, rewrite_model_info
from deadtree.training.frames import load_frames, name_selected, parse_prefixes


def training_counties(checkpoint: Path) -> list[str]:
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    config, split = ckpt["config"], ckpt["split"]
    frames = load_frames(config["data"], tuple(config["bands"]))
    if config.get("states"):
        frames = [f for f in frames if name_selected(f.group, parse_prefixes(config["states"]))]
    validation = set(split["validation_groups"])
    training = [f for f in frames if f.group not in validation]
    if len(training) != split["train_frames"]:
        raise SystemExit(f"{checkpoint.name}: {len(training)} training frames found, its split says "
                         f"{split['train_frames']}: not the data it was trained on")
    return sorted({f.group for f in training})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--check", action="store_true", help="only report what would be written")
    args = parser.parse_args()

    counties: dict[str, list[str]] = {}
    for path in sorted(args.models.glob("*.onnx")):
        info = read_model_info(path)
        if info.task != "segmenter":
            continue
        parent = info.extra.get("variant_of", info.name)
        parent_version = read_model_info(args.models / f"{parent}.onnx").version
        checkpoint = args.models / "checkpoints" / f"{parent}-{parent_version}.pt"
        if not checkpoint.is_file():
            print(f"{path.name}: no checkpoint {checkpoint.name}, left as it is")
            continue
        if checkpoint not in counties:
            counties[checkpoint] = training_counties(checkpoint)
        groups = counties[checkpoint]
        if info.extra.get("training_groups") == groups:
            print(f"{path.name}: already records its {len(groups)} training counties")
            continue
        print(f"{path.name}: {len(groups)} training counties from {checkpoint.name}")
        if not args.check:
            rewrite_model_info(path, dataclasses.replace(info, extra={**info.extra, "training_groups": groups}))


if __name__ == "__main__":
    main()
