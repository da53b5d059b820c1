"""segment_scene: the one call behind the CLI, the service and the notebooks.

scene -> model-grid windows -> [translator] -> segmenter -> blended strips -> probability band -> polygons.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import rasterio

from deadtree import __version__
from deadtree.buffers import Scratch
from deadtree.errors import InputError
from deadtree.machine import usable_cores
from deadtree.model_choice import choose_models, open_models
from deadtree.options import SegmentOptions, check_scales, parse_scales  # noqa: F401 - the API's names
from deadtree.outputs import check_outputs, discard, publish, workspace
from deadtree.peak_filter import ensemble_floor
from deadtree.preview import preview_bands, write_preview
from deadtree.raster.grid import identity_grid, model_grid
from deadtree.raster.normalise import stretch_and_medians
from deadtree.raster.probability import (
    PROB_SCALE,
    ProbabilityRaster,
    dead_mask,
    quantise,
    read_strips,
    resample_strip,
    threshold_code,
)
from deadtree.raster.reader import WindowReader, overview
from deadtree.raster.resident import read_resident
from deadtree.raster.scene import Scene, open_scene
from deadtree.stages import StageChain
from deadtree.tile_predictor import TilePredictor, read_batches
from deadtree.tiling import TRIM_MULTIPLE, StripAccumulator, blend_window, check_tile, tile_rows
from deadtree.vector.geometry import Measurer, clean_outline, pixel_to_crs
from deadtree.vector.polygonize import stream_components
from deadtree.vector.style import add_default_style, write_qml
from deadtree.vector.writers import GPKG_LAYER, GeoJSONWriter, GeoPackageWriter

log = logging.getLogger("deadtree")
STRIP_PIXELS = 2_000_000  # pixels per strip when mapping back and vectorising: memory independent of scene width
# The reading and finishing stages' nice values above the model's, on a CPU. Both at 10, `segment` ran 6-7% faster
# on the 2-core VNNI host than at the model's own priority. The finishing stage (blending, writing, vectorising)
# is off the model's critical path: at 19 it slowed the model about half as much as at 10 (the model's slowdown
# inside `segment` 0.10-0.15 against 0.21-0.34 s), given a deeper queue of predicted batches to work through, so
# that the model does not wait on it. The reading stage is on that path and stays at 10 (at the
# model's priority it slowed the model most). SCHED_IDLE for the finishing stage did no better than 19, and it
# would never run beside another process keeping the cores busy (docs/performance.md).
STAGE_NICENESS = 10
FINISH_NICENESS = 19
PREDICTED_QUEUE = 8  # predicted batches that may wait for the finishing stage beside a CPU model (2 beside a GPU)
BATCH_PIXELS = 8 * 256 * 256  # tile pixels per model call: model memory independent of tile size


def strip_rows(width: int) -> int:
    return int(min(512, max(16, STRIP_PIXELS // max(width, 1))))
# GDAL's default block cache (5% of RAM) would dominate the memory of a streamed run. rasterio hands an
# integer to GDAL as bytes: 256 here would mean 256 bytes, and re-decoded blocks for every row. While tiles
# are read, the cache is narrowed to what one row of tiles touches (see tile_cache_bytes).
GDAL_CACHE_BYTES = 256 * 1024 * 1024
MIN_TILE_CACHE_BYTES = 16 * 1024 * 1024
# Scenes held decoded (deadtree.raster.resident) need no cache for their tiles. Others whose decoded pixels fit
# in this (those on a resampled grid, or with an internal mask) stay in the cache from the overview read on:
# every block is then decoded once per run instead of about 2.6 times (overview, then tiles that share block
# rows). Decoding a deflate-compressed 4096 x 4096 x 4 scene takes about 0.3 s of CPU here.
WHOLE_SCENE_CACHE_BYTES = 160 * 1024 * 1024


def tile_cache_bytes(scene: Scene, tile_scene_px: float) -> int:
    """GDAL block cache for reading tiles left to right, top to bottom.

    A scene that fits in WHOLE_SCENE_CACHE_BYTES keeps all its blocks. Beyond that, the file blocks under two
    tiles: neighbouring tiles in a row share blocks and find them in the cache; a row of tiles shares block
    rows with the next too, but keeping those would take a cache as wide as the scene, and memory would grow
    with the scene's width, so they are decoded again (in the read stage, beside the model)."""
    ds = scene.dataset
    block_rows, block_cols = max(ds.block_shapes)
    itemsize = np.dtype(ds.dtypes[0]).itemsize
    whole = int(scene.width * scene.height * ds.count * itemsize * 1.1)
    if whole <= WHOLE_SCENE_CACHE_BYTES:
        return max(MIN_TILE_CACHE_BYTES, whole)
    rows = tile_scene_px + block_rows
    cols = min(scene.width, 2 * tile_scene_px + block_cols)
    needed = int(rows * cols * ds.count * itemsize * 1.1)
    return int(min(GDAL_CACHE_BYTES, max(MIN_TILE_CACHE_BYTES, needed)))


