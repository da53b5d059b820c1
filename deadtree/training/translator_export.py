"""Export a translator checkpoint's generator to ONNX for `segment --translator`, with its model card.

The generator is exported at one fixed tile size: its attention map grows with the square of the tile area, so
the pipeline runs translators on their own tile size only (ModelInfo.tile_size).
"""
from __future__ import annotations

import shlex
import warnings
from pathlib import Path

from deadtree.errors import InputError
from deadtree.runtime.metadata import ModelInfo
from deadtree.training.translator_data import TRANSLATOR_RANGE
from deadtree.training.translator_report import LOSS_KEYS


def export_translator_checkpoint(checkpoint: Path, path: Path, name: str, version: str, tile: int = 256,
                                 overlap: int | None = None, gsd_m: float = 0.6,
                                 description: str = "") -> tuple[ModelInfo, float, dict]:
    """Write the generator to `path`; return (metadata, ONNX-vs-torch max abs difference, checkpoint)."""
    from deadtree.training.export import export_onnx
    from deadtree.training.translator_trainer import count_parameters, load_generator

    if tile % 4:
        raise InputError(f"--tile must be a multiple of 4 (the generator downsamples twice), got {tile}")
    overlap = tile // 4 if overlap is None else overlap
    if not 0 <= overlap < tile:
        raise InputError(f"--overlap must be at least 0 and smaller than the tile ({tile})")
    generator, ckpt = load_generator(Path(checkpoint))
    config, state = ckpt["config"], ckpt["state"]
    history = state.get("history") or []
    info = ModelInfo(
        name=name, version=version, task="translator", bands=tuple(config["bands"]), gsd_m=gsd_m,
        tile_size=tile, overlap=overlap, scaling=ckpt.get("scaling", {"method": "percentile", "low_pct": 1.0,
                                                                       "high_pct": 99.0}),
        input_range=TRANSLATOR_RANGE, output_range=TRANSLATOR_RANGE,
        description=description or "ADA-Net translator: makes source-domain imagery look like the target domain.",
        extra={
            "architecture": "adanet-generator" if config["attention"] else "cut-resnet-generator",
            "width": config["width"], "attention": config["attention"], "freq_nce": config["freq_nce"],
            "parameters": count_parameters(generator), "trained_steps": state["step"],
            "trained_epochs": state["step"] // state["steps_per_epoch"], "train_seconds": state.get("train_seconds"),
            "source": ckpt.get("data", {}).get("source"), "target": ckpt.get("data", {}).get("target"),
            "final_losses": history[-1] if history else None,
            **({"task_weight": config["task_weight"]} if config.get("task_segmenter") else {}),
        },
    )
    with warnings.catch_warnings():
        # The tracer's notes on the generator's input checks and instance norm are expected and harmless here;
        # the parity check below is what says whether the export is right.
        warnings.simplefilter("ignore")
        difference = export_onnx(generator, info, Path(path), len(config["bands"]), tile, dynamic_size=False)
    return info, difference, ckpt


def translator_command(config: dict) -> str:
    """The `deadtree train translator` command that reproduces a run from its stored configuration."""
    parts = ["deadtree", "train", "translator", "--source", config["source"], "--target", config["target"],
             "--out-dir", config["out_dir"], "--bands", ",".join(config["bands"]), "--config", config["preset"]]
    if config.get("source_filter"):
        parts += ["--source-filter", ",".join(config["source_filter"])]
    if config.get("target_filter"):
        parts += ["--target-filter", ",".join(config["target_filter"])]
    for option in ("width", "patch", "batch_size", "epochs", "decay_epochs", "steps_per_epoch", "lr",
                   "tiled_discriminator", "disc_channels", "gsd_m", "seed", "threads"):
        parts += [f"--{option.replace('_', '-').replace('gsd-m', 'gsd')}", str(config[option])]
    parts.append("--attention" if config["attention"] else "--no-attention")
    parts.append("--freq-nce" if config["freq_nce"] else "--no-freq-nce")
    if config.get("device", "auto") != "auto":
        parts += ["--device", config["device"]]
    if config.get("task_segmenter"):
        parts += ["--task-segmenter", config["task_segmenter"], "--task-weight", f"{config['task_weight']:g}"]
    command = " ".join(shlex.quote(p) for p in parts)
    if config.get("max_minutes"):
        command += f" --max-minutes {config['max_minutes']:g}  # repeat with --resume until finished"
    return command


