"""Unpaired image patches for translator training: one source per domain, no masks needed.

Every patch is scaled exactly as `segment_scene` scales a tile before it reaches a translator: a per-band
percentile stretch (1st..99th, not clipped at 1, safety clip [-1, 2]) computed over the whole scene (a Kaggle
frame, an HDF5 source image, a GeoTIFF's decimated overview), then mapped from 0..1 to the translator's input
range [-1, 1]. Training on anything else (the reference code stretched per patch and clipped) would teach the
translator inputs it never meets in the pipeline.

Three layouts are read:
- Kaggle folders (RGB_images/, NRG_images/ or NIR_images/, masks/): whole frames in memory (~100 MB for the USA
  set), one stretch per frame;
- ADA-Net HDF5 patch files (one group per patch, `image` H x W x 4 in NIR, R, G, B): read lazily, one stretch per
  `source_image` pooled over its patches, since the Finnish file alone is several GB;
- folders of GeoTIFFs: random windows read at the model's GSD through the pipeline's own reader and grid, and
  windows touching nodata, alpha-masked or edge-fill pixels rejected.
Sources can be restricted to names starting with given prefixes: states ("wa", "or") or counties ("mo109").
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from deadtree.errors import InputError
from deadtree.raster.normalise import BandStretch, band_percentiles
from deadtree.training.frames import HDF5_BAND_ORDER, as_scene, load_kaggle_frames, name_selected, parse_prefixes

TRANSLATOR_RANGE = (-1.0, 1.0)  # the tanh range: what ModelInfo.input_range / output_range record
GEOTIFF_SUFFIXES = (".tif", ".tiff")
HDF5_SUFFIXES = (".h5", ".hdf5")
_HDF5_STATS_STRIDE = 4  # every 4th pixel per axis is plenty for percentiles, and reads 1/16 of the data




def unit_to_model(unit: np.ndarray, clip: bool = False) -> np.ndarray:
    """Percentile-stretched 0..1 values -> the translator's [-1, 1], as the pipeline maps them.

    clip=True is for target-domain patches: they stand for what the generator should write, and its tanh
    cannot leave [-1, 1], so unclipped targets would let the discriminator win on range alone.
    """
    lo, hi = TRANSLATOR_RANGE
    out = unit * (hi - lo) + lo
    return np.clip(out, lo, hi) if clip else out


def model_to_unit(values: np.ndarray) -> np.ndarray:
    lo, hi = TRANSLATOR_RANGE
    return (values - lo) / (hi - lo)


def augment_patch(unit: np.ndarray, rng: np.random.Generator, jitter: bool = True) -> np.ndarray:
    """Random dihedral transform plus mild brightness / contrast / gamma jitter on a (bands, P, P) unit patch.

    Orientation is arbitrary from above. The jitter is the same for every band: per-band jitter would change
    the colour balance, which is the very "look" of a domain the translator has to learn.
    """
    unit = np.rot90(unit, int(rng.integers(4)), axes=(1, 2))
    if rng.random() < 0.5:
        unit = unit[:, :, ::-1]
    unit = np.array(unit, dtype=np.float32)  # contiguous copy
    if jitter:
        gamma = math.exp(rng.uniform(math.log(0.9), math.log(1.1)))
        contrast = rng.uniform(0.9, 1.1)
        brightness = rng.uniform(-0.06, 0.06)
        positive = unit > 0  # gamma is undefined below 0; the few stretched values there stay linear
        unit[positive] = unit[positive] ** gamma
        unit = (unit - 0.5) * contrast + 0.5 + brightness
    return unit


def patch_positions(rows: int, cols: int, patch: int) -> int:
    """Patches of side `patch` at stride patch / 2 (the reference's cutting): the size of one epoch."""
    stride = max(1, patch // 2)
    if rows < patch or cols < patch:
        return 0
    return ((rows - patch) // stride + 1) * ((cols - patch) // stride + 1)


class PatchSource:
    """Random patches of one domain as unit-scaled float32 (bands, P, P); subclasses say where they come from."""

    kind = "patches"

    def __init__(self, path: Path, bands: tuple[str, ...], patch: int, prefixes: tuple[str, ...]):
        self.path, self.bands, self.patch, self.prefixes = Path(path), tuple(bands), patch, prefixes
        self.names: list[str] = []  # one per image (frame, HDF5 patch, GeoTIFF)
        self.origins: list[str] = []  # what the prefix filter matched for each image: sample id, source image, file
        self.weights = np.zeros(0)
        self.epoch_patches = 0

    def sample_unit(self, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def _pick(self, rng: np.random.Generator) -> int:
        return int(rng.choice(len(self.weights), p=self.weights))

    def _set_weights(self, areas: Sequence[float]) -> None:
        # Images are drawn in proportion to their area, so every pixel is about equally likely to be seen.
        areas = np.asarray(areas, dtype=np.float64)
        self.weights = areas / areas.sum()

    def describe(self) -> dict:
        groups: dict[str, int] = {}
        for origin in self.origins:  # the first two letters: the state in the USA set's names
            groups[origin[:2].upper()] = groups.get(origin[:2].upper(), 0) + 1
        return {"path": str(self.path), "kind": self.kind, "images": len(self.names),
                "filter": list(self.prefixes), "by_prefix": dict(sorted(groups.items())),
                "patches_per_epoch": self.epoch_patches}

    def close(self) -> None:
        pass


class FramePatchSource(PatchSource):
    """Kaggle-layout frames held in memory; each frame is one scene for the stretch."""

    kind = "kaggle"

    def __init__(self, root: Path, bands: tuple[str, ...], patch: int, prefixes: tuple[str, ...] = ()):
        super().__init__(root, bands, patch, prefixes)
        frames = [f for f in load_kaggle_frames(Path(root), tuple(bands)) if name_selected(f.sample_id, prefixes)]
        frames = [f for f in frames if min(f.image.shape[:2]) >= patch]
        if not frames:
            raise InputError(f"no frame of {root} is at least {patch} px on a side"
                             + (f" among names starting with {', '.join(prefixes)}" if prefixes else ""))
        self.names = self.origins = [f.sample_id for f in frames]
        # Prepared as the segmenter trainer prepares them, as `segment` reads a scene (fill made neutral).
        prepared = [as_scene(f) for f in frames]
        self.images = [np.ascontiguousarray(image.transpose(2, 0, 1)) for image, _ in prepared]
        self.stretches = [stretch for _, stretch in prepared]
        self._set_weights([image.shape[1] * image.shape[2] for image in self.images])
        self.epoch_patches = sum(patch_positions(*image.shape[1:], patch) for image in self.images)

    def sample_unit(self, rng: np.random.Generator) -> np.ndarray:
        index = self._pick(rng)
        image = self.images[index]
        r = int(rng.integers(image.shape[1] - self.patch + 1))
        c = int(rng.integers(image.shape[2] - self.patch + 1))
        return self.stretches[index].apply(image[:, r:r + self.patch, c:c + self.patch])


class Hdf5PatchSource(PatchSource):
    """ADA-Net HDF5 patch files, read lazily; the stretch is pooled over all patches of one source image."""

    kind = "hdf5"

    def __init__(self, path: Path, bands: tuple[str, ...], patch: int, prefixes: tuple[str, ...] = ()):
        import h5py

        super().__init__(path, bands, patch, prefixes)
        self.order = [HDF5_BAND_ORDER.index(b) for b in bands]
        self.handle = h5py.File(path, "r")
        groups_of_source: dict[str, list[str]] = {}
        sizes = []
        for name in sorted(self.handle.keys()):
            group = self.handle[name]
            if not isinstance(group, h5py.Group) or "image" not in group:
                continue
            source = group.attrs.get("source_image", name)
            source = Path(source.decode() if isinstance(source, bytes) else str(source)).stem
            rows, cols = group["image"].shape[:2]
            if not name_selected(source, prefixes) or min(rows, cols) < patch:
                continue
            groups_of_source.setdefault(source, []).append(name)
            self.names.append(name)
            self.origins.append(source)
            sizes.append(rows * cols)
        if not self.names:
            self.handle.close()
            raise InputError(f"{path} holds no patch groups with an `image` of at least {patch} px"
                             + (f" from sources starting with {', '.join(prefixes)}" if prefixes else ""))
        self.sources = sorted(groups_of_source)
        self.stretch_of: dict[str, BandStretch] = {}
        for source, names in groups_of_source.items():
            stretch = self._pooled_stretch(names)
            self.stretch_of.update({name: stretch for name in names})
        self._set_weights(sizes)
        self.epoch_patches = sum(patch_positions(*self.handle[n]["image"].shape[:2], patch) for n in self.names)

    def _read(self, name: str, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        # HWC with NIR, R, G, B on disk -> (bands, rows, cols) in the model's order.
        image = np.asarray(self.handle[name]["image"][rows, cols], dtype=np.uint8)
        return np.ascontiguousarray(image[..., self.order].transpose(2, 0, 1))

    def _pooled_stretch(self, names: list[str]) -> BandStretch:
        step = slice(None, None, _HDF5_STATS_STRIDE)
        samples = [self._read(n)[:, step, step].reshape(len(self.bands), -1) for n in names]
        pixels = np.concatenate(samples, axis=1)[:, None, :]
        # All-zero pixels are the padding of patches cut at an image edge, not imagery.
        return band_percentiles(pixels, valid=pixels.any(axis=0))

    def sample_unit(self, rng: np.random.Generator) -> np.ndarray:
        name = self.names[self._pick(rng)]
        rows, cols = self.handle[name]["image"].shape[:2]
        r = int(rng.integers(rows - self.patch + 1))
        c = int(rng.integers(cols - self.patch + 1))
        pixels = self._read(name, slice(r, r + self.patch), slice(c, c + self.patch))
        return self.stretch_of[name].apply(pixels)

    def describe(self) -> dict:
        out = super().describe()
        out["source_images"] = len(self.sources)
        by_prefix: dict[str, int] = {}
        for source in self.sources:
            by_prefix[source[:2].upper()] = by_prefix.get(source[:2].upper(), 0) + 1
        out["source_images_by_prefix"] = dict(sorted(by_prefix.items()))
        return out

    def close(self) -> None:
        self.handle.close()


@dataclass
class _SceneEntry:
    path: Path
    stretch: BandStretch
    grid: object  # ModelGrid
    edge_fill: object  # EdgeFillMap


class GeoTiffPatchSource(PatchSource):
    """Random windows of GeoTIFFs at the model's GSD, read and scaled by the pipeline's own code."""

    kind = "geotiff"
    MAX_OPEN = 8  # scenes kept open between samples (file handles are cheap, reopening a big COG is not)
    MAX_TRIES = 200

    def __init__(self, paths: Sequence[Path], bands: tuple[str, ...], patch: int, gsd_m: float,
                 prefixes: tuple[str, ...] = (), root: Path | None = None, file_bands: tuple[str, ...] | None = None):
        from deadtree.raster.grid import model_grid
        from deadtree.raster.reader import overview
        from deadtree.raster.scene import open_scene

        super().__init__(root or Path(paths[0]).parent, bands, patch, prefixes)
        self.gsd_m, self.file_bands = gsd_m, file_bands
        self.entries: list[_SceneEntry] = []
        self._open: OrderedDict[Path, object] = OrderedDict()
        areas = []
        for path in sorted(Path(p) for p in paths):
            if not name_selected(path.stem, prefixes):
                continue
            scene = open_scene(path, file_bands)
            try:
                missing = [b for b in bands if b not in scene.band_index]
                if missing:
                    raise InputError(f"{path.name} has no {','.join(missing)} band (it has "
                                     f"{','.join(scene.band_index) or 'no tagged bands'})")
                grid = model_grid(scene.width, scene.height, scene.gsd_m, gsd_m)
                if min(grid.width, grid.height) < patch:
                    continue
                pixels, valid, edge_fill = overview(scene, tuple(bands))
                if not valid.any():
                    continue
                # Exactly the statistics segment_scene computes for this scene.
                self.entries.append(_SceneEntry(path, band_percentiles(pixels, valid), grid, edge_fill))
                self.names.append(path.stem)
                self.origins.append(path.stem)
                areas.append(grid.width * grid.height * valid.mean())
            finally:
                scene.close()
        if not self.entries:
            raise InputError(f"no GeoTIFF under {self.path} has {patch} x {patch} px of valid imagery at "
                             f"{gsd_m} m" + (f" among names starting with {', '.join(prefixes)}" if prefixes else ""))
        self._set_weights(areas)
        self.epoch_patches = sum(patch_positions(e.grid.height, e.grid.width, patch) for e in self.entries)

    def _scene(self, entry: _SceneEntry):
        from deadtree.raster.scene import open_scene

        if entry.path in self._open:
            self._open.move_to_end(entry.path)
            return self._open[entry.path]
        scene = open_scene(entry.path, self.file_bands)
        self._open[entry.path] = scene
        while len(self._open) > self.MAX_OPEN:
            self._open.popitem(last=False)[1].close()
        return scene

    def sample_unit(self, rng: np.random.Generator) -> np.ndarray:
        from deadtree.raster.reader import WindowReader

        for _ in range(self.MAX_TRIES):
            entry = self.entries[self._pick(rng)]
            r = int(rng.integers(entry.grid.height - self.patch + 1))
            c = int(rng.integers(entry.grid.width - self.patch + 1))
            reader = WindowReader(self._scene(entry), self.bands, entry.grid, entry.edge_fill)
            pixels, valid = reader.read(r, c, self.patch, self.patch)
            if valid.all():  # nodata would teach the translator a collar that real tiles mask out
                return entry.stretch.apply(pixels)
        raise InputError(f"{self.MAX_TRIES} random {self.patch} px windows under {self.path} all touched nodata: "
                         "use a smaller --patch or scenes with fewer holes")

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()


def open_domain(path: str | Path, bands: tuple[str, ...], patch: int, gsd_m: float = 0.6,
                prefixes: Sequence[str] = (), file_bands: tuple[str, ...] | None = None) -> PatchSource:
    """The patch source for a Kaggle folder, an ADA-Net .h5 file, a GeoTIFF or a folder of GeoTIFFs."""
    path = Path(path)
    prefixes = parse_prefixes(prefixes)
    if path.is_file() and path.suffix.lower() in HDF5_SUFFIXES:
        return Hdf5PatchSource(path, bands, patch, prefixes)
    if path.is_file() and path.suffix.lower() in GEOTIFF_SUFFIXES:
        return GeoTiffPatchSource([path], bands, patch, gsd_m, prefixes, file_bands=file_bands)
    if path.is_dir() and (path / "RGB_images").is_dir():
        return FramePatchSource(path, bands, patch, prefixes)
    if path.is_dir():
        tiffs = [p for p in path.rglob("*") if p.suffix.lower() in GEOTIFF_SUFFIXES and p.is_file()]
        if tiffs:
            return GeoTiffPatchSource(tiffs, bands, patch, gsd_m, prefixes, root=path, file_bands=file_bands)
    raise InputError(f"{path} is not a Kaggle-layout folder (RGB_images/, NRG_images/), an ADA-Net .h5 file, "
                     "a GeoTIFF or a folder holding GeoTIFFs")


class DomainSampler:
    """Batches of augmented patches of one domain in the translator's [-1, 1], with its own seeded RNG (saved in
    checkpoints, so a resumed run draws the patches an uninterrupted one would have)."""

    def __init__(self, source: PatchSource, seed: int, augment: bool = True, clip: bool = False):
        self.source, self.augment, self.clip = source, augment, clip
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> np.ndarray:
        patches = []
        for _ in range(size):
            unit = self.source.sample_unit(self.rng)
            if self.augment:
                unit = augment_patch(unit, self.rng)
            patches.append(unit_to_model(unit, self.clip))
        return np.stack(patches).astype(np.float32)
