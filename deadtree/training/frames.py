"""Annotated frames from the layouts users have: the Kaggle folders and the ADA-Net HDF5 patch files.

A frame is one image with its dead-tree mask, held in memory as uint8 (the USA set is ~100 MB), with the
county it comes from so that train and validation can be split by place.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from deadtree.errors import InputError
from deadtree.raster.normalise import BandStretch, stretch_and_medians
from deadtree.raster.validity import image_validity

COUNTY_PATTERN = re.compile(r"^([a-z]{2}\d{3})_")
HDF5_BAND_ORDER = ("NIR", "R", "G", "B")
# Recorded in a training run's state (and so on its card): how its frames were prepared (as_scene).
FRAMES_PREPARED = "as segment reads a scene"


@dataclass
class Frame:
    sample_id: str
    group: str  # the unit of the train/validation split: a county, or a source image
    image: np.ndarray  # (rows, cols, bands) uint8, in the requested band order
    mask: np.ndarray  # (rows, cols) bool, True = standing dead tree


def parse_prefixes(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """'WA,OR,NM' -> ('wa', 'or', 'nm'); names are matched case-insensitively by prefix."""
    if not text:
        return ()
    parts = text.split(",") if isinstance(text, str) else list(text)
    return tuple(p.strip().lower() for p in parts if p.strip())


def name_selected(name: str, prefixes: tuple[str, ...]) -> bool:
    """True when no prefixes are given or the name starts with one (states 'wa', counties 'mo109')."""
    return not prefixes or name.lower().startswith(prefixes)


def county_of(sample_id: str) -> str:
    """'mo109_2020_n_03_05_1' -> 'mo109' (state + county FIPS)."""
    match = COUNTY_PATTERN.match(sample_id)
    return match.group(1) if match else sample_id


def held_out(frames: Sequence[Frame], validation_groups: Sequence[str]) -> list[Frame]:
    """The frames of a model's validation counties, as its checkpoint (`split.validation_groups`) or its ONNX
    metadata (`extra.validation_groups`) records them."""
    groups = set(validation_groups)
    return [f for f in frames if f.group in groups]


def load_frames(source: str | Path, bands: tuple[str, ...]) -> list[Frame]:
    """Load every annotated frame from a Kaggle-layout folder or an ADA-Net HDF5 file."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() in (".h5", ".hdf5"):
        return load_hdf5_frames(source, bands)
    if (source / "RGB_images").is_dir() and (source / "masks").is_dir():
        return load_kaggle_frames(source, bands)
    raise InputError(
        f"{source} is neither a Kaggle-layout folder (RGB_images/, NRG_images/, masks/) nor an HDF5 patch file"
    )


def load_kaggle_frames(root: Path, bands: tuple[str, ...]) -> list[Frame]:
    frames = []
    for rgb_path in sorted((root / "RGB_images").glob("RGB_*.png")):
        sample_id = rgb_path.stem[len("RGB_"):]
        mask_path = root / "masks" / f"mask_{sample_id}.png"
        if not mask_path.exists():
            continue
        planes = {}
        rgb = np.asarray(Image.open(rgb_path).convert("RGB"))
        planes.update(R=rgb[..., 0], G=rgb[..., 1], B=rgb[..., 2])
        if "NIR" in bands:
            planes["NIR"] = _read_nir(root, sample_id)
        image = np.dstack([planes[b] for b in bands])
        mask = np.asarray(Image.open(mask_path).convert("L")) > 127
        frames.append(Frame(sample_id, county_of(sample_id), image, mask))
    if not frames:
        raise InputError(f"no RGB_<id>.png with a matching masks/mask_<id>.png under {root}")
    return frames


def _read_nir(root: Path, sample_id: str) -> np.ndarray:
    nrg = root / "NRG_images" / f"NRG_{sample_id}.png"
    if nrg.exists():
        return np.asarray(Image.open(nrg).convert("RGB"))[..., 0]
    nir = root / "NIR_images" / f"NIR_{sample_id}.png"
    if nir.exists():
        return np.asarray(Image.open(nir).convert("L"))
    raise InputError(f"sample {sample_id} has no NRG_images/NRG_{sample_id}.png: NIR bands are needed")


def load_hdf5_frames(path: Path, bands: tuple[str, ...]) -> list[Frame]:
    """Read the ADA-Net HDF5 schema: one group per patch with `image` (H, W, 4: NIR, R, G, B) and `label`."""
    import h5py

    order = [HDF5_BAND_ORDER.index(b) for b in bands]
    frames = []
    with h5py.File(path, "r") as handle:
        for name in sorted(handle.keys()):
            group = handle[name]
            if "image" not in group:
                continue
            image = np.asarray(group["image"], dtype=np.uint8)[..., order]
            label = np.asarray(group["label"]) if "label" in group else np.zeros(image.shape[:2])
            source = group.attrs.get("source_image", name)
            source = source.decode() if isinstance(source, bytes) else str(source)
            frames.append(Frame(name, county_of(Path(source).stem), image, label > 0.5))
    if not frames:
        raise InputError(f"{path} holds no patch groups with an `image` dataset")
    return frames


def as_scene(frame: Frame) -> tuple[np.ndarray, BandStretch]:
    """A frame as `segment` prepares a scene: the image (rows, cols, bands) with its edge-connected fill (most
    USA frames have black rows or columns at their edges, some large black corners) set to each band's median
    of the valid pixels, and the percentile stretch of the valid pixels only. Training and validation read
    frames through this, so a model learns from the very inputs it is given at run time."""
    bands_first = frame.image.transpose(2, 0, 1)
    valid, _ = image_validity(bands_first)
    stretch, medians = stretch_and_medians(bands_first, valid)
    if valid.all():
        return frame.image, stretch
    image = frame.image.copy()
    image[~valid] = np.round(medians).astype(image.dtype)
    return image, stretch


def frame_input(frame: Frame, multiple: int = 32, prepare=as_scene) -> np.ndarray:
    """A whole frame as network input (1, bands, rows, cols): prepared as a scene (as_scene, or `prepare`: a
    frame -> (image, stretch) function), padded by reflection to the network's stride. Crop predictions back
    with [..., :rows, :cols]."""
    image, stretch = prepare(frame)
    scaled = stretch.apply(np.ascontiguousarray(image.transpose(2, 0, 1)))
    rows, cols = scaled.shape[1:]
    padded = np.pad(scaled, ((0, 0), (0, (-rows) % multiple), (0, (-cols) % multiple)), mode="reflect")
    return padded[None]