@dataclass
class SegmentResult:
    polygons: int
    area_m2: float
    seconds: float
    outputs: dict[str, Path]
    model: str
    model_version: str
    provider: str
    tiles: int
    tiles_skipped: int
    translator: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    tile_size: int = 0
    overlap: int = 0
    ensemble: list[str] = field(default_factory=list)  # the other segmenters averaged with `model`
    min_peak: float = 0.0
    faint_dropped: int = 0  # patches left out because their highest probability stayed under min_peak
    model_path: Path | None = None  # the ONNX file that ran as `model` (the variant chosen, where one was)

    def summary(self) -> str:
        models = " + ".join([f"{self.model} {self.model_version}", *self.ensemble])
        if self.translator:
            models = f"{self.translator} -> {models}"
        patches = "patch" if self.faint_dropped == 1 else "patches"
        faint = (f" ({self.faint_dropped} faint {patches} under --min-peak {self.min_peak:g} left out)"
                 if self.faint_dropped else "")
        polygons = "polygon" if self.polygons == 1 else "polygons"
        return (f"{self.polygons} dead-tree {polygons}{faint}, {self.area_m2 / 10_000:.3f} ha in total, "
                f"{self.seconds:.1f} s ({models} on {self.provider})")


def default_output(scene_path: Path) -> Path:
    return Path.cwd() / f"{Path(scene_path).stem}.deadtrees.geojson"


def segment_scene(scene_path: str | Path, options: SegmentOptions | None = None,
                  on_progress: Callable[[float], None] | None = None) -> SegmentResult:
    """Segment one scene file and write the outputs `options` names (all or none of them).

    on_progress: called with the fraction done, 0 to 1, as tiles finish."""
    options = options or SegmentOptions()
    started = time.perf_counter()
    scene_path = Path(scene_path)
    output = Path(options.output) if options.output else default_output(scene_path)
    outputs = {"geojson": output}
    if options.gpkg:
        outputs["gpkg"] = Path(options.gpkg)
    if options.probabilities:
        outputs["probabilities"] = Path(options.probabilities)
    if options.qml:
        outputs["qml"] = output.with_suffix(".qml")
    if options.preview:
        outputs["preview"] = Path(options.preview)
    options.check()
    check_outputs(outputs, [scene_path])

    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        result = _segment(scene_path, options, outputs, output, on_progress)
    ended = time.perf_counter()
    result.seconds = ended - started
    if "first_model_call" in result.timings:
        # where a run's time beside the model went: before the first model call, between calls, after the last
        first, last = result.timings.pop("first_model_call"), result.timings.pop("last_model_return")
        between = last - first - result.timings["model"]
        result.timings.update(before_model=first - started, between_model_calls=between, after_model=ended - last)
    return result


def _segment(scene_path: Path, options: SegmentOptions, outputs: dict[str, Path], output: Path,
             on_progress) -> SegmentResult:
    scene = open_scene(scene_path, options.bands, **({"max_pixels": options.max_pixels} if options.max_pixels else {}))
    tmp = workspace(output)
    try:
        result = _run(scene, options, outputs, tmp, on_progress)
        for key, final in outputs.items():
            publish(tmp / final.name, final)
    finally:
        scene.close()
        discard(tmp)
    return result


