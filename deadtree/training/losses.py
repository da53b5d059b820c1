"""Losses for a class that covers ~2% of the pixels."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.losses import LovaszLoss

from deadtree.errors import InputError

LOSSES = ("dice-focal", "lovasz-focal")
_lovasz_hinge = LovaszLoss("binary", per_image=False)  # pooled over the batch, like the IoU we are scored on


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Dice pooled over the whole batch, like the pooled IoU we are scored on (per-image Dice punishes
    empty frames erratically). Pixels whose target is negative are left out."""
    probs = torch.sigmoid(logits)
    counted = target >= 0
    probs, target = probs * counted, target.clamp(min=0)
    inter = (probs * target).sum()
    return 1 - (2 * inter + eps) / (probs.sum() + target.sum() + eps)


def focal_bce(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float = 0.75) -> torch.Tensor:
    """Focal loss: down-weights the easy background pixels that dominate plain BCE at 2% positives. Pixels
    whose target is negative are left out (the mean is still over all pixels, so a crop's weight stays fixed)."""
    counted = (target >= 0).to(logits.dtype)
    target = target.clamp(min=0)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = torch.exp(-bce)
    weight = (alpha * target + (1 - alpha) * (1 - target)) * counted
    return (weight * (1 - p_t) ** gamma * bce).mean()


def check_loss(kind: str, soft_targets: bool) -> None:
    if kind not in LOSSES:
        raise InputError(f"unknown --loss {kind!r}: use {' or '.join(LOSSES)}")
    if kind == "lovasz-focal" and soft_targets:
        raise InputError("--loss lovasz-focal needs masks of 0 and 1: it cannot learn the soft targets of "
                         "--teacher or --mimic")


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "dice-focal") -> torch.Tensor:
    """dice-focal trains from scratch; lovasz-focal swaps Dice for the Lovasz hinge, a convex surrogate of the
    IoU itself, which is known to pay most when fine-tuning a network that already ranks pixels well."""
    overlap = _lovasz_hinge(logits, target) if kind == "lovasz-focal" else soft_dice_loss(logits, target)
    return overlap + 10.0 * focal_bce(logits, target)
