"""--mimic: a narrower decoder learns a trained network's logits on that network's frozen encoder."""
import json

import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from deadtree.cli import app  # noqa: E402
from deadtree.errors import InputError  # noqa: E402
from deadtree.training.frames import load_frames  # noqa: E402
from deadtree.training.mimic import LogitMimic  # noqa: E402
from deadtree.training.model_card import distillation_lines, segmenter_command  # noqa: E402
from deadtree.training.sampling import CropSampler  # noqa: E402
from deadtree.training.segmenter_trainer import SegmenterConfig, train_segmenter  # noqa: E402
from tests.test_training import write_kaggle_layout  # noqa: E402


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimic")
    data = write_kaggle_layout(root / "data")
    config = SegmenterConfig(data=str(data), out_dir=str(root / "teacher"), arch="unet-r18-d4", crop=64,
                             batch_size=4, steps=20, lr=3e-3, val_every=20, threads=1)
    train_segmenter(config)
    return root, data, config


def _crops(data, val_groups, n=4):
    frames = [f for f in load_frames(data, ("R", "G", "B", "NIR")) if f.group not in val_groups]
    return torch.from_numpy(CropSampler(frames, 64, 0.6, None, seed=5).sample(n)[0])


def test_student_learns_the_teachers_logits_on_its_frozen_encoder(teacher_run):
    root, data, config = teacher_run
    teacher_ckpt = root / "teacher" / "best.pt"
    student_dir = root / "student"
    result = CliRunner().invoke(app, [
        "train", "segmenter", str(data), "--out-dir", str(student_dir), "--arch", "unet-r18-d4-half",
        "--steps", "60", "--batch-size", "4", "--crop", "64", "--lr", "0.003", "--val-every", "60",
        "--threads", "1", "--init-from", str(teacher_ckpt), "--mimic", str(teacher_ckpt)])
    assert result.exit_code == 0, result.output

    teacher = torch.load(teacher_ckpt, weights_only=False)["model"]
    start = torch.load(teacher_ckpt, weights_only=False)
    student = torch.load(student_dir / "last.pt", weights_only=False)
    for weights in (student["model"], student["train_model"]):  # shipped average and trained weights alike
        encoder = {k: v for k, v in weights.items() if k.startswith("encoder.")}
        assert encoder and all(torch.equal(v, teacher[k]) for k, v in encoder.items())

    # the decoder moved towards the teacher: the mimic loss on unseen crops fell well below the narrowed start
    from deadtree.nets.segmenter import build_segmenter
    from deadtree.training.prune import narrow_decoder

    val = set(json.loads((student_dir / "split.json").read_text())["validation_groups"])
    mimic = LogitMimic(teacher_ckpt, ("R", "G", "B", "NIR"), val)
    narrowed = build_segmenter("unet-r18-d4-half", 4)
    wide = build_segmenter("unet-r18-d4", 4)
    wide.load_state_dict(start["model"])
    narrow_decoder(wide, narrowed, iter([_crops(data, val, 8)]))
    trained = build_segmenter("unet-r18-d4-half", 4)
    trained.load_state_dict(student["model"])
    crops = _crops(data, val, 16)
    with torch.no_grad():
        before, after = mimic.loss(narrowed.eval(), crops).item(), mimic.loss(trained.eval(), crops).item()
    assert after < 0.6 * before  # 0.43 here; the margin absorbs another CPU's rounding

    # the card and the reproducing command say how the student learnt
    assert f"--mimic {teacher_ckpt}" in segmenter_command(student["config"])
    assert "learnt best's logits" in distillation_lines(student["config"])[0]


