"""Augmentation for aerial frames: orientation is arbitrary from above, light and sensor vary between flights."""
from __future__ import annotations

import albumentations as A
import cv2

from deadtree.errors import InputError


AUGMENTATIONS = ("standard", "strong")


def training_augmentation(kind: str = "standard") -> A.Compose:
    """standard: orientation, mild scale, brightness, contrast, gamma. strong adds a gain per band (another
    flight, sensor or season shifts the bands apart, not together) and wider brightness and contrast."""
    if kind not in AUGMENTATIONS:
        raise InputError(f"unknown --augmentation {kind!r}: use {' or '.join(AUGMENTATIONS)}")
    strong = kind == "strong"
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=1.0),
            A.Affine(scale=(0.87, 1.15), rotate=0, border_mode=cv2.BORDER_REFLECT_101, p=0.4),
            A.RandomBrightnessContrast(brightness_limit=0.25 if strong else 0.15,
                                       contrast_limit=0.25 if strong else 0.15, p=0.6),
            A.RandomGamma(gamma_limit=(85, 118), p=0.4),
            *([A.MultiplicativeNoise(multiplier=(0.88, 1.12), per_channel=True, elementwise=False, p=0.6)]
              if strong else []),
        ]
    )
