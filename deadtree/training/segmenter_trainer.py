"""Train a segmenter from scratch with checkpoints, resume, county-held-out validation and threshold tuning."""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from deadtree.errors import InputError
from deadtree.metrics import tuned_scores
from deadtree.peak_filter import peak_record, tune_peak
from deadtree.nets.segmenter import (ARCHITECTURES, HALF_RESOLUTION_HEAD, build_segmenter, count_parameters,
                                     predict_probabilities)
from deadtree.raster.normalise import DEFAULT_HIGH_PCT, DEFAULT_LOW_PCT
from deadtree.tiling import TRIM_MULTIPLE
from deadtree.training.augment import training_augmentation
from deadtree.training.curves import plot_history
from deadtree.training.distill import blended_target, teacher_probabilities
from deadtree.training.frames import (FRAMES_PREPARED, Frame, as_scene, frame_input, load_frames, name_selected,
                                      parse_prefixes)
from deadtree.training.losses import check_loss, segmentation_loss
from deadtree.training.mimic import LogitMimic
from deadtree.training.negatives import load_negative_tiles
from deadtree.training.prune import narrow_decoder
from deadtree.training.devices import training_device, training_machine
from deadtree.training.sampling import CropBatches, CropSampler
from deadtree.training.time_budget import StepBudget, stop_after_minutes
from deadtree.training.split import split_groups

log = logging.getLogger("deadtree")

NARROWING_BATCHES = 4  # batches of 8 training crops that rank a wider decoder's channels (--init-from)
THRESHOLDS = tuple(np.round(np.arange(0.2, 0.96, 0.05), 2))
REFIT_TOLERANCE = 0.1  # a fitted schedule is refitted when it would miss its budget by more than this share


@dataclass
class SegmenterConfig:
    data: str
    out_dir: str
    bands: tuple[str, ...] = ("R", "G", "B", "NIR")
    arch: str = "unet-r18-d4"
    crop: int = 256
    batch_size: int = 8
    steps: int = 3000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    positive_fraction: float = 0.6
    val_every: int = 200  # 0 = eight validations over the schedule
    val_fraction: float = 0.2
    split_seed: int = 0
    seed: int = 0
    threads: int = 0
    max_minutes: float = 0.0  # stop (resumably) after this much wall time in this run; 0 = no limit
    flips_at_validation: bool = False
    states: list[str] = field(default_factory=list)  # use only frames of these states, e.g. east: ar, mo, tx
    ema_decay: float = 0.998  # validate and ship an exponential moving average of the weights; 0 = off
    init_from: str = ""  # warm start: weights of an earlier checkpoint of the same architecture and bands
    device: str = "auto"  # auto, cpu or cuda; on cuda the forward pass runs in bfloat16
    workers: int = 0  # processes that cut and augment crops; 0 = in the training loop
    fit_minutes: float = 0.0  # set --steps from the measured step time to fill this budget; 0 = off
    augmentation: str = "standard"  # or "strong": a gain per band and wider brightness / contrast
    teachers: list[str] = field(default_factory=list)  # checkpoints whose mean probability is learnt beside the masks
    distill_weight: float = 0.5  # share of the teachers' probability in the target
    loss: str = "dice-focal"  # or "lovasz-focal" (deadtree/training/losses.py)
    mimic: str = ""  # checkpoint whose logits the decoder learns, on its encoder, frozen (deadtree/training/mimic.py)
    mimic_encoder: bool = False  # with mimic: the encoder, started as the teacher's, learns too
    imagenet: bool = False  # start the encoder from the ImageNet weights of an installed package (nets/imagenet.py)
    encoder_lr_scale: float = 0.25  # with imagenet: the encoder learns at this share of --lr (discriminative)
    negatives: str = ""  # a folder of hard-negative town tiles (training/negatives.py), e.g. ../shared/data/naip_urban
    negative_share: float = 0.25  # share of the crops drawn from the negatives
    negative_exclude: list[str] = field(default_factory=lambda: ["palm_springs"])  # cities kept out for false alarms


