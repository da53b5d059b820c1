"""Augmentation for aerial frames: orientation is arbitrary from above, light and sensor vary between flights."""
from __future__ import annotations

import albumentations as A
import cv2


def training_augmentation() -> A.Compose:
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=1.0),
            A.Affine(scale=(0.87, 1.15), rotate=0, border_mode=cv2.BORDER_REFLECT_101, p=0.4),
            A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.6),
            A.RandomGamma(gamma_limit=(85, 118), p=0.4),
        ]
    )