def _domain_line(domain: dict | None) -> str:
    if not domain:
        return "-"
    by_prefix = ", ".join(f"{k} {v}" for k, v in (domain.get("by_prefix") or {}).items())
    if domain["kind"] == "hdf5":
        line = (f"hdf5 `{domain['path']}`: {domain['images']} patches from {domain['source_images']} source images "
                f"({by_prefix} patches)")
    else:
        line = f"{domain['kind']} `{domain['path']}`: {domain['images']} images ({by_prefix})"
    if domain.get("filter"):
        line += f", names starting with {', '.join(domain['filter'])}"
    return line


def write_translator_card(path: Path, info: ModelInfo, checkpoint: dict, export_command: str, parity: float,
                          size_bytes: int) -> None:
    from deadtree.machine import machine_description

    config, state = checkpoint["config"], checkpoint["state"]
    data = checkpoint.get("data", {})
    history = state.get("history") or []
    last = history[-1] if history else {}
    seconds = state.get("train_seconds", 0)
    duration = f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"
    if state.get("step_cpu_seconds"):  # on a shared machine the CPU time is the figure that transfers
        duration += f" of wall time, {state['step_cpu_seconds'] / 3600:.2f} CPU-hours in training steps,"
    total_steps = config["epochs"] * state["steps_per_epoch"]
    losses = ", ".join(f"{k} {last[k]:.3f}" for k in LOSS_KEYS
                       if k in last) or "-"
    lines = [
        f"# {info.name} {info.version}",
        "",
        info.description,
        "",
        "| | |",
        "|---|---|",
        "| task | image-to-image translation (ADA-Net), run before a segmenter with `deadtree segment --translator` |",
        f"| bands in and out | {', '.join(info.bands)} (in this order) |",
        f"| value scaling | per-band {info.scaling.get('low_pct')}-{info.scaling.get('high_pct')} percentile stretch "
        f"of the whole scene to 0-1, then mapped to {info.input_range[0]:g}..{info.input_range[1]:g}; output "
        f"{info.output_range[0]:g}..{info.output_range[1]:g} maps back to 0-1 |",
        f"| ground resolution | {info.gsd_m} m |",
        f"| tile / overlap | {info.tile_size} px (fixed) / {info.overlap} px |",
        f"| generator | width {config['width']}, attention {'on' if config['attention'] else 'off (plain CUT)'}, "
        f"FreqNCE {'on' if config['freq_nce'] else 'off'}, {info.extra['parameters'] / 1e6:.2f} M parameters |",
        f"| discriminator | residual, base {config['disc_channels']} channels, "
        + (f"tiled {config['tiled_discriminator']}-px crops |" if config["tiled_discriminator"] else "whole patches |"),
        *([f"| task consistency | not in the paper: a frozen target-domain segmenter (`{config['task_segmenter']}`) "
           f"must answer the same on the translation as on the source, weight {config['task_weight']:g} |"]
          if config.get("task_segmenter") else []),
        f"| file size | {size_bytes / 1e6:.1f} MB, ONNX vs torch max abs difference {parity:.1e} |",
        "",
        "## Training data",
        "",
        f"- source domain (translated from): {_domain_line(data.get('source'))}",
        f"- target domain (look translated to): {_domain_line(data.get('target'))}",
        f"- split: {data.get('split', 'unsupervised; masks never read')}. Judge the translator by the segmenter's "
        "scores on held-out source-domain masks, with and without it.",
        "",
        "## How it was made",
        "",
        "```",
        translator_command(config),
        export_command,
        "```",
        "",
        f"Trained {state['step']} of {total_steps} steps ({state['step'] // state['steps_per_epoch']} epochs of "
        f"{state['steps_per_epoch']} steps, {config['batch_size']} patches of {config['patch']} px per domain, "
        f"Adam lr {config['lr']:g} betas (0.5, 0.999), constant then linear decay over the last "
        f"{config['decay_epochs']} epochs) in {duration} on {state.get('machine') or machine_description()}"
        f" ({state.get('device', 'cpu')}).",
        "",
        f"Losses in the last epoch: {losses}.",
        "",
    ]
    if state["step"] < total_steps:
        lines += [f"**Unfinished**: the schedule has {total_steps} steps; resume with `--resume`.", ""]
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
