"""Draw the shipped RGB+NIR model's polygons over validation frames (counties it never saw), with the truth.

    python scripts/validation_figure.py ../shared/data/usa_deadtree docs/img/validation_examples.png

Each frame is written as a GeoTIFF on a made-up 0.6 m grid and run through `segment_scene`, exactly as a
user's scene would be.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyogrio  # noqa: E402
import rasterio  # noqa: E402
from affine import Affine  # noqa: E402
from rasterio.features import shapes  # noqa: E402
from shapely.geometry import shape  # noqa: E402

from deadtree.pipeline import SegmentOptions, segment_scene  # noqa: E402
from deadtree.runtime.registry import list_models  # noqa: E402
from deadtree.training.frames import held_out, load_frames  # noqa: E402

TRANSFORM = Affine(0.6, 0, 500000, 0, -0.6, 4000000)


def main(data: Path, out: Path, count: int = 4) -> None:
    model = next(m for m in list_models() if m.info.name == "deadtree-rgbn")
    frames = held_out(load_frames(data, model.info.bands), model.info.extra["validation_groups"])
    frames = [f for f in frames if f.mask.mean() > 0.02]
    frames = sorted(frames, key=lambda f: f.sample_id)[:: max(1, len(frames) // count)][:count]
    fig, axes = plt.subplots(1, len(frames), figsize=(4 * len(frames), 4.4))
    with tempfile.TemporaryDirectory() as tmp:
        for ax, frame in zip(np.atleast_1d(axes), frames):
            path = Path(tmp) / f"{frame.sample_id}.tif"
            rows, cols = frame.mask.shape
            with rasterio.open(path, "w", driver="GTiff", width=cols, height=rows, count=4, dtype="uint8",
                               crs="EPSG:32615", transform=TRANSFORM) as dst:
                dst.write(frame.image.transpose(2, 0, 1))
            segment_scene(path, SegmentOptions(output=Path(tmp) / "o.geojson", gpkg=Path(tmp) / "o.gpkg"))
            predicted = pyogrio.read_dataframe(Path(tmp) / "o.gpkg", layer="dead_trees")
            extent = (TRANSFORM.c, TRANSFORM.c + cols * 0.6, TRANSFORM.f - rows * 0.6, TRANSFORM.f)
            rgb = frame.image[..., :3].astype(float)
            lo, hi = np.percentile(rgb, [1, 99])
            ax.imshow(np.clip((rgb - lo) / (hi - lo), 0, 1), extent=extent)
            for geom, _ in shapes(frame.mask.astype(np.uint8), mask=frame.mask, transform=TRANSFORM):
                x, y = shape(geom).exterior.xy
                ax.plot(x, y, color="cyan", linewidth=0.8)
            predicted.boundary.plot(ax=ax, color="yellow", linewidth=0.9)
            ax.set_title(f"{frame.sample_id} ({frame.group.upper()})", fontsize=9)
            ax.set_axis_off()
    fig.suptitle("deadtree-rgbn on validation counties: predicted (yellow), expert masks (cyan)", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=80)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
