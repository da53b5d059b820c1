"""Train an ADA-Net translator (source -> target look) from unpaired patches, resumably.

One step = one discriminator update, then one update of the generator with its projection heads
(deadtree.training.nce.translator_step). The learning rate is constant, then falls linearly towards 0 over the
last `decay_epochs` epochs, as in CUT: without the decay GAN training keeps oscillating instead of settling.
Every epoch writes last.pt, a grid of sample translations and the loss curves; `max_minutes` stops the run
resumably mid-epoch, so long CPU trainings can be run in slices.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from deadtree.errors import InputError
from deadtree.nets.adanet import ResidualDiscriminator, ResnetAttentionGenerator
from deadtree.training.devices import training_device, training_machine
from deadtree.training.nce import FreqNCE, PatchSampleMLP, TaskConsistency, translator_step
from deadtree.training.time_budget import StepBudget, stop_after_minutes
from deadtree.training.translator_data import DomainSampler, open_domain
from deadtree.training.translator_report import LOSS_KEYS, plot_translator_history, save_sample_grid

SAVE_EVERY_S = 120.0
ADAM_BETAS = (0.5, 0.999)  # the usual GAN setting: a short first-moment memory keeps up with a moving opponent


@dataclass
class TranslatorConfig:
    source: str  # domain X: imagery to translate (no masks needed)
    target: str  # domain Y: the look the segmenter was trained on
    out_dir: str
    bands: tuple[str, ...] = ("R", "G", "B", "NIR")  # generator input and output band order
    source_filter: tuple[str, ...] = ()  # name prefixes (states "wa", counties "mo109") to keep; () = all
    target_filter: tuple[str, ...] = ()
    gsd_m: float = 0.6  # GeoTIFF sources are read at this ground resolution
    preset: str = "cpu"
    width: int = 16  # generator channels at full resolution (the paper: 64)
    patch: int = 128
    batch_size: int = 2  # patches per domain per step
    attention: bool = True  # False: plain CUT generator (the ablation)
    freq_nce: bool = True  # False: PatchNCE only
    tiled_discriminator: int = 0  # score random crops of this side instead of whole patches; 0 = whole
    disc_channels: int = 16  # discriminator base channels (the paper: 64)
    nce_patches: int = 256
    nce_hidden: int = 256  # projection head width (PatchNCE MLPs)
    freq_crop: int = 32
    freq_crops: int = 64
    freq_hidden: int = 1024
    lr: float = 2e-4
    epochs: int = 20
    decay_epochs: int = 10  # the last N epochs decay the learning rate linearly to 0
    steps_per_epoch: int = 250  # 0 = one pass over the source's patches at stride patch / 2, as the reference
    max_minutes: float = 0.0  # stop (resumably) after this much wall time in this run; 0 = no limit
    fit_minutes: float = 0.0  # set the number of epochs from the measured step time to fill this budget; 0 = off
    augment: bool = True
    samples: int = 4  # rows in the per-epoch sample grid
    seed: int = 0
    threads: int = 0
    device: str = "auto"  # auto, cpu or cuda
    # Not in the paper: a checkpoint of a segmenter trained on the TARGET domain (never the source's masks);
    # G is then also asked to keep that frozen segmenter's answers (nce.TaskConsistency). "" = off.
    task_segmenter: str = ""
    task_weight: float = 1.0


# Two documented starting points (docs/translator.md has the measured step times).
PRESETS: dict[str, dict] = {
    # Sized for a 2-core CPU: a quarter of the paper's generator width (0.44 M parameters) and discriminator
    # channels, half its patch side, 2 patches per domain; the losses and the schedule's shape are the paper's.
    "cpu": dict(width=16, patch=128, batch_size=2, disc_channels=16, nce_patches=256, freq_crop=32,
                freq_crops=64, lr=2e-4, epochs=20, decay_epochs=10, steps_per_epoch=250),
    # The paper's setting: width 64 (~7 M generator parameters), 256 px, 8 patches per domain, 40 epochs over
    # the source's stride-128 patches. lr 2e-4 as the authors advise for new data (their shipped config: 2e-6).
    "paper": dict(width=64, patch=256, batch_size=8, disc_channels=64, nce_patches=256, freq_crop=32,
                  freq_crops=64, lr=2e-4, epochs=40, decay_epochs=20, steps_per_epoch=0),
}

# Options that fix tensor shapes: a checkpoint can only be resumed with the same values.
ARCHITECTURE_FIELDS = ("bands", "width", "patch", "attention", "freq_nce", "tiled_discriminator", "disc_channels",
                       "nce_hidden", "freq_crop", "freq_crops", "freq_hidden")


def config_from_preset(preset: str, **options) -> TranslatorConfig:
    """A config from a named preset; options that are None keep the preset's value."""
    if preset not in PRESETS:
        raise InputError(f"unknown translator config {preset!r}: use {' or '.join(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in options.items() if v is not None}}
    known = {f.name for f in fields(TranslatorConfig)}
    unknown = set(values) - known
    if unknown:
        raise TypeError(f"unknown translator options: {', '.join(sorted(unknown))}")
    values["bands"] = tuple(values.get("bands", TranslatorConfig.bands))
    for key in ("source_filter", "target_filter"):
        values[key] = tuple(values.get(key, ()))
    return TranslatorConfig(preset=preset, **values)


def lr_factor(step: int, total_steps: int, decay_steps: int) -> float:
    """Learning-rate factor for 0-based `step`: 1 for the first total - decay steps, then falling linearly, by
    1 / (decay_steps + 1) a step, to 1 / (decay_steps + 1) at the last step (it would be 0 one step later)."""
    constant_steps = total_steps - decay_steps
    return 1.0 - max(0, step - constant_steps + 1) / float(decay_steps + 1)


def _check_config(config: TranslatorConfig) -> None:
    if min(config.epochs, config.batch_size, config.width, config.disc_channels) < 1:
        raise InputError("--epochs, --batch-size, --width and --disc-channels must be at least 1")
    if not (config.lr > 0 and config.gsd_m > 0) or config.steps_per_epoch < 0:
        raise InputError("--lr and --gsd must be above 0, --steps-per-epoch at least 0 (0: one pass over the source)")
    if config.patch % 4:
        raise InputError(f"--patch must be a multiple of 4 (the generator downsamples twice), got {config.patch}")
    disc_side = config.tiled_discriminator or config.patch
    if disc_side < 8 or disc_side & (disc_side - 1):
        raise InputError(f"the discriminator scores {disc_side}-px images: use a power of two >= 8 for --patch "
                         "or --tiled-discriminator")
    if config.tiled_discriminator > config.patch:
        raise InputError("--tiled-discriminator cannot exceed --patch")
    if config.freq_nce and config.freq_crop > config.patch:
        raise InputError(f"FreqNCE crops ({config.freq_crop} px) do not fit in {config.patch}-px patches")
    if not 0 <= config.decay_epochs <= config.epochs:
        raise InputError("--decay-epochs must lie between 0 and --epochs")


@dataclass
class TranslatorNets:
    generator: ResnetAttentionGenerator
    discriminator: ResidualDiscriminator
    heads: PatchSampleMLP
    freq_nce: FreqNCE | None

    def g_parameters(self) -> list[torch.nn.Parameter]:
        freq = list(self.freq_nce.parameters()) if self.freq_nce is not None else []
        return [*self.generator.parameters(), *self.heads.parameters(), *freq]


def build_nets(config: TranslatorConfig) -> TranslatorNets:
    bands = len(config.bands)
    generator = ResnetAttentionGenerator(bands, bands, config.width, config.attention)
    discriminator = ResidualDiscriminator(bands, image_size=config.patch, tiled_crop=config.tiled_discriminator or None,
                                          base_channels=config.disc_channels)
    heads = PatchSampleMLP(generator.feature_channels, hidden=config.nce_hidden, out=config.nce_hidden)
    freq = (FreqNCE(bands, config.freq_crop, config.freq_crops, hidden=config.freq_hidden, out=config.nce_hidden)
            if config.freq_nce else None)
    return TranslatorNets(generator, discriminator, heads, freq)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def train_translator(config: TranslatorConfig, resume: bool = False) -> dict:
    _check_config(config)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = training_device(config.device)

    source = open_domain(config.source, config.bands, config.patch, config.gsd_m, config.source_filter)
    try:
        target = open_domain(config.target, config.bands, config.patch, config.gsd_m, config.target_filter)
    except BaseException:
        source.close()
        raise
    try:
        return _train(config, resume, out, device, source, target)
    finally:
        source.close()
        target.close()


def _train(config: TranslatorConfig, resume: bool, out: Path, device: torch.device, source, target) -> dict:
    data = {"source": source.describe(), "target": target.describe(),
            "split": "unsupervised: masks are never read, so no held-out split is needed for the translator"}
    (out / "data.json").write_text(json.dumps(data, indent=2))

    nets = build_nets(config)
    for module in (nets.generator, nets.discriminator, nets.heads, nets.freq_nce):
        if module is not None:
            module.to(device)
    task = load_task_consistency(config, device) if config.task_segmenter else None
    optimizer_g = torch.optim.Adam(nets.g_parameters(), lr=config.lr, betas=ADAM_BETAS)
    optimizer_d = torch.optim.Adam(nets.discriminator.parameters(), lr=config.lr, betas=ADAM_BETAS)
    source_sampler = DomainSampler(source, config.seed, config.augment, clip=False)
    target_sampler = DomainSampler(target, config.seed + 1, config.augment, clip=True)

    steps_per_epoch = config.steps_per_epoch or max(1, math.ceil(source.epoch_patches / config.batch_size))
    state = {"step": 0, "steps_per_epoch": steps_per_epoch, "history": [], "train_seconds": 0.0,
             "step_seconds": 0.0, "step_cpu_seconds": 0.0, "epoch_sums": {}, "epoch_steps": 0,
             "machine": training_machine(device), "device": str(device)}
    last_path = out / "last.pt"
    checkpoint = None
    if resume and last_path.exists():
        checkpoint = torch.load(last_path, map_location=device, weights_only=False)
        _check_resumable(checkpoint["config"], config)
        state = checkpoint["state"]
        steps_per_epoch = state["steps_per_epoch"]  # an epoch keeps its length across resumes

    # The schedule reads `plan` at every step, so that fitting the run to a time budget can change its length.
    plan = {"total": config.epochs * steps_per_epoch, "decay": config.decay_epochs * steps_per_epoch}
    total_steps = plan["total"]

    def schedule(step: int) -> float:
        return lr_factor(step, plan["total"], plan["decay"])

    scheduler_g = torch.optim.lr_scheduler.LambdaLR(optimizer_g, schedule)
    scheduler_d = torch.optim.lr_scheduler.LambdaLR(optimizer_d, schedule)

    if checkpoint is not None:
        nets.generator.load_state_dict(checkpoint["generator"])
        nets.discriminator.load_state_dict(checkpoint["discriminator"])
        nets.heads.load_state_dict(checkpoint["heads"])
        if nets.freq_nce is not None:
            nets.freq_nce.load_state_dict(checkpoint["freq_nce"])
        optimizer_g.load_state_dict(checkpoint["optimizer_g"])
        optimizer_d.load_state_dict(checkpoint["optimizer_d"])
        scheduler_g.load_state_dict(checkpoint["scheduler_g"])
        scheduler_d.load_state_dict(checkpoint["scheduler_d"])
        # The schedule follows the config of this run (more epochs may have been asked for): recompute the lr.
        for scheduler, optimizer in ((scheduler_g, optimizer_g), (scheduler_d, optimizer_d)):
            for group, base in zip(optimizer.param_groups, scheduler.base_lrs):
                group["lr"] = base * schedule(state["step"])
        source_sampler.rng.bit_generator.state = checkpoint["rng"]["source"]
        target_sampler.rng.bit_generator.state = checkpoint["rng"]["target"]
        torch.set_rng_state(checkpoint["rng"]["torch"])
        if device.type == "cuda" and checkpoint["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])

    # Fixed patches for the sample grids, drawn from their own RNG so every epoch shows the same ones.
    shown_sources = DomainSampler(source, config.seed + 7919, augment=False).batch(config.samples)
    shown_targets = DomainSampler(target, config.seed + 7920, augment=False, clip=True).batch(config.samples)

    def save() -> None:
        _save(last_path, nets, optimizer_g, optimizer_d, scheduler_g, scheduler_d, state, source_sampler,
              target_sampler, config, data)

    def end_epoch(lr: float) -> None:
        epoch = state["step"] // steps_per_epoch
        n = max(1, state["epoch_steps"])
        record = {"epoch": epoch, "step": state["step"], "lr": lr, "train_seconds": round(state["train_seconds"], 1)}
        record.update({k: v / n for k, v in state["epoch_sums"].items()})
        state["history"].append(record)
        state["epoch_sums"], state["epoch_steps"] = {}, 0
        translated = translate(nets.generator, shown_sources, device)
        grid_path = out / "samples" / f"epoch_{epoch:03d}.png"
        save_sample_grid(shown_sources, translated, shown_targets, config.bands, grid_path,
                         f"epoch {epoch}, step {state['step']}: source | translated | target sample")
        plot_translator_history(state["history"], out / "curves.png")
        (out / "history.json").write_text(json.dumps(state["history"], indent=2))
        tqdm.write(f"epoch {epoch}: " + ", ".join(f"{k} {record[k]:.3f}" for k in LOSS_KEYS if k in record)
                   + f", lr {lr:.2e}")

    started = time.monotonic()
    seconds_at_start = state["train_seconds"]
    steps_at_start = state["step"]
    step_seconds_at_start = state["step_seconds"]
    cpu_seconds_at_start = state.get("step_cpu_seconds", 0.0)
    bar = tqdm(total=total_steps, initial=state["step"], desc="train translator", unit="step", dynamic_ncols=True)
    recent: dict[str, list[float]] = {k: [] for k in LOSS_KEYS}
    stopped_early = False
    budget = StepBudget(config.fit_minutes) if config.fit_minutes else None
    max_minutes = stop_after_minutes(config.max_minutes, config.fit_minutes)
    last_saved = time.monotonic()
    for module in (nets.generator, nets.discriminator, nets.heads, nets.freq_nce):
        if module is not None:
            module.train()
    try:
        while state["step"] < total_steps:
            t0, cpu0 = time.monotonic(), time.process_time()
            real_x = torch.from_numpy(source_sampler.batch(config.batch_size)).to(device)
            real_y = torch.from_numpy(target_sampler.batch(config.batch_size)).to(device)
            losses = translator_step(nets.generator, nets.discriminator, nets.heads, optimizer_g, optimizer_d,
                                     real_x, real_y, freq_nce=nets.freq_nce, num_patches=config.nce_patches,
                                     task=task)
            lr = optimizer_g.param_groups[0]["lr"]  # the rate this step used
            scheduler_g.step()
            scheduler_d.step()
            state["step"] += 1
            state["step_seconds"] += time.monotonic() - t0
            # CPU time as well as wall time: on a shared machine wall time says more about the neighbours.
            state["step_cpu_seconds"] = state.get("step_cpu_seconds", 0.0) + time.process_time() - cpu0
            state["epoch_steps"] += 1
            for key, value in losses.items():
                state["epoch_sums"][key] = state["epoch_sums"].get(key, 0.0) + value
                if key in recent:
                    recent[key] = (recent[key] + [value])[-20:]
            bar.update(1)
            bar.set_postfix(D=f"{np.mean(recent['loss_d']):.3f}", adv=f"{np.mean(recent['loss_adv']):.3f}",
                            nce_x=f"{np.mean(recent['nce_translation']):.2f}",
                            nce_y=f"{np.mean(recent['nce_identity']):.2f}", lr=f"{lr:.1e}",
                            **({"task": f"{np.mean(recent['task']):.3f}"} if recent["task"] else {}))
            elapsed = time.monotonic() - started
            state["train_seconds"] = seconds_at_start + elapsed
            fitted = budget.fitted_total(state["step"] - steps_at_start) if budget else None
            if fitted:
                config = _fit_epochs(config, steps_at_start + fitted, steps_per_epoch, state["step"])
                plan.update(total=config.epochs * steps_per_epoch, decay=config.decay_epochs * steps_per_epoch)
                total_steps = bar.total = plan["total"]
                tqdm.write(f"fitted to {config.fit_minutes:g} minutes: {config.epochs} epochs of {steps_per_epoch} "
                           f"steps, the last {config.decay_epochs} decaying")
            out_of_time = bool(max_minutes) and elapsed > max_minutes * 60
            epoch_end = state["step"] % steps_per_epoch == 0
            if epoch_end:
                end_epoch(lr)
            # The paper-sized nets and their Adam moments weigh ~0.5 GB: writing them after every short GPU
            # epoch would cost more than the epoch, so epoch ends save at most every SAVE_EVERY_S seconds.
            if (out_of_time or state["step"] == total_steps
                    or (epoch_end and time.monotonic() - last_saved >= SAVE_EVERY_S)):
                save()
                last_saved = time.monotonic()
            if out_of_time and state["step"] < total_steps:
                stopped_early = True
                break
    finally:
        bar.close()

    steps_run = state["step"] - steps_at_start
    summary = {
        "finished": not stopped_early and state["step"] >= total_steps,
        "step": state["step"],
        "epoch": state["step"] // steps_per_epoch,
        "total_steps": total_steps,
        "steps_per_epoch": steps_per_epoch,
        "train_seconds": state["train_seconds"],
        "seconds_per_step_this_run": (state["step_seconds"] - step_seconds_at_start) / steps_run if steps_run else None,
        "cpu_seconds_per_step_this_run": ((state["step_cpu_seconds"] - cpu_seconds_at_start) / steps_run
                                          if steps_run else None),
        "final_lr": optimizer_g.param_groups[0]["lr"],
        "parameters": {"generator": count_parameters(nets.generator),
                       "discriminator": count_parameters(nets.discriminator)},
        "device": str(device),
        "data": data,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def load_task_consistency(config: TranslatorConfig, device: torch.device) -> TaskConsistency:
    """The frozen target-domain segmenter of the task-consistency term, from a `train segmenter` checkpoint
    (best.pt, or a slim one such as models/checkpoints/*.pt)."""
    from deadtree.nets.segmenter import build_segmenter

    path = Path(config.task_segmenter)
    if not path.is_file():
        raise InputError(f"task segmenter checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    seg_config = ckpt.get("config") if isinstance(ckpt, dict) else None
    if not isinstance(seg_config, dict) or "arch" not in seg_config or "model" not in ckpt:
        raise InputError(f"{path.name} is not a segmenter checkpoint from `deadtree train segmenter`")
    missing = [b for b in seg_config["bands"] if b not in config.bands]
    if missing:
        raise InputError(f"the task segmenter reads {','.join(missing)}, which the translator does not write")
    net = build_segmenter(seg_config["arch"], len(seg_config["bands"]))
    net.load_state_dict({k: v.float() for k, v in ckpt["model"].items()})
    channels = [config.bands.index(b) for b in seg_config["bands"]]
    return TaskConsistency(net, channels, config.task_weight).to(device)


def _fit_epochs(config: TranslatorConfig, total_steps: int, steps_per_epoch: int, step: int) -> TranslatorConfig:
    """The config with as many epochs as fit in `total_steps`, decaying over the same share of them as asked."""
    epochs = max(step // steps_per_epoch + 1, round(total_steps / steps_per_epoch))
    decay = min(epochs, max(1, round(epochs * config.decay_epochs / max(1, config.epochs))))
    return replace(config, epochs=epochs, decay_epochs=decay)


@torch.no_grad()
def translate(generator: torch.nn.Module, patches: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """G(x) for a numpy batch in [-1, 1]. Instance norm keeps no running statistics, so train and eval mode agree."""
    return generator(torch.from_numpy(patches).to(device)).float().cpu().numpy()


def _check_resumable(saved: dict, config: TranslatorConfig) -> None:
    current = asdict(config)
    different = [k for k in ARCHITECTURE_FIELDS if _as_list(saved.get(k)) != _as_list(current.get(k))]
    if different:
        detail = ", ".join(f"{k}={saved.get(k)!r} (now {current.get(k)!r})" for k in different)
        raise InputError(f"the checkpoint was trained with {detail}: resume with the same options or a new --out-dir")


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _save(path: Path, nets: TranslatorNets, optimizer_g, optimizer_d, scheduler_g, scheduler_d, state: dict,
          source_sampler: DomainSampler, target_sampler: DomainSampler, config: TranslatorConfig, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "generator": nets.generator.state_dict(),
            "discriminator": nets.discriminator.state_dict(),
            "heads": nets.heads.state_dict(),
            "freq_nce": nets.freq_nce.state_dict() if nets.freq_nce is not None else None,
            "optimizer_g": optimizer_g.state_dict(),
            "optimizer_d": optimizer_d.state_dict(),
            "scheduler_g": scheduler_g.state_dict(),
            "scheduler_d": scheduler_d.state_dict(),
            "state": state,
            "rng": {
                "source": source_sampler.rng.bit_generator.state,
                "target": target_sampler.rng.bit_generator.state,
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
            "config": asdict(config),
            "data": data,
            "scaling": {"method": "percentile", "low_pct": 1.0, "high_pct": 99.0},
        },
        tmp,
    )
    tmp.replace(path)


def load_generator(checkpoint: Path | dict) -> tuple[ResnetAttentionGenerator, dict]:
    """The generator of a translator checkpoint, on the CPU in eval mode, with the checkpoint dict."""
    ckpt = checkpoint
    if not isinstance(ckpt, dict):
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if "generator" not in ckpt or "config" not in ckpt:
        raise InputError("not a translator checkpoint (written by `deadtree train translator`)")
    config = ckpt["config"]
    bands = len(config["bands"])
    generator = ResnetAttentionGenerator(bands, bands, config["width"], config["attention"])
    generator.load_state_dict(ckpt["generator"])
    return generator.eval(), ckpt
