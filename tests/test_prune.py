"""Narrowing a trained decoder keeps the channels that carry the output."""
import pytest

torch = pytest.importorskip("torch")

from deadtree.nets.segmenter import build_segmenter  # noqa: E402
from deadtree.training.prune import decoder_widths, narrow_decoder  # noqa: E402


def _randomised(arch: str, seed: int):
    """A network with random BatchNorm statistics and affine terms, as after training (fresh ones are 0/1)."""
    torch.manual_seed(seed)
    model = build_segmenter(arch, 4)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _silence_all_but(model, narrow_widths):
    """Switch off all but `narrow_widths` randomly chosen output channels of every decoder convolution (their
    BatchNorm gives 0, so ReLU passes nothing): the wide network then computes what a narrow one can."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for block, width in zip(model.decoder.blocks, narrow_widths):
            for conv in (block.conv1, block.conv2):
                silent = torch.randperm(conv[1].weight.numel(), generator=generator)[width:]
                conv[1].weight[silent] = 0
                conv[1].bias[silent] = 0


def test_same_widths_copy_the_network_exactly():
    wide = _randomised("unet-r18-d4", 0)
    copy = narrow_decoder(wide, build_segmenter("unet-r18-d4", 4), [torch.rand(2, 4, 64, 64)]).eval()
    x = torch.rand(1, 4, 64, 64)
    assert torch.equal(wide(x), copy(x))


def test_silent_channels_are_the_ones_dropped():
    narrow = build_segmenter("unet-r18-d4-half", 4)
    wide = _randomised("unet-r18-d4", 1)
    _silence_all_but(wide, decoder_widths(narrow))
    narrow_decoder(wide, narrow, [torch.rand(2, 4, 64, 64) for _ in range(2)]).eval()
    x = torch.rand(2, 4, 64, 64)
    assert decoder_widths(narrow) == (64, 32, 16, 8)
    assert torch.allclose(wide(x), narrow(x), atol=1e-5)


def test_other_encoders_and_wider_targets_are_refused():
    wide = _randomised("unet-r18-d4", 2)
    with pytest.raises(ValueError, match="different encoders"):
        narrow_decoder(wide, build_segmenter("unet-r34-d4", 4), [torch.rand(1, 4, 64, 64)])
    with pytest.raises(ValueError, match="not narrower"):
        narrow_decoder(build_segmenter("unet-r18-d4-half", 4), build_segmenter("unet-r18-d4", 4),
                       [torch.rand(1, 4, 64, 64)])
