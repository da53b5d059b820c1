"""Random training crops, half of them centred near a dead tree so the rare class is seen often enough.

Masks are 0 / 1, with IGNORE (hard-negative tiles: a marked tree that may be dead) for pixels left out of the
loss; those come out of the sampler as -1."""
from __future__ import annotations

import numpy as np
import torch

from deadtree.training.frames import Frame, as_scene
from deadtree.training.negatives import IGNORE


class CropSampler:
    def __init__(self, frames: list[Frame], crop: int, positive_fraction: float, augment, seed: int = 0,
                 targets: list[np.ndarray] | None = None, negatives: list[Frame] = (),
                 negative_share: float = 0.0):
        """targets: what to learn per frame of `frames` instead of its mask (e.g. blended with teachers'
        probabilities). negatives: frames with no dead trees (hard negatives), drawn for `negative_share` of
        the crops; they are learnt from their masks."""
        self.negative_from = len(frames)
        self.negative_share = negative_share if negatives else 0.0
        frames = [*frames, *negatives]
        self.frames = frames
        self.targets = targets
        self.crop = crop
        self.positive_fraction = positive_fraction
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        self._seed_augmentation()
        # Each frame prepared once as `segment` prepares a scene: fill made neutral, stretch of the valid pixels.
        self.images, self.stretches = zip(*(as_scene(f) for f in frames)) if frames else ((), ())
        self.positives = [np.argwhere(f.mask == 1) for f in frames]

    def _seed_augmentation(self) -> None:
        if self.augment is not None:  # albumentations draws from its own generator: seed it too, or reruns differ
            self.augment.set_random_seed(int(self.rng.integers(2**31)))

    def restore(self, rng_state: dict) -> None:
        """Continue a resumed run's crop stream; augmentation is seeded from it afresh, so a resumed run
        does not replay the augmentations its first steps drew."""
        self.rng.bit_generator.state = rng_state
        self._seed_augmentation()

    def sample(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        images, masks = [], []
        for _ in range(batch_size):
            image, mask = self._one()
            images.append(image)
            masks.append(mask)
        return np.stack(images), np.stack(masks)

    def _one(self) -> tuple[np.ndarray, np.ndarray]:
        if self.negative_share and self.rng.random() < self.negative_share:
            index = int(self.rng.integers(self.negative_from, len(self.frames)))
        elif self.negative_share:
            index = int(self.rng.integers(self.negative_from))
        else:
            index = int(self.rng.integers(len(self.frames)))
        frame = self.frames[index]
        rows, cols = frame.mask.shape
        crop = min(self.crop, rows, cols)
        positives = self.positives[index]
        if len(positives) and self.rng.random() < self.positive_fraction:
            r, c = positives[self.rng.integers(len(positives))]
            r0 = int(np.clip(r - self.rng.integers(crop), 0, rows - crop))
            c0 = int(np.clip(c - self.rng.integers(crop), 0, cols - crop))
        else:
            r0 = int(self.rng.integers(rows - crop + 1))
            c0 = int(self.rng.integers(cols - crop + 1))
        image = self.images[index][r0 : r0 + crop, c0 : c0 + crop]
        target = self.targets[index] if self.targets is not None and index < self.negative_from else frame.mask
        mask = target[r0 : r0 + crop, c0 : c0 + crop]
        mask = mask.astype(np.uint8) if mask.dtype == bool else mask
        if self.augment is not None:
            out = self.augment(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        scaled = self.stretches[index].apply(np.ascontiguousarray(image.transpose(2, 0, 1)))
        target = mask.astype(np.float32)
        if index >= self.negative_from:
            target[mask == IGNORE] = -1
        return scaled, target[None]


class CropBatches(torch.utils.data.IterableDataset):
    """An endless stream of augmented batches for DataLoader workers, each worker with its own random stream."""

    def __init__(self, frames: list[Frame], crop: int, positive_fraction: float, batch_size: int, seed,
                 augmentation: str = "standard", targets: list[np.ndarray] | None = None,
                 negatives: list[Frame] = (), negative_share: float = 0.0):
        self.frames, self.crop, self.positive_fraction, self.targets = frames, crop, positive_fraction, targets
        self.negatives, self.negative_share = list(negatives), negative_share
        self.batch_size, self.seed = batch_size, list(seed) if isinstance(seed, (list, tuple)) else [seed]
        self.augmentation = augmentation

    def __iter__(self):
        from deadtree.training.augment import training_augmentation

        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        sampler = CropSampler(self.frames, self.crop, self.positive_fraction,
                              training_augmentation(self.augmentation), seed=[*self.seed, worker],
                              targets=self.targets, negatives=self.negatives, negative_share=self.negative_share)
        while True:
            images, masks = sampler.sample(self.batch_size)
            yield torch.from_numpy(images), torch.from_numpy(masks)