def test_mimic_refuses_what_would_leak_or_cannot_share_an_encoder(teacher_run, tmp_path):
    root, data, config = teacher_run
    teacher_ckpt = root / "teacher" / "best.pt"
    val = set(json.loads((root / "teacher" / "split.json").read_text())["validation_groups"])

    with pytest.raises(InputError, match="trained on"):
        LogitMimic(teacher_ckpt, ("R", "G", "B"), val)
    with pytest.raises(InputError, match="validated on other counties"):
        LogitMimic(teacher_ckpt, ("R", "G", "B", "NIR"), val | {"tx999"})
    with pytest.raises(InputError, match="does not exist"):
        LogitMimic(tmp_path / "none.pt", ("R", "G", "B", "NIR"), val)

    from deadtree.nets.segmenter import build_segmenter

    with pytest.raises(InputError, match="another encoder"):
        LogitMimic(teacher_ckpt, ("R", "G", "B", "NIR"), val).adopt_encoder(build_segmenter("unet-r34-d4", 4))
    with pytest.raises(InputError, match="use one"):
        train_segmenter(SegmenterConfig(**{**config.__dict__, "out_dir": str(tmp_path / "both"),
                                           "mimic": str(teacher_ckpt), "teachers": [str(teacher_ckpt)]}))
    result = CliRunner().invoke(app, ["train", "segmenter", str(data), "--out-dir", str(tmp_path / "cli"),
                                      "--bands", "R,G,B", "--steps", "1", "--crop", "64", "--threads", "1",
                                      "--mimic", str(teacher_ckpt)])
    assert result.exit_code != 0 and "trained on" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("arch", ["unet-r18-d4-h2", "unet-r18-d4-ps", "unet-r18-d4-h2r"])
def test_a_half_resolution_head_starts_from_every_layer_it_shares_with_the_teacher(teacher_run, tmp_path, arch):
    """unet-r18-d4-h2 and -ps drop the teacher's full-resolution decoder block: --init-from gives them the
    teacher's encoder and other decoder blocks, --mimic then trains what is new on the frozen encoder, and the
    result exports to ONNX with the upsampling (bilinear, or a pixel shuffle) of its logits."""
    from deadtree.nets.segmenter import build_segmenter, load_segmenter
    from deadtree.training.export import WithSigmoid, parity

    root, data, _ = teacher_run
    teacher_ckpt = root / "teacher" / "best.pt"
    teacher = torch.load(teacher_ckpt, weights_only=False)["model"]
    result = CliRunner().invoke(app, [
        "train", "segmenter", str(data), "--out-dir", str(tmp_path / "h2"), "--arch", arch,
        "--steps", "4", "--batch-size", "2", "--crop", "64", "--val-every", "4", "--threads", "1",
        "--init-from", str(teacher_ckpt), "--mimic", str(teacher_ckpt)])
    assert result.exit_code == 0, result.output
    student, _ = load_segmenter(tmp_path / "h2" / "last.pt")
    weights = student.state_dict()
    encoder = [k for k in weights if k.startswith("encoder.")]
    assert encoder and all(torch.equal(weights[k], teacher[k]) for k in encoder)
    assert "decoder.blocks.3.conv1.0.weight" in teacher and not any(k.startswith("decoder.blocks.3") for k in weights)
    assert weights["segmentation_head.0.weight"].shape[1] == teacher["decoder.blocks.2.conv2.0.weight"].shape[0]
    # a pixel shuffle's 2 x 2 logits; one logit and its 2 x 2 corrections
    assert weights["segmentation_head.0.weight"].shape[0] == {"unet-r18-d4-ps": 4, "unet-r18-d4-h2r": 5}.get(arch, 1)
    with torch.no_grad():
        assert student(torch.rand(1, 4, 96, 128)).shape == (1, 1, 96, 128)  # logits back at full resolution

    from deadtree.runtime.metadata import ModelInfo
    from deadtree.training.export import export_onnx

    info = ModelInfo(name="h2", version="0", task="segmenter", bands=("R", "G", "B", "NIR"), gsd_m=0.6, tile_size=64,
                     overlap=16)
    assert export_onnx(WithSigmoid(student), info, tmp_path / "h2.onnx", 4, 64) <= 1e-4
    assert parity(WithSigmoid(student), tmp_path / "h2.onnx", 4, 96) <= 1e-4

    # another network is refused, although its encoder holds tensors of the same names and shapes
    other = tmp_path / "r34.pt"
    torch.save({"config": {"bands": ["R", "G", "B", "NIR"], "arch": "unet-r34-d4"},
                "model": build_segmenter("unet-r34-d4", 4).state_dict()}, other)
    result = CliRunner().invoke(app, [
        "train", "segmenter", str(data), "--out-dir", str(tmp_path / "bad"), "--arch", arch,
        "--steps", "1", "--crop", "64", "--threads", "1", "--init-from", str(other)])
    assert result.exit_code != 0 and "starts from a unet-r18-d4" in result.output and "Traceback" not in result.output


