"""Teach a narrower decoder to reproduce a trained network's logits on that network's own, frozen encoder.

Narrowing a decoder keeps the encoder but not the decoder's function (deadtree/training/prune.py), and
retraining the decoder on the masks lands a little below the network it came from. The network it came from
is the better target: its logits say, for every pixel of every augmented crop, what a model that already
validates well makes of it, including how sure it is. With the encoder shared and frozen, the student's
features are the teacher's exactly, so one encoder pass serves both and only the small decoder learns.
With `train_encoder` the student's encoder starts as the teacher's and learns too: the student runs whole and
the teacher whole beside it, for about 1.5 times the cost of a step (1.15-1.2 against 0.78 s for 8 crops of
256 px on the 2-core VNNI host).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from deadtree.errors import InputError
from deadtree.training.distill import load_teacher

LOGIT_LIMIT = 8.0  # beyond this sigmoid is 0.9997 either way: no use spending the student's capacity there


class LogitMimic:
    def __init__(self, checkpoint: str | Path, bands: tuple[str, ...], validation_groups: set[str],
                 device: torch.device | str = "cpu", train_encoder: bool = False):
        teacher, ckpt = load_teacher(checkpoint, validation_groups, "--mimic")
        theirs = tuple(ckpt.get("config", {}).get("bands", ()))
        if theirs != tuple(bands):
            raise InputError(f"--mimic: {checkpoint} was trained on {list(theirs)}, not {list(bands)}")
        self.checkpoint = str(checkpoint)
        self.train_encoder = train_encoder
        self.teacher = teacher.to(device, memory_format=torch.channels_last).eval()
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)

    def adopt_encoder(self, student: torch.nn.Module) -> None:
        """Give the student the teacher's encoder, frozen there unless it is to learn too."""
        ours, theirs = student.encoder.state_dict(), self.teacher.encoder.state_dict()
        mismatched = [k for k in theirs if k not in ours or ours[k].shape != theirs[k].shape]
        if mismatched or len(ours) != len(theirs):
            raise InputError(f"--mimic: {self.checkpoint} has another encoder than this architecture "
                             f"({len(mismatched)} tensors differ); the student must share the teacher's encoder")
        student.encoder.load_state_dict(theirs)
        if not self.train_encoder:
            freeze_encoder(student)

    def loss(self, student: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = self.teacher.encoder(images)
            target = self.teacher.segmentation_head(self.teacher.decoder(features)).clamp(-LOGIT_LIMIT, LOGIT_LIMIT)
        logits = student(images) if self.train_encoder else student.segmentation_head(student.decoder(features))
        return F.mse_loss(logits.float(), target.float())


def freeze_encoder(model: torch.nn.Module) -> None:
    for parameter in model.encoder.parameters():
        parameter.requires_grad_(False)
