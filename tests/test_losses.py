"""The training losses: each must pull logits towards the mask, and the CLI must say which one a run used."""
import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from deadtree.cli import app  # noqa: E402
from deadtree.errors import InputError  # noqa: E402
from deadtree.training.losses import LOSSES, check_loss, segmentation_loss  # noqa: E402
from deadtree.training.model_card import segmenter_command  # noqa: E402
from tests.test_training import write_kaggle_layout  # noqa: E402


def _sparse_mask(seed=0):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(2, 1, 48, 48)
    for _ in range(6):  # a few square "crowns" on 2% to 5% of the pixels
        b, r, c = (int(v) for v in torch.randint(0, 40, (3,), generator=generator))
        mask[b % 2, 0, r : r + 5, c : c + 5] = 1
    return mask


@pytest.mark.parametrize("kind", LOSSES)
def test_loss_ranks_logits_by_agreement_with_the_mask(kind):
    mask = _sparse_mask()
    agreeing, inverted = 6 * (2 * mask - 1), -6 * (2 * mask - 1)
    assert segmentation_loss(agreeing, mask, kind) < segmentation_loss(torch.zeros_like(mask), mask, kind)
    assert segmentation_loss(torch.zeros_like(mask), mask, kind) < segmentation_loss(inverted, mask, kind)


@pytest.mark.parametrize("kind", LOSSES)
def test_minimising_the_loss_recovers_the_mask(kind):
    mask = _sparse_mask(1)
    logits = (0.5 * torch.randn(mask.shape, generator=torch.Generator().manual_seed(2))).requires_grad_()
    optimiser = torch.optim.Adam([logits], lr=0.1)
    for _ in range(60):
        optimiser.zero_grad()
        segmentation_loss(logits, mask, kind).backward()
        optimiser.step()
    predicted = logits.detach() > 0
    iou = (predicted & mask.bool()).sum() / (predicted | mask.bool()).sum()
    assert iou > 0.95


def test_unknown_losses_and_lovasz_on_soft_targets_are_refused():
    check_loss("lovasz-focal", soft_targets=False)
    with pytest.raises(InputError, match="unknown --loss"):
        check_loss("dice", soft_targets=False)
    with pytest.raises(InputError, match="masks of 0 and 1"):
        check_loss("lovasz-focal", soft_targets=True)


def test_the_loss_is_recorded_and_reproduced_and_refusals_are_clean(tmp_path):
    data = write_kaggle_layout(tmp_path / "data")
    common = ["train", "segmenter", str(data), "--steps", "1", "--batch-size", "2", "--crop", "64",
              "--val-every", "1", "--threads", "1"]
    result = CliRunner().invoke(app, [*common, "--out-dir", str(tmp_path / "run"), "--loss", "lovasz-focal"])
    assert result.exit_code == 0, result.output
    config = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["config"]
    assert "--loss lovasz-focal" in segmenter_command(config)
    assert "--loss" not in segmenter_command({**config, "loss": "dice-focal"})

    for extra in (["--loss", "iou"], ["--loss", "lovasz-focal", "--teacher", str(tmp_path / "run" / "last.pt")]):
        result = CliRunner().invoke(app, [*common, "--out-dir", str(tmp_path / "refused"), *extra])
        assert result.exit_code != 0 and "--loss" in result.output and "Traceback" not in result.output
