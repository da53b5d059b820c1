"""The false-alarm figure of a model: `segment` on town tiles that hold no dead trees.

    python scripts/false_alarm_validation.py --model deadtree-rgbn \
        --tiles ../shared/data/naip_urban/images --city palm_springs --out docs/results/false_alarms.json

Every tile of the city (kept out of training) is segmented as users run it, with the model's own threshold and
peak floor and the precision `segment` picks here; the polygons per km² and the share of the area they cover
are pooled over the tiles and added to --out under the model's name.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from tqdm import tqdm

from deadtree.evaluation.false_alarms import false_alarms, record_false_alarms
from deadtree.runtime.registry import resolve_model
from validation_runs import add_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--tiles", type=Path, required=True, help="folder of GeoTIFF tiles")
    parser.add_argument("--city", default="", help="only tiles whose name starts with this")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--out", type=Path, default=Path("docs/results/false_alarms.json"))
    parser.add_argument("--record", action="store_true", help="also keep the figure in the model's metadata and "
                        "card (for `deadtree models`)")
    args = parser.parse_args()

    scenes = sorted(p for p in args.tiles.glob("*.tif") if p.name.startswith(args.city))
    if not scenes:
        parser.error(f"no {args.city}*.tif under {args.tiles}")
    started = time.monotonic()
    bar = tqdm(total=len(scenes), desc=args.model, unit="tile")
    pooled = false_alarms(scenes, on_scene=lambda _: bar.update(1), model=args.model, precision=args.precision)
    bar.close()
    label = f"{args.model} {args.precision} on {args.city or args.tiles.name}"
    command = (f"python scripts/false_alarm_validation.py --model {args.model} --tiles {args.tiles} --city "
               f"{args.city} --precision {args.precision}")
    add_result(args.out, "segment run on town tiles with no dead trees: polygons per km2 and their area share",
               label, {**pooled.summary(), "seconds": round(time.monotonic() - started, 1), "command": command})
    if args.record:
        where = args.city.replace("_", " ").title() if args.city else args.tiles.name
        record_false_alarms(resolve_model(args.model, "segmenter"), pooled, where, args.precision, command)
    print(f"{label}: {pooled.polygons} polygons on {pooled.scene_area_m2 / 1e6:.2f} km2 = "
          f"{pooled.per_km2:.1f} per km2, {pooled.area_share:.3%} of the area")


if __name__ == "__main__":
    main()
