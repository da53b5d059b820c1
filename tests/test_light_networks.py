"""The lighter fast networks (3 x 3 stem, one residual block per early stage, narrower half-resolution block):
what each cuts, that each still answers at full resolution and exports, and that they train from scratch."""
import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from deadtree.cli import app  # noqa: E402
from deadtree.nets.segmenter import ONE_BLOCK_STAGES, SMALL_STEM, build_segmenter  # noqa: E402
from tests.test_training import write_kaggle_layout  # noqa: E402

LIGHT = ["unet-r18k3-d4-h2r", "unet-r10k3-d4-h2r", "unet-r10k3-d4n-h2r"]


def convolution_macs(model, size=128) -> int:
    """Multiply-adds of every convolution for one 4-band tile of size x size."""
    total = 0

    def count(module, _inputs, output):
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1]
        total += output[0].numel() * module.in_channels // module.groups * kernel

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.rand(1, 4, size, size))
    for hook in hooks:
        hook.remove()
    return total


def test_each_lighter_network_cuts_what_its_name_says():
    base = build_segmenter("unet-r18-d4-h2r", 4)
    nets = {arch: build_segmenter(arch, 4) for arch in LIGHT}
    for arch, net in nets.items():
        assert (net.encoder.conv1.kernel_size == (3, 3)) == (arch in SMALL_STEM)
        blocks = [len(getattr(net.encoder, stage)) for stage in ("layer1", "layer2", "layer3")]
        assert blocks == ([1, 1, 1] if arch in ONE_BLOCK_STAGES else [2, 2, 2])
    assert base.encoder.conv1.kernel_size == (7, 7)
    macs = [convolution_macs(net) for net in [base, *nets.values()]]
    assert macs == sorted(macs, reverse=True) and len(set(macs)) == len(macs)
    # the 3 x 3 stem alone saves what the 7 x 7 one cost beyond it: 4 x 64 x (49 - 9) per half-resolution pixel
    assert macs[0] - macs[1] == 4 * 64 * (49 - 9) * 64 * 64


@pytest.mark.parametrize("arch", LIGHT)
def test_a_lighter_network_answers_at_full_resolution_and_exports(tmp_path, arch):
    from deadtree.runtime.metadata import ModelInfo
    from deadtree.training.export import WithSigmoid, export_onnx, parity

    torch.manual_seed(0)
    net = build_segmenter(arch, 4).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 4, 96, 128)).shape == (1, 1, 96, 128)
    info = ModelInfo(name="light", version="0", task="segmenter", bands=("R", "G", "B", "NIR"), gsd_m=0.6,
                     tile_size=64, overlap=16)
    assert export_onnx(WithSigmoid(net), info, tmp_path / "light.onnx", 4, 64) <= 1e-4
    assert parity(WithSigmoid(net), tmp_path / "light.onnx", 4, 96) <= 1e-4


def test_a_lighter_network_trains_from_scratch_and_refuses_a_warm_start(tmp_path):
    data = write_kaggle_layout(tmp_path / "data")
    common = ["--steps", "3", "--batch-size", "2", "--crop", "64", "--val-every", "3", "--threads", "1"]
    result = CliRunner().invoke(app, ["train", "segmenter", str(data), "--out-dir", str(tmp_path / "lean"),
                                      "--arch", "unet-r10k3-d4n-h2r", *common])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lean" / "best.pt").exists()
    # no trained network shares its layers, so a warm start is refused in one line
    result = CliRunner().invoke(app, ["train", "segmenter", str(data), "--out-dir", str(tmp_path / "warm"),
                                      "--arch", "unet-r10k3-d4-h2r", *common,
                                      "--init-from", str(tmp_path / "lean" / "best.pt")])
    assert result.exit_code != 0 and "trained from scratch" in result.output and "Traceback" not in result.output


def test_the_training_help_names_every_architecture():
    from deadtree.cli.training import ARCH_HELP
    from deadtree.nets.segmenter import ARCHITECTURES

    named = {word.strip(".,()") for word in ARCH_HELP.split()}
    assert set(ARCHITECTURES) <= named