def check_config(config: SegmenterConfig) -> None:
    """Options that would fail deep in a run, or run and mean nothing, refused before any frame is read."""
    if config.arch not in ARCHITECTURES:
        raise InputError(f"unknown --arch {config.arch!r}; choose from {', '.join(ARCHITECTURES)}")
    if config.steps < 1 or config.batch_size < 1:
        raise InputError("--steps and --batch-size must be at least 1")
    if config.crop % TRIM_MULTIPLE or config.crop < TRIM_MULTIPLE:
        # the U-Nets halve a crop up to five times and join it back through skip connections
        raise InputError(f"--crop must be a positive multiple of {TRIM_MULTIPLE} px, not {config.crop}")
    if not config.lr > 0 or config.weight_decay < 0:
        raise InputError("--lr must be above 0 and --weight-decay at least 0")
    if not 0 <= config.ema_decay < 1:
        raise InputError(f"--ema must be at least 0 and below 1, not {config.ema_decay}")
    if not 0 < config.val_fraction < 1:
        raise InputError(f"--val-fraction must be between 0 and 1, not {config.val_fraction}")
    if min(config.val_every, config.workers, config.max_minutes, config.fit_minutes) < 0:
        raise InputError("--val-every, --workers, --max-minutes and --fit-minutes cannot be negative")
    if config.mimic and config.teachers:
        raise InputError("--mimic and --teacher are two ways of learning from trained networks: use one")
    if config.negatives and (config.mimic or config.loss != "dice-focal"):
        raise InputError("--negatives trains with the dice-focal loss: it cannot be combined with --mimic or "
                         "--loss lovasz-focal")
    if not 0 <= config.negative_share < 1 or not 0 < config.encoder_lr_scale <= 1:
        raise InputError("--negative-share must be in [0, 1) and --encoder-lr-scale in (0, 1]")
    if config.imagenet:
        from deadtree.nets.segmenter import imagenet_encoder

        if imagenet_encoder(config.arch) is None:
            raise InputError(f"--imagenet: no ImageNet weights ship for {config.arch}; use "
                             f"{' or '.join(a for a in ARCHITECTURES if imagenet_encoder(a))}")
    if config.mimic_encoder and not config.mimic:
        raise InputError("--mimic-encoder lets the encoder learn a --mimic teacher's logits: name the teacher with --mimic")


