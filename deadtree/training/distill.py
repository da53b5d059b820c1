"""Soft targets from teacher segmenters, for distilling an ensemble into one network.

An ensemble of differently built networks scores better on unseen counties than any member (docs/models.md),
at several times the inference cost. A student trained on the mean of the teachers' probabilities beside the
expert masks can learn where they agree and hedge, at the cost of one network.

Teachers must have been validated on the student's own counties: a teacher that trained on them would carry
their labels into the student, and its validation scores would no longer be held out.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from deadtree.errors import InputError
from deadtree.training.frames import Frame

CACHE_NAME = "teacher_targets.npz"


def teacher_probabilities(teachers: list[str], frames: list[Frame], validation_groups: set[str],
                          frames_with_bands: Callable[[tuple[str, ...]], list[Frame]], cache_dir: Path,
                          device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """The teachers' mean probability for every pixel of `frames`, as uint8 (0-255) keyed by sample id.

    Each teacher sees the frames in its own bands (`frames_with_bands(bands)`). The result is cached in
    cache_dir, so that a resumed run does not predict again; the cache names its teachers and the validation
    counties they were checked against, and is redone when either changes."""
    from deadtree.training.segmenter_trainer import frame_probabilities

    cache = cache_dir / CACHE_NAME
    key = json.dumps({"teachers": sorted(str(Path(t).resolve()) for t in teachers),
                      "validation_groups": sorted(validation_groups)})
    wanted = {f.sample_id for f in frames}
    if cache.exists():
        with np.load(cache) as stored:
            if str(stored["teachers"]) == key and wanted <= set(stored.files):
                return {sid: stored[sid] for sid in wanted}

    # Every teacher is checked before any predicts: a refused third teacher should not cost the first two's time.
    loaded = []
    for teacher in teachers:
        model, ckpt = load_teacher(teacher, validation_groups)
        loaded.append((teacher, model, tuple(ckpt["config"]["bands"])))

    sums: dict[str, np.ndarray] = {}
    for teacher, model, bands in loaded:
        model = model.to(device, memory_format=torch.channels_last)
        by_id = {f.sample_id: f for f in frames_with_bands(bands)}
        missing = wanted - set(by_id)
        if missing:
            raise InputError(f"--teacher: {teacher} cannot see {len(missing)} training frames in its bands")
        for frame in tqdm(frames, desc=f"teacher {Path(teacher).stem}", unit="frame", dynamic_ncols=True):
            probs = frame_probabilities(model, by_id[frame.sample_id])
            sums[frame.sample_id] = sums.get(frame.sample_id, 0) + probs
    soft = {sid: np.round(total / len(teachers) * 255).astype(np.uint8) for sid, total in sums.items()}
    tmp = cache.with_name(cache.stem + ".tmp.npz")
    np.savez_compressed(tmp, teachers=np.array(key), **soft)
    tmp.replace(cache)
    return soft


def load_teacher(checkpoint: str | Path, validation_groups: set[str], option: str = "--teacher") -> tuple:
    """A trained segmenter to learn from, and its checkpoint; refused unless it was validated on exactly this
    run's counties, since one that trained on them would pass their labels on to the student."""
    from deadtree.nets.segmenter import load_segmenter

    if not Path(checkpoint).exists():
        raise InputError(f"{option}: {checkpoint} does not exist")
    model, ckpt = load_segmenter(checkpoint)
    theirs = set(ckpt.get("split", {}).get("validation_groups", ()))
    if theirs != validation_groups:
        raise InputError(f"{option}: {checkpoint} was validated on other counties than this run "
                         f"({', '.join(sorted(theirs ^ validation_groups)) or 'none recorded'} differ): "
                         "it may have trained on this run's validation counties")
    return model, ckpt


def blended_target(mask: np.ndarray, soft: np.ndarray, weight: float) -> np.ndarray:
    """(1 - weight) x the expert mask + weight x the teachers' probability, as float32."""
    return ((1 - weight) * mask + (weight / 255) * soft.astype(np.float32)).astype(np.float32)
