"""What a translator run shows a person: a grid of sample translations per epoch and the loss curves."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deadtree.training.translator_data import model_to_unit

LOSS_KEYS = ("loss_d", "loss_adv", "nce_translation", "nce_identity", "task")


def true_colour(patch: np.ndarray, bands: tuple[str, ...]) -> np.ndarray:
    """(bands, P, P) in [-1, 1] -> (P, P, 3) RGB in 0..1; the first three bands when R, G, B are not all there."""
    if all(b in bands for b in ("R", "G", "B")):
        picks = [bands.index(b) for b in ("R", "G", "B")]
    else:
        picks = [min(i, len(bands) - 1) for i in range(3)]
    return np.clip(model_to_unit(patch[picks]).transpose(1, 2, 0), 0, 1)


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_name(path.stem + ".partial.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def save_sample_grid(sources: np.ndarray, translated: np.ndarray, targets: np.ndarray, bands: tuple[str, ...],
                     path: Path, title: str) -> None:
    """One row per sample: source | translated | a (different, unpaired) target patch, in true colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(sources)
    fig, axes = plt.subplots(rows, 3, figsize=(7.5, 2.5 * rows + 0.4), squeeze=False)
    for i in range(rows):
        for j, (image, label) in enumerate(((sources[i], "source"), (translated[i], "translated"),
                                            (targets[i % len(targets)], "target sample"))):
            ax = axes[i][j]
            ax.imshow(true_colour(image, bands), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_figure(fig, path)


def plot_translator_history(history: list[dict], path: Path) -> None:
    """Per-epoch mean losses (left) and the learning rate (right), so a decaying schedule is visible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    steps = [h["step"] for h in history]
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(10, 4))
    for key in (k for k in LOSS_KEYS if any(k in h for h in history)):
        ax_loss.plot(steps, [h.get(key, float("nan")) for h in history], marker=".", label=key)
    ax_loss.set_xlabel("step")
    ax_loss.set_title("mean losses per epoch")
    ax_loss.legend()
    ax_lr.plot(steps, [h.get("lr", float("nan")) for h in history], marker=".")
    ax_lr.set_xlabel("step")
    ax_lr.set_title("generator learning rate")
    fig.tight_layout()
    _save_figure(fig, path)
