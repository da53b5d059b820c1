"""Tune the peak filter's floor of shipped segmenters on their validation split, and optionally write it into them.

    python scripts/tune_peak_filter.py deadtree-rgbn deadtree-rgb --data ../shared/data/usa_deadtree \
        --out docs/results/peak_filter.json [--write]

Each model predicts its validation frames whole in fp32 (as the cards' scores are measured). The pixel threshold
stays the model's; the floor is the one with the best pooled object F1, and the held-out estimate chooses it per
county on the other validation counties. With two or more models, their mean is tuned as well (what
`segment --ensemble` computes). --write stores the floor in each model and its precision variants (metadata
and cards); the training command does the same for models trained from now on.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from deadtree.peak_filter import peak_record, tune_peak
from deadtree.pipeline import parse_scales
from deadtree.runtime.metadata import read_model_info, rewrite_model_info
from deadtree.runtime.registry import resolve_model
from deadtree.training.frames import held_out, load_frames
from deadtree.training.model_card import add_peak_to_card
from deadtree.training.variants import onnx_probabilities, write_variant_card

VARIANTS = ("int8", "fp16")


def validation_probabilities(path: Path, data: str, flips: bool = False,
                             scales: tuple[float, ...] = ()) -> tuple[list, list]:
    """Each validation frame predicted whole in fp32, with `segment`'s --flips and --scales where asked."""
    info = read_model_info(path)
    frames = held_out(load_frames(data, info.bands), info.extra["validation_groups"])
    return frames, onnx_probabilities(str(path), frames, flips, scales)


def report(label: str, tuned: dict) -> None:
    print(f"{label}: floor {tuned['min_peak']:.2f}; object F1 {tuned['without']['object_f1']:.3f} -> "
          f"{tuned['with']['object_f1']:.3f} (held out {tuned['held_out']['object_f1']:.3f}), pixel IoU "
          f"{tuned['without']['pixel_iou']:.3f} -> {tuned['with']['pixel_iou']:.3f}", flush=True)


def write_floor(path: Path, tuned: dict) -> list[Path]:
    """The floor into the model, its variants beside it, and their cards."""
    record = peak_record(tuned)
    info = read_model_info(path)
    validation = {**info.extra.get("validation", {}), **record}
    updated = dataclasses.replace(info, min_peak=tuned["min_peak"], extra={**info.extra, "validation": validation})
    rewrite_model_info(path, updated)
    add_peak_to_card(path.with_suffix(".md"), updated, validation)
    written = [path]
    for precision in VARIANTS:
        variant = path.with_name(f"{info.name}-{precision}.onnx")
        if variant.is_file():
            variant_info = read_model_info(variant)
            extra = {**variant_info.extra, "validation": {**variant_info.extra.get("validation", {}), **record}}
            rewrite_model_info(variant, dataclasses.replace(variant_info, min_peak=tuned["min_peak"], extra=extra))
            write_variant_card(variant)
            written.append(variant)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="shipped segmenter names or .onnx files")
    parser.add_argument("--data", required=True, help="the USA dead tree set (Kaggle layout or its source)")
    parser.add_argument("--out", type=Path, default=Path("docs/results/peak_filter.json"))
    parser.add_argument("--write", action="store_true", help="store each model's floor in it and its variants")
    parser.add_argument("--flips", action="store_true", help="tune for segment --flips instead (not written)")
    parser.add_argument("--scales", default="", help="tune for segment --scales, e.g. 1.5 (not written)")
    args = parser.parse_args()

    results, ensemble = {}, []
    for name in args.models:
        path = resolve_model(name, "segmenter")
        info = read_model_info(path)
        frames, probs = validation_probabilities(path, args.data, args.flips, parse_scales(args.scales))
        truths, groups = [f.mask for f in frames], [f.group for f in frames]
        tuned = tune_peak(probs, truths, info.threshold, groups)
        results[info.name] = tuned
        ensemble.append((info.threshold, [f.sample_id for f in frames], probs, truths, groups))
        report(info.name, tuned)
        if args.write and not (args.flips or args.scales):
            print("  wrote", ", ".join(p.name for p in write_floor(path, tuned)))
    if len(ensemble) > 1 and all(e[1] == ensemble[0][1] for e in ensemble):
        threshold = float(np.mean([e[0] for e in ensemble]))  # as segment --ensemble sets it
        mean = [np.mean(stack, axis=0) for stack in zip(*(e[2] for e in ensemble))]
        tuned = tune_peak(mean, ensemble[0][3], threshold, ensemble[0][4])
        label = " + ".join(results)
        results[label] = tuned
        report(label, tuned)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "what": "peak filter floors tuned for object F1 on each model's county-held-out validation split "
                "(frames predicted whole in fp32, 4-connected patches of at least 1 m², objects scored 8-connected)",
        "command": "python scripts/tune_peak_filter.py " + " ".join(args.models) + f" --data {args.data}"
        + (" --flips" if args.flips else "") + (f" --scales {args.scales}" if args.scales else ""),
        "flips": args.flips,
        "scales": args.scales,
        "results": results,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
