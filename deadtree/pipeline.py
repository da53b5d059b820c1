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
from deadtree.runtime.model_sessions import ModelSessions
from deadtree.runtime.session import OnnxModel
from deadtree.peak_filter import ensemble_floor
from deadtree.preview import preview_bands, write_preview
from deadtree.raster.damage import damage_watch, refuse_if_damaged
from deadtree.raster.grid import check_model_grid, identity_grid, model_grid
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
from deadtree.raster import read_policy
from deadtree.raster.read_policy import GDAL_CACHE_BYTES, ReadPolicy
from deadtree.raster.reader import WindowReader, overview
from deadtree.raster.resident import read_resident
from deadtree.raster.scene import MAX_PIXELS, Scene, open_scene
from deadtree.stages import StageChain
from deadtree.tile_predictor import TilePredictor, read_batches
from deadtree.tiling import TRIM_MULTIPLE, StripAccumulator, blend_window, check_tile, tile_rows
from deadtree.vector.geometry import Measurer, clean_outline, pixel_to_crs
from deadtree.vector.polygonize import stream_components
from deadtree.vector.style import add_default_style, write_qml
from deadtree.vector.writers import GPKG_LAYER, GeoJSONWriter, GeoPackageWriter

log = logging.getLogger("deadtree")
STRIP_PIXELS = 2_000_000  # pixels per strip when mapping back and vectorising: memory independent of scene width
PREDICTED_QUEUE = 8  # predicted batches that may wait for the finishing stage beside a CPU model (2 beside a GPU)
BATCH_PIXELS = 8 * 256 * 256  # tile pixels per model call: model memory independent of tile size


# The blending strip holds a row of tiles across the whole grid: values, weights (float32) and validity.
STRIP_BYTES_PER_PIXEL = 9
MAX_STRIP_BYTES = 2 * 1024**3


