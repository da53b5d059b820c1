"""Shared pieces of the benchmarks: realistic test scenes and a results table that is printed and saved."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deadtree.machine import machine_description, vector_extensions  # noqa: E402  (after sys.path is set)

RESULTS = ROOT / "benchmarks" / "results"
NAIP_DIRS = [ROOT.parent / "shared" / "data" / "geotiff" / "naip", ROOT / "examples"]


def naip_tiles() -> list[np.ndarray]:
    """Real 256 x 256 x 4 NAIP tiles (R, G, B, NIR) to build large scenes from."""
    tiles = []
    for folder in NAIP_DIRS:
        for path in sorted(folder.glob("*.tif")):
            with rasterio.open(path) as ds:
                if ds.count == 4 and ds.width == 256 and ds.height == 256:
                    tiles.append(ds.read())
        if tiles:
            break
    if not tiles:
        raise SystemExit("no 4-band NAIP tiles found (../shared/data/geotiff/naip or examples/)")
    return tiles


def mosaic(path: Path, side: int, compress: str = "deflate", height: int | None = None) -> Path:
    """A side x side (or side x height) 4-band uint8 GeoTIFF of real NAIP tiles, written strip by strip
    (never whole in memory)."""
    path = Path(path)
    if path.exists():
        return path
    tiles = naip_tiles()
    rng = np.random.default_rng(0)
    height = height or side
    profile = dict(driver="GTiff", width=side, height=height, count=4, dtype="uint8", crs="EPSG:26910",
                   transform=Affine(0.6, 0, 400000, 0, -0.6, 4500000), tiled=True, blockxsize=512,
                   blockysize=512, compress=compress, BIGTIFF="IF_SAFER")
    tmp = path.with_suffix(".partial.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        for row in range(0, height, 256):
            rows = min(256, height - row)
            strip = np.concatenate([tiles[rng.integers(len(tiles))] for _ in range(0, side, 256)], axis=2)
            dst.write(strip[:, :rows, :side], window=Window(0, row, side, rows))
        dst.colorinterp = [rasterio.enums.ColorInterp.red, rasterio.enums.ColorInterp.green,
                           rasterio.enums.ColorInterp.blue, rasterio.enums.ColorInterp.undefined]
        dst.set_band_description(4, "nir")
    tmp.replace(path)
    return path


SCENE_COMPRESSIONS = ("deflate", "none")


def add_compress_option(parser) -> None:
    """The --compress option of the benchmarks that time `segment` on the mosaic."""
    parser.add_argument("--compress", choices=SCENE_COMPRESSIONS, default="deflate",
                        help="the mosaic's compression: deflate (the records' scene) or none, as the NAIP tiles "
                        "it is made of are stored")


def record_name(name: str, compress: str) -> str:
    """A benchmark's record name for the mosaic's compression: the deflate scene's record keeps the plain name."""
    return name if compress == "deflate" else f"{name}-{compress}"


def bench_scene(side: int, compress: str = "deflate") -> Path:
    """The benchmark mosaic of that side in the temporary folder, made once: deflate-compressed (the records'
    scene), or uncompressed as the NAIP tiles it is made of are stored ("none")."""
    import tempfile

    suffix = "" if compress == "deflate" else f"-{compress}"
    return mosaic(Path(tempfile.gettempdir()) / f"deadtree-bench-{side}{suffix}.tif", side,
                  compress=compress.upper() if compress == "none" else compress)


def segment_as_a_command(scene, options):
    """`segment_scene` as one `deadtree segment` command runs it: with sessions of its own (no ModelSessions
    handed in), so every repeat pays what a command pays."""
    from deadtree.pipeline import segment_scene

    return segment_scene(scene, options)


def report(name: str, rows: list[dict], notes: dict | None = None) -> None:
    """Print a table and save the figures with the machine and the command that produced them."""
    # every column any row has, in the order met: rows may differ (floor.py's model without a throughput record)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[_fmt(r[k]) if k in r else "" for k in keys] for r in rows]
    widths = [max(len(k), *(len(row[i]) for row in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for row in cells:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "machine": machine_description(), "command": "python " + " ".join(sys.argv),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows, "notes": notes or {}}
    path = result_path(name)
    path.write_text(json.dumps(record, indent=2))
    print(f"saved benchmarks/results/{path.name}")


def result_path(name: str, extensions: str | None = None) -> Path:
    """Where a benchmark's record goes. The issue's targets are set for a CPU with AVX-512 VNNI; a host without
    it (this project's VMs are sometimes AVX2-only, about four times slower on the models) writes beside that
    record, under a name that says which extensions it had, instead of overwriting it."""
    extensions = vector_extensions() if extensions is None else extensions
    if "AVX-512 VNNI" in extensions:
        return RESULTS / f"{name}.json"
    widest = extensions.split(",")[0].strip().lower().replace(" ", "-").replace("-512", "512")
    return RESULTS / f"{name}-{widest}.json"


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