def test_a_corrected_head_starts_as_the_half_resolution_network_it_grows_from(tmp_path):
    """unet-r18-d4-h2r started from a trained unet-r18-d4-h2 takes its whole network and its head's filter,
    with the four sub-pixel corrections at zero: it begins answering exactly as that network does, and
    training can only add detail to the outlines."""
    from pathlib import Path

    from deadtree.nets.segmenter import build_segmenter
    from deadtree.training.segmenter_trainer import _warm_start

    torch.manual_seed(0)
    h2 = build_segmenter("unet-r18-d4-h2", 4).eval()
    checkpoint = tmp_path / "h2.pt"
    torch.save({"config": {"bands": ["R", "G", "B", "NIR"], "arch": "unet-r18-d4-h2"}, "model": h2.state_dict()},
               checkpoint)
    corrected = build_segmenter("unet-r18-d4-h2r", 4)
    config = SegmenterConfig(data="unused", out_dir=str(tmp_path), arch="unet-r18-d4-h2r")
    _warm_start(corrected, Path(checkpoint), config, [])
    head = corrected.state_dict()["segmentation_head.0.weight"]
    assert torch.equal(head[:1], h2.state_dict()["segmentation_head.0.weight"]) and not head[1:].any()
    x = torch.rand(2, 4, 96, 64)
    with torch.no_grad():
        assert torch.equal(corrected.eval()(x), h2(x))
        # the corrections land on the 2 x 2 pixels each half-resolution pixel covers
        corrected.segmentation_head[0].bias[1:] = torch.tensor([1.0, 2.0, 3.0, 4.0])
        moved = corrected(x) - h2(x)
    assert torch.allclose(moved[0, 0, :2, :2], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert torch.allclose(moved[1, 0, 94:, 62:], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


def test_mimic_encoder_lets_the_encoder_learn_the_teachers_logits_too(teacher_run, tmp_path):
    """--mimic-encoder: the student's encoder starts as the teacher's and moves; the command on the card says
    so; without --mimic there is no teacher to learn from, and the option is refused in one line."""
    root, data, _ = teacher_run
    teacher_ckpt = root / "teacher" / "best.pt"
    teacher = torch.load(teacher_ckpt, weights_only=False)["model"]
    result = CliRunner().invoke(app, [
        "train", "segmenter", str(data), "--out-dir", str(tmp_path / "whole"), "--arch", "unet-r18-d4-h2r",
        "--steps", "4", "--batch-size", "2", "--crop", "64", "--lr", "0.003", "--val-every", "4", "--threads", "1",
        "--init-from", str(teacher_ckpt), "--mimic", str(teacher_ckpt), "--mimic-encoder"])
    assert result.exit_code == 0, result.output
    student = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)
    trained = student["train_model"]
    encoder = [k for k in trained if k.startswith("encoder.") and trained[k].is_floating_point()]
    assert encoder and any(not torch.equal(trained[k], teacher[k]) for k in encoder)
    assert "--mimic-encoder" in segmenter_command(student["config"])
    assert "the whole network" in distillation_lines(student["config"])[0]

    result = CliRunner().invoke(app, [
        "train", "segmenter", str(data), "--out-dir", str(tmp_path / "alone"), "--steps", "1", "--crop", "64",
        "--threads", "1", "--mimic-encoder"])
    assert result.exit_code != 0 and "--mimic" in result.output and "Traceback" not in result.output