def check_strip_memory(width: int, tile: int, name: str) -> None:
    """Refuse a grid so wide that one row of tiles would not fit in MAX_STRIP_BYTES."""
    needed = width * tile * STRIP_BYTES_PER_PIXEL
    if needed > MAX_STRIP_BYTES:
        narrower = max(64, (MAX_STRIP_BYTES // (width * STRIP_BYTES_PER_PIXEL)) // 32 * 32)
        raise InputError(f"{name} is {width} pixels wide at the model's resolution: a row of {tile} px tiles "
                         f"would take {needed / 1024**3:.1f} GB to blend; cut it into parts, or use "
                         f"--tile-size {narrower} or less")


def strip_rows(width: int) -> int:
    return int(min(512, max(16, STRIP_PIXELS // max(width, 1))))

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
                  on_progress: Callable[[float], None] | None = None,
                  sessions: ModelSessions | None = None, stop: Callable[[], None] | None = None) -> SegmentResult:
    """Segment one scene file and write the outputs `options` names (all or none of them).

    on_progress: called with the fraction done, 0 to 1, as tiles finish.
    sessions: the caller's ModelSessions, for a caller that runs many scenes: the models' sessions are taken
    from it and handed back to it. Without one, the run opens its own and drops them at its end.
    stop: called before every model call; what it raises ends the run (nothing is published) and reaches the
    caller: a service cancels a job within one model call."""
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
        result = _segment(scene_path, options, outputs, output, on_progress, sessions, stop)
    ended = time.perf_counter()
    result.seconds = ended - started
    if "first_model_call" in result.timings:
        # where a run's time beside the model went: before the first model call, between calls, after the last
        first, last = result.timings.pop("first_model_call"), result.timings.pop("last_model_return")
        between = last - first - result.timings["model"]
        result.timings.update(before_model=first - started, between_model_calls=between, after_model=ended - last)
    return result


def _segment(scene_path: Path, options: SegmentOptions, outputs: dict[str, Path], output: Path,
             on_progress, sessions, stop) -> SegmentResult:
    scene = open_scene(scene_path, options.bands, **({"max_pixels": options.max_pixels} if options.max_pixels else {}))
    tmp = workspace(output)
    try:
        with damage_watch() as damage:
            result = _run(scene, options, outputs, tmp, on_progress, sessions, stop)
        refuse_if_damaged(damage, scene.path.name)  # before anything is published
        for key, final in outputs.items():
            publish(tmp / final.name, final)
    finally:
        scene.close()
        discard(tmp)
    return result


@dataclass
class RunPlan:
    """What a run settled before its first tile: the models, the grid they run on, how the scene is read,
    how it is scaled, the tiles, and how probabilities become polygons."""

    segmenter: OnnxModel
    translator: OnnxModel | None
    members: list  # ensemble members (OnnxModel)
    read_bands: tuple[str, ...]
    grid: object  # raster.grid.ModelGrid
    read: ReadPolicy
    resident: object  # the scene decoded (raster.resident.ScenePixels), where the read policy holds it
    edge_fill: object
    stretch: object
    neutral: np.ndarray  # each band's typical value, scaled: what nodata pixels are shown as
    tile: int
    overlap: int
    tiles: list  # tiling.Tile, row by row
    threshold: float
    min_peak: float

    @property
    def models(self) -> list:
        return [m for m in (self.segmenter, self.translator, *self.members) if m is not None]

    @property
    def first(self) -> OnnxModel:
        return self.translator or self.segmenter


def _run(scene: Scene, options: SegmentOptions, outputs: dict[str, Path], tmp: Path, on_progress,
         sessions, stop) -> SegmentResult:
    if "preview" in outputs:
        preview_bands(scene, options.preview_bands)  # fail before the model runs, not after
    plan = _plan(scene, options, sessions)
    try:
        metadata = _layer_metadata(scene, options, plan)
        scene_prob = tmp / (outputs["probabilities"].name if "probabilities" in outputs else "probabilities.tif")
        tiles_started = time.monotonic()
        polygons, area, faint, skipped = _stream(scene, options, outputs, tmp, plan, scene_prob, metadata,
                                                 on_progress, stop)
        timings = _model_timings(plan.models, time.monotonic() - tiles_started)
    finally:
        for m in plan.models:  # to the caller's ModelSessions, if any, for its next run
            m.release()
    if plan.grid.resampled:
        polygons, area, faint = _vectorise_resampled(scene, options, outputs, tmp, plan, scene_prob, metadata)
    if "preview" in outputs:
        vectors = outputs["gpkg"] if "gpkg" in outputs else outputs["geojson"]  # the GPKG needs no reprojection
        write_preview(tmp / outputs["preview"].name, scene, tmp / vectors.name, options.preview_bands)
    if "probabilities" in outputs:
        _to_cog(scene_prob)
    if on_progress:
        on_progress(1.0)
    info = plan.segmenter.info
    return SegmentResult(polygons, area, 0.0, outputs, info.name, info.version, plan.segmenter.provider,
                         len(plan.tiles), skipped, plan.translator.info.name if plan.translator else None, timings,
                         plan.tile, plan.overlap, [m.info.name for m in plan.members], plan.min_peak, faint,
                         plan.segmenter.path)


def _plan(scene: Scene, options: SegmentOptions, sessions: ModelSessions | None) -> RunPlan:
    """Choose the models and the grid, decide how the scene is read, open the models while the scene's
    statistics are read (neither waits for the other), and lay out the tiles."""
    choice = choose_models(tuple(scene.band_index), scene.path.name, options)
    read_bands = choice.read_bands
    grid = model_grid(scene.width, scene.height, scene.gsd_m, choice.segmenter_info.gsd_m)
    check_model_grid(grid, scene.gsd_m, choice.segmenter_info.gsd_m, options.max_pixels or MAX_PIXELS,
                     scene.path.name)
    if grid.resampled:
        log.info("resampling %.3g x %.3g m pixels to the model's %.3g m", *scene.gsd_m, choice.segmenter_info.gsd_m)
    # the first model's tiles (a precision variant or a translator keeps its parent's tile size and overlap)
    tile = options.tile_size or choice.first.tile_size
    overlap = choice.first.overlap if options.overlap is None else options.overlap
    if choice.translator_info and tile != choice.translator_info.tile_size:
        raise InputError(f"the translator works on {choice.translator_info.tile_size}-px tiles only")
    check_tile(tile, overlap)
    check_strip_memory(grid.width, tile, scene.path.name)
    read = read_policy.decide(scene, scene.indexes(read_bands), grid.resampled, tile * grid.scale_y)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="deadtree-load") as pool:
        opening = pool.submit(open_models, choice, options, sessions)
        resident = read_resident(scene, scene.indexes(read_bands), usable_cores()) if read.hold else None
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
    return RunPlan(segmenter, translator, members, read_bands, grid, read, resident, edge_fill, stretch, neutral,
                   tile, overlap, [t for row in rows_of_tiles for t in row], threshold, min_peak)


def _layer_metadata(scene: Scene, options: SegmentOptions, plan: RunPlan) -> dict:
    """Provenance written into the polygon layers."""
    info = plan.segmenter.info
    return {
        "layer": "dead_trees",
        "source": options.source_name or scene.path.name,
        "model": info.name,
        "model_version": info.version,
        "translator": plan.translator.info.name if plan.translator else None,
        "ensemble": [m.info.name for m in plan.members] or None,
        "threshold": plan.threshold,
        "min_area_m2": options.min_area,
        "min_peak": plan.min_peak,
        "deadtree_version": __version__,
        "crs": scene.crs.to_string(),
    }


class StripFinisher:
    """Blends predicted tiles into rows, writes finished rows to the probability band where one is kept, and
    hands them on as (first row, dead mask, scores) strips; each strip's arrays are reused for the next."""

    def __init__(self, plan: RunPlan, raster: ProbabilityRaster | None, strip_limit: int, on_tile):
        grid = plan.grid
        self.plan, self.raster, self.strip_limit, self.on_tile = plan, raster, strip_limit, on_tile
        self.accumulator = StripAccumulator(grid.height, grid.width, plan.tile, solo=plan.overlap)
        self.weights = blend_window(plan.tile, plan.overlap)
        self.scratch = Scratch()
        self.skipped = 0

    def strips(self, predicted):
        """Strips from `predicted` batches of tiles (on the model grid's own pixels only: a resampled grid is
        mapped back and vectorised afterwards)."""
        for batch in predicted:
            for work in batch:
                for flushed in self.accumulator.flush_chunks(work.tile.row, self.strip_limit, reuse=True):
                    yield from self._finish(flushed)
                if work.probs is not None:
                    self.accumulator.add(work.tile, work.probs, self.weights, work.valid)
                else:
                    self.skipped += 1
                self.on_tile()
        for flushed in self.accumulator.flush_chunks(self.plan.grid.height, self.strip_limit, reuse=True):
            yield from self._finish(flushed)

    def _finish(self, flushed):
        first_row, values, ok = flushed
        resampled = self.plan.grid.resampled
        codes = self.scratch.get("codes", values.shape, np.uint8)
        if resampled:  # zero, not NODATA, where invalid: validity is the scene's own once mapped back
            values *= ok
            quantise(values, into=codes)
        else:
            quantise(values, ok, into=codes)
        if self.raster is not None:
            self.raster.write_rows(first_row, codes)
        if not resampled:
            yield first_row, *strip_layers(codes, self.plan.threshold, self.scratch)


def _stream(scene: Scene, options: SegmentOptions, outputs: dict[str, Path], tmp: Path, plan: RunPlan,
            scene_prob: Path, metadata: dict, on_progress, stop) -> tuple[int, float, int, int]:
    """Read, run and finish the tiles in three stages side by side (reading and scaling tiles; the model;
    blending, writing and vectorising finished rows), so that post-processing hides behind model compute.
    Returns the polygons, their area and the faint patches left out (zero until a resampled grid is mapped
    back), and the tiles skipped as all nodata."""
    from tqdm import tqdm

    grid = plan.grid
    # The probability band is only written when asked for, or to be mapped back from a resampled grid: at the
    # model's own resolution the polygons are traced from the rows as they are finished.
    grid_path = tmp / "grid-probabilities.tif" if grid.resampled else scene_prob
    keep_band = grid.resampled or "probabilities" in outputs
    raster = ProbabilityRaster(grid_path, grid.width, grid.height, scene.crs, grid.transform(scene.transform)) \
        if keep_band else None
    bar = tqdm(total=len(plan.tiles), unit="tile", desc="segmenting", disable=not options.progress,
               dynamic_ncols=True)
    done = [0]

    def on_tile():
        done[0] += 1
        bar.update(1)
        if on_progress:
            on_progress(0.9 * done[0] / len(plan.tiles))

    finisher = StripFinisher(plan, raster, strip_rows(scene.width), on_tile)
    reader = WindowReader(scene, plan.read_bands, grid, plan.edge_fill, plan.resident)
    batch_size = options.batch_size or max(1, BATCH_PIXELS // (plan.tile * plan.tile))
    predictor = TilePredictor(plan.segmenter, plan.translator, plan.stretch, plan.neutral, batch_size,
                              options.flips, plan.members, plan.read_bands, options.scales, before_call=stop)
    on_cpu = plan.segmenter.provider == "CPUExecutionProvider"
    polygons = area = faint = 0
    try:
        with rasterio.Env(GDAL_CACHEMAX=plan.read.tile_cache_bytes), StageChain() as chain:
            batches = chain.add(read_batches(reader, grid, plan.tiles, predictor), name="deadtree-read")
            predicted = chain.add((predictor.predict(batch) for batch in batches), name="deadtree-model",
                                  depth=PREDICTED_QUEUE if on_cpu else 2)
            strips = finisher.strips(predicted)
            if grid.resampled:
                chain.call(lambda: sum(1 for _ in strips))
            else:
                polygons, area, faint = chain.call(
                    lambda: _vectorise(scene, strips, options, outputs, tmp, metadata))
    finally:
        if raster is not None:
            raster.close()
        bar.close()
    return polygons, area, faint, finisher.skipped


def _model_timings(models: list, tiles_seconds: float) -> dict:
    timings = {"model": sum(m.seconds for m in models), "tiles": tiles_seconds}
    calls = [(m.first_call, m.last_return) for m in models if m.first_call is not None]
    if calls:  # perf_counter() stamps, made relative to the whole run by segment_scene
        timings["first_model_call"] = min(first for first, _ in calls)
        timings["last_model_return"] = max(last for _, last in calls)
    return timings


def _vectorise_resampled(scene: Scene, options: SegmentOptions, outputs: dict[str, Path], tmp: Path,
                         plan: RunPlan, scene_prob: Path, metadata: dict) -> tuple[int, float, int]:
    """Map a resampled grid's probabilities back onto the scene's pixels, then trace the polygons there."""
    _resample_to_scene(tmp / "grid-probabilities.tif", scene_prob, scene, plan.read_bands, plan.grid,
                       plan.edge_fill)
    strips = ((row, *strip_layers(codes, plan.threshold)) for row, codes in
              read_strips(scene_prob, strip_rows(scene.width)))
    return _vectorise(scene, strips, options, outputs, tmp, metadata)


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
