"""Training curves as PNG."""
from __future__ import annotations

from pathlib import Path


def plot_history(history: list[dict], path: Path, score_keys: tuple[str, ...]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    steps = [h["step"] for h in history]
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(steps, [h["train_loss"] for h in history], label="training loss")
    if "val_loss" in history[0]:
        ax_loss.plot(steps, [h["val_loss"] for h in history], label="validation loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_title("loss")
    ax_loss.legend()
    for key in score_keys:
        ax_score.plot(steps, [h.get(key, float("nan")) for h in history], label=key)
    ax_score.set_xlabel("step")
    ax_score.set_title("validation scores")
    ax_score.set_ylim(0, 1)
    ax_score.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