def train_segmenter(config: SegmenterConfig, resume: bool = False) -> dict:
    check_config(config)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = training_device(config.device)
    check_loss(config.loss, soft_targets=bool(config.teachers or config.mimic))

    frames = load_frames(config.data, tuple(config.bands))
    if config.states:
        frames = [f for f in frames if name_selected(f.group, parse_prefixes(config.states))]
        if not frames:
            raise InputError(f"no frames of states {', '.join(config.states)} in {config.data}")
    val_groups = split_groups([f.group for f in frames], config.val_fraction, config.split_seed)
    train_frames = [f for f in frames if f.group not in val_groups]
    val_frames = [f for f in frames if f.group in val_groups]
    if not val_frames or not train_frames:
        raise InputError("cannot split these frames by county into training and validation: "
                         "at least two counties per state are needed")
    split = {
        "rule": f"whole counties per state, about {config.val_fraction:.0%} of each state's frames, seed {config.split_seed}",
        "validation_groups": sorted(val_groups),
        "training_groups": sorted({f.group for f in train_frames}),
        "train_frames": len(train_frames),
        "validation_frames": len(val_frames),
    }
    (out / "split.json").write_text(json.dumps(split, indent=2))

    starts_from_imagenet = config.imagenet and not (resume and (out / "last.pt").exists())
    model = build_segmenter(config.arch, len(config.bands), imagenet=starts_from_imagenet)
    model = model.to(device, memory_format=torch.channels_last)
    if config.init_from and not (resume and (out / "last.pt").exists()):
        _warm_start(model, Path(config.init_from), config, train_frames)
    mimic = _logit_mimic(config, model, val_groups, device)
    ema = WeightAverage(model, config.ema_decay)
    optimizer = torch.optim.AdamW(_parameter_groups(model, config), lr=config.lr, weight_decay=config.weight_decay)
    # Read from config.steps at every step, so that a resumed run may lengthen or shorten its schedule.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, config.steps))
    state = {"step": 0, "history": [], "best": None, "train_seconds": 0.0, "machine": training_machine(device),
             "frames_prepared": FRAMES_PREPARED}
    last_path = out / "last.pt"
    if resume and last_path.exists():
        ckpt = torch.load(last_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt.get("train_model", ckpt["model"]))
        ema.load_averaged(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        state = ckpt["state"]
        np_state = ckpt.get("rng")
    else:
        np_state = None

    targets = _distilled_targets(config, train_frames, val_groups, device) if config.teachers else None
    negatives = (load_negative_tiles(config.negatives, tuple(config.bands), exclude=tuple(config.negative_exclude))
                 if config.negatives else [])
    if negatives:
        split["negatives"] = {"folder": config.negatives, "tiles": len(negatives),
                              "cities": sorted({f.group for f in negatives}),
                              "kept_out": list(config.negative_exclude), "share_of_crops": config.negative_share}
        (out / "split.json").write_text(json.dumps(split, indent=2))
    # With worker processes the crops come from their own seeded streams: no sampler in this process.
    sampler = None if config.workers else CropSampler(train_frames, config.crop, config.positive_fraction,
                                                      training_augmentation(config.augmentation), config.seed,
                                                      targets, negatives, config.negative_share)
    if np_state is not None and sampler is not None:
        sampler.restore(np_state)

    next_batch = _batch_source(config, train_frames, sampler, state["step"], device, targets, negatives)
    started = time.monotonic()
    run_seconds_at_start = state["train_seconds"]
    steps_at_start = state["step"]
    budget = StepBudget(config.fit_minutes) if config.fit_minutes else None
    max_minutes = stop_after_minutes(config.max_minutes, config.fit_minutes)
    losses: list[float] = []
    bar = tqdm(total=config.steps, initial=state["step"], desc=f"train {config.arch}", unit="step", dynamic_ncols=True)
    model.train()
    stopped_early = False
    while state["step"] < config.steps:
        x, y = next_batch()
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
        if mimic is not None:
            with autocast:
                loss = mimic.loss(model, x)
        else:
            with autocast:
                logits = model(x)
            loss = segmentation_loss(logits.float(), y, config.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        ema.update()
        state["step"] += 1
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
        elapsed = time.monotonic() - started
        fitted = budget.fitted_total(state["step"] - steps_at_start) if budget else None
        if fitted:
            config.steps = bar.total = steps_at_start + fitted
            tqdm.write(f"fitted to {config.fit_minutes:g} minutes: {config.steps} steps")
        out_of_time = max_minutes and elapsed > max_minutes * 60
        val_every = config.val_every or max(1, config.steps // 8)
        if state["step"] % val_every == 0 or state["step"] == config.steps or out_of_time:
            state["train_seconds"] = run_seconds_at_start + elapsed
            record = {"step": state["step"], "train_loss": float(np.mean(losses)) if losses else math.nan}
            record.update(evaluate(ema.model, val_frames, flips=config.flips_at_validation))
            model.train()
            losses = []
            state["history"].append(record)
            improved = state["best"] is None or record["pixel_iou"] > state["best"]["pixel_iou"]
            if improved:
                state["best"] = record
                _save(out / "best.pt", ema, optimizer, scheduler, state, sampler, config)
            _save(last_path, ema, optimizer, scheduler, state, sampler, config)
            plot_history(state["history"], out / "curves.png",
                         ("pixel_iou", "pixel_f1", "object_f1", "peak_object_f1"))
            (out / "history.json").write_text(json.dumps(state["history"], indent=2))
            tqdm.write(
                f"step {record['step']}: val IoU {record['pixel_iou']:.3f} F1 {record['pixel_f1']:.3f} "
                f"object F1 {record['object_f1']:.3f} @ threshold {record['threshold']} "
                f"({record['peak_object_f1']:.3f} with min peak {record['min_peak']:g})"
                + ("  (best)" if improved else "")
            )
            if out_of_time and state["step"] < config.steps:
                stopped_early = True
                break
            # Only a gross misfit is corrected, and never at the schedule's end (lengthening a finished cosine
            # would raise the learning rate again): each change bends the learning-rate curve, which the
            # recorded --steps (the last total) then no longer replays exactly; the changes are kept in the state.
            ending = state["step"] >= config.steps
            refitted = budget.refit(state["step"] - steps_at_start) if budget and not ending else None
            if refitted and abs(steps_at_start + refitted - config.steps) > REFIT_TOLERANCE * config.steps:
                config.steps = bar.total = max(state["step"] + 1, steps_at_start + refitted)
                state.setdefault("refits", []).append({"step": state["step"], "steps": config.steps})
                tqdm.write(f"refitted to {config.fit_minutes:g} minutes at the mean step time so far: "
                           f"{config.steps} steps")
    bar.close()
    summary = {
        "finished": not stopped_early,
        "step": state["step"],
        "best": state["best"],
        "train_seconds": state["train_seconds"],
        "parameters": count_parameters(model),
        "split": split,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _logit_mimic(config: SegmenterConfig, model, val_groups: set[str], device) -> LogitMimic | None:
    if not config.mimic:
        return None
    mimic = LogitMimic(config.mimic, tuple(config.bands), val_groups, device, train_encoder=config.mimic_encoder)
    mimic.adopt_encoder(model)
    return mimic


def _distilled_targets(config: SegmenterConfig, frames: list[Frame], val_groups: set[str],
                       device) -> list[np.ndarray]:
    if not 0 < config.distill_weight <= 1:
        raise InputError(f"--distill-weight must be in (0, 1], not {config.distill_weight}")
    read = {tuple(config.bands): frames}  # each band set is read once, however many teachers use it

    def frames_with_bands(bands: tuple[str, ...]) -> list[Frame]:
        if bands not in read:
            read[bands] = load_frames(config.data, bands)
        return read[bands]

    soft = teacher_probabilities(config.teachers, frames, val_groups, frames_with_bands, Path(config.out_dir),
                                 device)
    return [blended_target(f.mask, soft[f.sample_id], config.distill_weight) for f in frames]


def _parameter_groups(model, config: SegmenterConfig) -> list[dict]:
    """One group, or with ImageNet weights two: the pretrained encoder at encoder_lr_scale of the rate, so that
    the untrained decoder's first large gradients do not wash out what it knows."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not config.imagenet:
        return [{"params": trainable}]
    encoder = {id(p) for p in model.encoder.parameters()}
    return [{"params": [p for p in trainable if id(p) not in encoder]},
            {"params": [p for p in trainable if id(p) in encoder], "lr": config.lr * config.encoder_lr_scale}]


def _batch_source(config: SegmenterConfig, frames: list[Frame], sampler: CropSampler | None, step: int, device,
                  targets: list[np.ndarray] | None = None, negatives: list[Frame] = ()):
    """A function that returns the next (images, masks) batch as CPU tensors."""
    if not config.workers:
        return lambda: tuple(torch.from_numpy(a) for a in sampler.sample(config.batch_size))
    from torch.utils.data import DataLoader

    # Worker streams are seeded from the step, so a resumed run draws new crops instead of repeating old ones.
    stream = CropBatches(frames, config.crop, config.positive_fraction, config.batch_size, [config.seed, step],
                         config.augmentation, targets, negatives, config.negative_share)
    batches = iter(DataLoader(stream, batch_size=None, num_workers=config.workers,
                              pin_memory=device.type == "cuda", prefetch_factor=2))
    return lambda: next(batches)


def warmup_cosine(step: int, total: int, warmup: float = 0.05, start: float = 0.1, end: float = 0.01) -> float:
    """Learning-rate factor: linear warm-up from `start` over the first 5% of steps, then a cosine to `end`."""
    ramp = max(1, int(total * warmup))
    if step < ramp:
        return start + (1 - start) * step / ramp
    progress = min(1.0, (step - ramp) / max(1, total - ramp))
    return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * progress))


def _warm_start(model, checkpoint: Path, config: SegmenterConfig, train_frames: list[Frame]) -> None:
    """Load an earlier checkpoint's weights: the same network, or a wider decoder on the same encoder, which
    is narrowed to this one's widths by keeping its most useful channels on training crops."""
    if not checkpoint.exists():
        raise InputError(f"--init-from: {checkpoint} does not exist")
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    earlier = ckpt.get("config", {})
    if tuple(earlier.get("bands", ())) != tuple(config.bands):
        raise InputError(f"--init-from: {checkpoint} was trained on {earlier.get('bands')}, not {list(config.bands)}")
    if earlier.get("arch") == config.arch:
        model.load_state_dict(ckpt["model"])
        return
    if earlier.get("arch") not in ARCHITECTURES:
        raise InputError(f"--init-from: {checkpoint} is a {earlier.get('arch')}, not a {config.arch}")
    if config.arch in HALF_RESOLUTION_HEAD:
        parents = HALF_RESOLUTION_HEAD[config.arch]
        if not parents:
            raise InputError(f"--init-from: a {config.arch} is trained from scratch (no other network shares its "
                             f"layers); {checkpoint} is a {earlier['arch']}")
        if earlier["arch"] not in parents:
            raise InputError(f"--init-from: {checkpoint} is a {earlier['arch']}; a {config.arch} starts from a "
                             f"{' or a '.join(parents)}")
        _load_shared_layers(model, ckpt["model"], checkpoint)
        return
    wide = build_segmenter(earlier["arch"], len(config.bands))
    wide.load_state_dict(ckpt["model"])
    sampler = CropSampler(train_frames, config.crop, config.positive_fraction, None, seed=config.seed)
    batches = (torch.from_numpy(sampler.sample(8)[0]) for _ in range(NARROWING_BATCHES))  # drawn after the checks
    try:  # the wide network ranks channels on the CPU; copying them onto `model`'s device needs no move
        narrow_decoder(wide, model, batches)
    except ValueError as error:
        raise InputError(f"--init-from: {checkpoint} is a {earlier['arch']}, which is neither a {config.arch} "
                         f"nor the same encoder with a wider decoder ({error})") from None


def _load_shared_layers(model, weights: dict, checkpoint: Path) -> None:
    """A network that drops a trained one's last decoder block (HALF_RESOLUTION_HEAD) takes every layer the two
    share, the whole encoder included; its new head starts untrained. A head with more filters than the
    earlier one's (a sub-pixel correction beside the logit) takes the earlier filters first and zeros for the
    rest, so that it starts as the earlier network."""
    own = model.state_dict()
    shared = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    for key, theirs in weights.items():
        ours = own.get(key)
        if key.startswith("segmentation_head.") and ours is not None and key not in shared \
                and ours.shape[1:] == theirs.shape[1:] and ours.shape[0] > theirs.shape[0]:
            shared[key] = torch.cat([theirs, theirs.new_zeros((ours.shape[0] - theirs.shape[0], *theirs.shape[1:]))])
    model.load_state_dict(shared, strict=False)
    log.info("--init-from: %d of %d tensors taken from %s", len(shared), len(own), checkpoint.name)


class WeightAverage:
    """Exponential moving average of the weights (and BatchNorm statistics).

    Validation scores of a from-scratch model on 300 frames jump from one checkpoint to the next; the average
    is steadier and usually better, so it is what gets validated, kept and exported. The decay ramps up as
    (1 + n) / (10 + n) over the first updates: a fixed 0.998 would still give the random initial weights a
    third of the say after 500 steps."""

    def __init__(self, model: torch.nn.Module, decay: float):
        from torch.optim.swa_utils import AveragedModel

        self.source = model
        self.decay = decay
        self.averaged = (AveragedModel(model, multi_avg_fn=self._average, use_buffers=True)
                         if decay > 0 else None)

    def _average(self, averaged: list, current: list, n_averaged) -> None:
        n = float(n_averaged)
        decay = min(self.decay, (1 + n) / (10 + n))
        floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], 1 - decay)
        for a, c in zip(averaged, current):
            if not a.is_floating_point():  # counters such as BatchNorm's num_batches_tracked
                a.copy_(c)

    @property
    def model(self) -> torch.nn.Module:
        return self.averaged.module if self.averaged is not None else self.source

    def update(self) -> None:
        if self.averaged is not None:
            self.averaged.update_parameters(self.source)

    def load_averaged(self, state_dict: dict) -> None:
        if self.averaged is not None:
            self.averaged.module.load_state_dict(state_dict)
            self.averaged.n_averaged.fill_(1)


def _save(path: Path, ema: WeightAverage, optimizer, scheduler, state, sampler: CropSampler | None,
          config: SegmenterConfig) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": ema.model.state_dict(),  # what is validated and exported
            "train_model": ema.source.state_dict(),  # what the optimiser continues from
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "state": state,
            "rng": sampler.rng.bit_generator.state if sampler is not None else None,
            "config": asdict(config),
            "scaling": {"method": "percentile", "low_pct": DEFAULT_LOW_PCT, "high_pct": DEFAULT_HIGH_PCT},
            "split": json.loads((path.parent / "split.json").read_text()),
        },
        tmp,
    )
    tmp.replace(path)


@torch.no_grad()
def frame_probabilities(model, frame: Frame, flips: bool = False, prepare=as_scene) -> np.ndarray:
    model.eval()
    rows, cols = frame.mask.shape
    device = next(model.parameters()).device
    x = torch.from_numpy(frame_input(frame, prepare=prepare)).to(device).contiguous(memory_format=torch.channels_last)
    return predict_probabilities(model, x, flips=flips)[0, 0, :rows, :cols].float().cpu().numpy()


def evaluate(model, frames: list[Frame], flips: bool = False, threshold: float | None = None,
             prepare=as_scene) -> dict:
    """Pooled validation scores; the threshold is tuned on these frames unless one is given, then the peak
    filter's floor for object F1 (with its estimate from floors chosen on the other counties). `prepare`: how
    frames become inputs (frames.frame_input)."""
    probs = [frame_probabilities(model, f, flips, prepare) for f in frames]
    truths = [f.mask for f in frames]
    scores = tuned_scores(probs, truths, (threshold,) if threshold is not None else THRESHOLDS)
    scores.update(peak_record(tune_peak(probs, truths, scores["threshold"], [f.group for f in frames])))
    return scores