def _run(scene: Scene, options: SegmentOptions, outputs: dict[str, Path], tmp: Path, on_progress) -> SegmentResult:
    from tqdm import tqdm

    if "preview" in outputs:
        preview_bands(scene, options.preview_bands)  # fail before the model runs, not after
    choice = choose_models(tuple(scene.band_index), scene.path.name, options)
    read_bands = choice.read_bands
    grid = model_grid(scene.width, scene.height, scene.gsd_m, choice.segmenter_info.gsd_m)
    if grid.resampled:
        log.info("resampling %.3g x %.3g m pixels to the model's %.3g m", *scene.gsd_m, choice.segmenter_info.gsd_m)

    # ONNX Runtime builds its sessions while the scene statistics are read: neither waits for the other.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="deadtree-load") as pool:
        opening = pool.submit(open_models, choice, options)
        resident = None if grid.resampled else read_resident(scene, scene.indexes(read_bands), usable_cores())
        pixels, valid, edge_fill = overview(scene, read_bands, resident)
        if not valid.any():
            raise InputError(f"{scene.path.name} holds no valid pixels: everything is nodata, masked or fill")
        scaling = choice.first.scaling
        stretch, medians = stretch_and_medians(pixels, valid, scaling.get("low_pct", 1.0),
                                               scaling.get("high_pct", 99.0))
        # Nodata pixels are shown to the model as the scene's typical value, so a bright or dark collar
        # cannot bleed into predictions next to it.
        neutral = stretch.apply(medians[:, None, None]).ravel()
        segmenter, translator, members = opening.result()
    first = translator or segmenter

    tile = options.tile_size or first.info.tile_size
    overlap = first.info.overlap if options.overlap is None else options.overlap
    if translator and tile != translator.info.tile_size:
        raise InputError(f"the translator works on {translator.info.tile_size}-px tiles only")
    check_tile(tile, overlap)
    # An ensemble's default threshold is its members' mean (0.55 for the shipped pair, whose tuned ensemble
    # threshold on validation was 0.5 with the same scores to 0.001).
    own = [segmenter.info.threshold, *(m.info.threshold for m in members)]
    threshold = options.threshold if options.threshold is not None else float(np.mean(own))
    min_peak = options.min_peak if options.min_peak is not None else \
        ensemble_floor([segmenter.info.min_peak, *(m.info.min_peak for m in members)])
    # Edge tiles are cut short where the model accepts any size; a translator works on its own tile size only,
    # and TensorRT builds an engine per input shape.
    trim = TRIM_MULTIPLE if options.trim_tiles and not translator and \
        segmenter.provider != "TensorrtExecutionProvider" else None
    rows_of_tiles = tile_rows(grid.height, grid.width, tile, overlap, options.grid_offset % max(tile - overlap, 1),
                              trim=trim)
    n_tiles = sum(len(r) for r in rows_of_tiles)

    reader = WindowReader(scene, read_bands, grid, edge_fill, resident)
    batch_size = options.batch_size or max(1, BATCH_PIXELS // (tile * tile))
    predictor = TilePredictor(segmenter, translator, stretch, neutral, batch_size, options.flips, members,
                               read_bands, options.scales)
    grid_transform = grid.transform(scene.transform)
    scene_prob = tmp / (outputs["probabilities"].name if "probabilities" in outputs else "probabilities.tif")
    grid_path = tmp / "grid-probabilities.tif" if grid.resampled else scene_prob
    # The probability band is only written when asked for, or to be mapped back from a resampled grid: at the
    # model's own resolution the polygons are traced from the rows as they are finished.
    keep_band = grid.resampled or "probabilities" in outputs
    raster = ProbabilityRaster(grid_path, grid.width, grid.height, scene.crs, grid_transform) if keep_band else None
    accumulator = StripAccumulator(grid.height, grid.width, tile, solo=overlap)  # tiles stepped by tile - overlap
    weights = blend_window(tile, overlap)
    tiles = [t for row in rows_of_tiles for t in row]
    bar = tqdm(total=n_tiles, unit="tile", desc="segmenting", disable=not options.progress, dynamic_ncols=True)
    progress = {"done": 0, "skipped": 0}
    strip_limit = strip_rows(scene.width)

    def finished_strips():
        """Blend predicted tiles, write finished rows, and hand them on as (row, dead mask, scores) strips
        (on the model grid's own pixels only: a resampled grid is mapped back and vectorised afterwards)."""
        for batch in predicted:
            for work in batch:
                for flushed in accumulator.flush_chunks(work.tile.row, strip_limit, reuse=True):
                    yield from finish(flushed)
                if work.probs is not None:
                    accumulator.add(work.tile, work.probs, weights, work.valid)
                else:
                    progress["skipped"] += 1
                progress["done"] += 1
                bar.update(1)
                if on_progress:
                    on_progress(0.9 * progress["done"] / n_tiles)
        for flushed in accumulator.flush_chunks(grid.height, strip_limit, reuse=True):
            yield from finish(flushed)

    # Each strip is written and vectorised before the next is flushed, so its arrays are reused throughout.
    scratch = Scratch()

    def finish(flushed):
        first_row, values, ok = flushed
        codes = scratch.get("codes", values.shape, np.uint8)
        if grid.resampled:  # zero, not NODATA, where invalid: validity is the scene's own once mapped back
            values *= ok
            quantise(values, into=codes)
        else:
            quantise(values, ok, into=codes)
        if raster is not None:
            raster.write_rows(first_row, codes)
        if not grid.resampled:
            yield first_row, *strip_layers(codes, threshold, scratch)

    info = segmenter.info
    metadata = {
        "layer": "dead_trees",
        "source": options.source_name or scene.path.name,
        "model": info.name,
        "model_version": info.version,
        "translator": translator.info.name if translator else None,
        "ensemble": [m.info.name for m in members] or None,
        "threshold": threshold,
        "min_area_m2": options.min_area,
        "min_peak": min_peak,
        "deadtree_version": __version__,
        "crs": scene.crs.to_string(),
    }
    tiles_started = time.monotonic()
    try:
        # Three stages side by side: reading and scaling tiles, the model, and (here) blending, writing and
        # vectorising finished rows, so that post-processing hides behind model compute.
        cache = MIN_TILE_CACHE_BYTES if resident is not None else tile_cache_bytes(scene, tile * grid.scale_y)
        # Beside a model on the CPU the other stages yield the cores to it (deadtree.stages); beside a GPU
        # they are what sets the pace, and keep their priority.
        on_cpu = segmenter.provider == "CPUExecutionProvider"
        lower, lower_finish = (STAGE_NICENESS, FINISH_NICENESS) if on_cpu else (0, 0)
        with rasterio.Env(GDAL_CACHEMAX=cache), StageChain() as chain:
            batches = chain.add(read_batches(reader, grid, tiles, predictor), name="deadtree-read", lower=lower)
            predicted = chain.add((predictor.predict(batch) for batch in batches), name="deadtree-model",
                                  depth=PREDICTED_QUEUE if on_cpu else 2)
            if grid.resampled:
                chain.call(lambda: sum(1 for _ in finished_strips()), lower=lower_finish)
            else:
                polygons, area, faint = chain.call(
                    lambda: _vectorise(scene, finished_strips(), options, outputs, tmp, metadata),
                    lower=lower_finish)
    finally:
        if raster is not None:
            raster.close()
        bar.close()
    models = [m for m in (segmenter, translator, *members) if m is not None]
    timings = {"model": sum(m.seconds for m in models), "tiles": time.monotonic() - tiles_started}
    calls = [(m.first_call, m.last_return) for m in models if m.first_call is not None]
    if calls:  # perf_counter() stamps, made relative to the whole run by segment_scene
        timings["first_model_call"] = min(first for first, _ in calls)
        timings["last_model_return"] = max(last for _, last in calls)
    for m in models:  # for the next run in this process (deadtree.runtime.idle_sessions); a failed run's are dropped
        m.release()
    if grid.resampled:
        _resample_to_scene(grid_path, scene_prob, scene, read_bands, grid, edge_fill)
        strips = ((row, *strip_layers(codes, threshold)) for row, codes in read_strips(scene_prob, strip_limit))
        polygons, area, faint = _vectorise(scene, strips, options, outputs, tmp, metadata)
    skipped = progress["skipped"]
    if "preview" in outputs:
        vectors = outputs["gpkg"] if "gpkg" in outputs else outputs["geojson"]  # the GPKG needs no reprojection
        write_preview(tmp / outputs["preview"].name, scene, tmp / vectors.name, options.preview_bands)
    if "probabilities" in outputs:
        _to_cog(scene_prob)
    if on_progress:
        on_progress(1.0)
    return SegmentResult(polygons, area, 0.0, outputs, info.name, info.version, segmenter.provider, n_tiles,
                         skipped, translator.info.name if translator else None, timings, tile, overlap,
                         [m.info.name for m in members], min_peak, faint, segmenter.path)


def _resample_to_scene(grid_path: Path, scene_path_out: Path, scene: Scene, bands, grid, edge_fill) -> None:
    """Map model-grid probabilities back onto the scene's own grid, with the scene's own validity (the same
    rules as the tiles, edge fill included)."""
    import rasterio

    reader = WindowReader(scene, bands, identity_grid(scene.width, scene.height), edge_fill)
    out = ProbabilityRaster(scene_path_out, scene.width, scene.height, scene.crs, scene.transform)
    try:
        with rasterio.open(grid_path) as src:
            step = strip_rows(scene.width)
            for row in range(0, scene.height, step):
                rows = min(step, scene.height - row)
                probs = resample_strip(src, grid, row, rows)
                _, valid = reader.read(row, 0, rows, scene.width)
                out.write_rows(row, quantise(probs, valid))
    finally:
        out.close()


PROB_SCORE_SCALE = 1 / PROB_SCALE  # stored probability code -> probability, for the polygons' scores


def strip_layers(codes: np.ndarray, threshold: float, scratch: Scratch | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The dead-tree mask and the scores (probability codes, see PROB_SCORE_SCALE) of a strip of stored codes;
    the mask in `scratch`'s arrays where given."""
    buffers = (scratch.get("mask", codes.shape, bool), scratch.get("shifted", codes.shape, np.uint8)) if scratch else ()
    return dead_mask(codes, threshold, *buffers), codes


def _vectorise(scene: Scene, strips, options: SegmentOptions, outputs: dict[str, Path], tmp: Path,
               metadata: dict) -> tuple[int, float, int]:
    """Polygons from (first row, mask, probabilities) strips of the scene grid, given top to bottom; a patch
    whose highest probability stays under metadata's min_peak is left out (deadtree.peak_filter) and counted."""
    # Scores are read from stored probability codes: the floor is rounded to them as the threshold is.
    min_peak = threshold_code(metadata["min_peak"]) * PROB_SCORE_SCALE - 1e-9
    pixel_area = scene.gsd_m[0] * scene.gsd_m[1]
    min_area_px = options.min_area / pixel_area
    measure = Measurer(scene.crs, scene.metres_per_unit)
    writers = [GeoJSONWriter(tmp / outputs["geojson"].name, scene.crs, metadata)]
    if "gpkg" in outputs:
        writers.append(GeoPackageWriter(tmp / outputs["gpkg"].name, scene.crs, metadata))
    count, total_area, faint = 0, 0.0, 0
    try:
        for component in stream_components(strips, PROB_SCORE_SCALE):
            if component.score_max < min_peak:
                faint += component.pixels >= min_area_px  # what --min-area would drop anyway is not news
                continue
            outline = clean_outline(component.geometry, min_area_px, options.simplify)
            if outline is None:
                continue
            geom = pixel_to_crs(outline, scene.transform)
            area, perimeter = measure(geom)
            count += 1
            total_area += area
            props = {"id": count, "area_m2": round(area, 2), "perimeter_m": round(perimeter, 2),
                     "score_mean": round(component.score_mean, 4), "score_max": round(component.score_max, 4)}
            for writer in writers:
                writer.write(geom, props)
    finally:
        for writer in writers:
            writer.close()
    if "gpkg" in outputs:
        add_default_style(tmp / outputs["gpkg"].name, GPKG_LAYER)
    if "qml" in outputs:
        write_qml(tmp / outputs["qml"].name)
    return count, total_area, faint


def _to_cog(path: Path) -> None:
    """Rewrite the probability band as a Cloud Optimized GeoTIFF, in place within the workspace."""
    import rasterio.shutil

    cog = path.with_name(path.stem + ".cog.tif")
    rasterio.shutil.copy(path, cog, driver="COG", compress="deflate", overview_resampling="average")
    cog.replace(path)
