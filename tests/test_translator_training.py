"""ADA-Net translator training: patch sources scaled as the pipeline scales tiles, a tiny resumable run with a
decaying learning rate, ONNX export with metadata, and the translator's value ranges inside `segment_scene`.

Everything runs on one CPU core with width-8 networks and 32 px patches.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from affine import Affine

torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from deadtree.cli import app  # noqa: E402
from deadtree.errors import InputError  # noqa: E402
from deadtree.pipeline import SegmentOptions, segment_scene  # noqa: E402
from deadtree.raster.normalise import band_percentiles  # noqa: E402
from deadtree.raster.reader import overview  # noqa: E402
from deadtree.raster.scene import open_scene  # noqa: E402
from deadtree.runtime.metadata import ModelInfo, attach_info, read_model_info  # noqa: E402
from deadtree.training.export import export_onnx  # noqa: E402
from deadtree.training.translator_data import (  # noqa: E402
    DomainSampler,
    FramePatchSource,
    GeoTiffPatchSource,
    Hdf5PatchSource,
    open_domain,
    unit_to_model,
)
from deadtree.training.translator_export import export_translator_checkpoint  # noqa: E402
from deadtree.training.translator_trainer import config_from_preset, lr_factor, train_translator  # noqa: E402
from tests.scenes import Disc, toy_model, write_scene  # noqa: E402
from tests.test_training import write_kaggle_layout  # noqa: E402

TINY = dict(width=8, patch=32, batch_size=1, disc_channels=8, nce_patches=32, nce_hidden=32, freq_crop=16,
            freq_crops=8, freq_hidden=32, samples=2, threads=1)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_hdf5(path, sources=("mo109_2020_n_03_05_1.png", "wa001_2020_n_01_01_0.png"), per_source=2, side=64,
               seed=0):
    """ADA-Net schema: one group per patch, `image` H x W x 4 in NIR, R, G, B, `label`, and two attributes."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        k = 0
        for source in sources:
            for _ in range(per_source):
                image = np.empty((side, side, 4), np.uint8)
                image[..., 0] = rng.integers(150, 250, (side, side))  # NIR: bright over vegetation
                image[..., 1:] = rng.integers(20, 120, (side, side, 3))
                group = f.create_group(f"patch_{k:05d}")
                group.create_dataset("image", data=image)
                group.create_dataset("label", data=np.zeros((side, side), np.float32))
                group.attrs["contains_dead_tree"] = False
                group.attrs["source_image"] = source
                k += 1
    return path


# --- patch sources ----------------------------------------------------------------------------------------------

def test_kaggle_patches_are_the_frame_stretch_mapped_to_minus_one_one(tmp_path):
    root = write_kaggle_layout(tmp_path / "data")
    source = FramePatchSource(root, ("R", "G", "B", "NIR"), patch=96, prefixes=("wa",))
    assert sorted(source.names) == ["wa009_2020_n_01_03_0", "wa011_2020_n_01_04_0", "wa013_2020_n_01_05_0"]
    patch = DomainSampler(source, seed=0, augment=False).batch(1)[0]
    # a whole-frame patch, so the crop position is fixed: it must be one frame's own stretch, mapped to [-1, 1]
    expected = [unit_to_model(band_percentiles(img).apply(img)) for img in source.images]
    assert any(np.allclose(patch, e, atol=1e-6) for e in expected)
    # the pipeline's scaling: the stretch's percentiles land on -1 and 1
    assert np.percentile(patch, 1) == pytest.approx(-1, abs=0.05)
    assert np.percentile(patch, 99) == pytest.approx(1, abs=0.05)
    target_patch = DomainSampler(source, seed=0, augment=False, clip=True).batch(1)[0]
    assert target_patch.max() <= 1 and target_patch.min() >= -1


def test_hdf5_source_reorders_bands_filters_and_pools_the_stretch_per_source_image(tmp_path):
    path = write_hdf5(tmp_path / "USA_RGBNIR_60cm_train.h5")
    source = open_domain(path, ("R", "G", "B", "NIR"), patch=32, prefixes=("mo",))
    assert isinstance(source, Hdf5PatchSource) and source.names == ["patch_00000", "patch_00001"]
    stretch = source.stretch_of["patch_00000"]
    assert stretch is source.stretch_of["patch_00001"]  # one stretch per source image, as one scene
    assert stretch.low[3] > 140 and stretch.low[0] < 30  # NIR stored first on disk, read last here
    patch = DomainSampler(source, seed=1).batch(3)
    assert patch.shape == (3, 4, 32, 32) and patch.dtype == np.float32
    assert source.describe()["source_images_by_prefix"] == {"MO": 1}
    assert source.describe()["by_prefix"] == {"MO": 2}  # patches
    source.close()


def test_geotiff_patches_are_read_at_the_model_gsd_and_never_touch_nodata(tmp_path):
    folder = tmp_path / "tifs"
    folder.mkdir()
    # 0.3 m pixels with a 20 px nodata collar: read at 0.6 m, windows touching the collar are rejected
    for i in range(2):
        write_scene(folder / f"site_{i}.tif", height=200, width=200, nodata=0, border=20, seed=i,
                    transform=Affine(0.3, 0, 500000, 0, -0.3, 6700000))
    source = open_domain(folder, ("R", "G", "B", "NIR"), patch=32, gsd_m=0.6)
    assert isinstance(source, GeoTiffPatchSource)
    assert (source.entries[0].grid.width, source.entries[0].grid.height) == (100, 100)
    scene = open_scene(folder / "site_0.tif")
    pixels, valid, _ = overview(scene, ("R", "G", "B", "NIR"))
    assert source.entries[0].stretch == band_percentiles(pixels, valid)  # segment_scene's own statistics
    scene.close()
    patches = DomainSampler(source, seed=0, augment=False).batch(24)
    # nodata (0) would land far below -1 after the stretch; imagery starts at about -1
    assert patches.shape == (24, 4, 32, 32) and patches.min() > -1.1
    source.close()


# --- training -----------------------------------------------------------------------------------------------

def test_lr_is_constant_then_decays_linearly():
    factors = [lr_factor(s, total_steps=10, decay_steps=4) for s in range(10)]
    assert factors[:6] == [1.0] * 6
    assert factors[6:] == pytest.approx([0.8, 0.6, 0.4, 0.2])


def test_tiny_kaggle_run_resumes_to_the_same_weights_and_decays_the_lr(tmp_path):
    root = write_kaggle_layout(tmp_path / "data")
    common = dict(source=str(root), target=str(root), source_filter=("wa",), target_filter=("ar", "mo"),
                  steps_per_epoch=2, epochs=2, decay_epochs=1, **TINY)

    straight = train_translator(config_from_preset("cpu", out_dir=str(tmp_path / "straight"), **common))
    assert straight["finished"] and straight["step"] == 4

    paused = train_translator(config_from_preset("cpu", out_dir=str(tmp_path / "paused"), max_minutes=1e-9,
                                                 **common))
    assert not paused["finished"] and paused["step"] == 1
    resumed = train_translator(config_from_preset("cpu", out_dir=str(tmp_path / "paused"), **common), resume=True)
    assert resumed["finished"] and resumed["step"] == 4

    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "paused" / "last.pt", weights_only=False)
    for key, value in a["generator"].items():  # RNG, optimiser and schedule state all came back
        assert torch.allclose(value, b["generator"][key], atol=1e-6), key

    history = json.loads((tmp_path / "paused" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0]["lr"] == pytest.approx(2e-4) and history[1]["lr"] < 0.6 * history[0]["lr"]
    assert resumed["final_lr"] < 0.2 * 2e-4
    for name in ("samples/epoch_001.png", "samples/epoch_002.png", "curves.png", "data.json"):
        assert (tmp_path / "paused" / name).stat().st_size > 1000 or name == "data.json"

    # export: attention switched on (trained gammas are still ~0) so the ONNX attention path is really checked
    ckpt = torch.load(tmp_path / "paused" / "last.pt", weights_only=False)
    for key in ckpt["generator"]:
        if key.endswith("gamma"):
            ckpt["generator"][key] = torch.full_like(ckpt["generator"][key], 0.5)
    torch.save(ckpt, tmp_path / "attending.pt")
    info, difference, _ = export_translator_checkpoint(tmp_path / "attending.pt", tmp_path / "t.onnx", "t", "0.1",
                                                       tile=64)
    assert difference <= 1e-4
    stored = read_model_info(tmp_path / "t.onnx")
    assert stored == info
    assert (stored.task, stored.bands, stored.tile_size) == ("translator", ("R", "G", "B", "NIR"), 64)
    assert stored.gsd_m == 0.6 and stored.overlap == 16
    assert stored.input_range == (-1.0, 1.0) and stored.output_range == (-1.0, 1.0)
    assert stored.scaling == {"method": "percentile", "low_pct": 1.0, "high_pct": 99.0}


def test_cli_trains_from_adanet_hdf5_files_and_exports_with_a_card(tmp_path):
    source = write_hdf5(tmp_path / "USA_RGBNIR_60cm_train.h5")
    target = write_hdf5(tmp_path / "Finland_RGBNIR_25cm.h5", sources=("L4133_2021.tif",), seed=1)
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(app, [
        "train", "translator", "--source", str(source), "--target", str(target), "--out-dir", str(out),
        "--width", "8", "--patch", "32", "--batch-size", "1", "--disc-channels", "8", "--epochs", "1",
        "--decay-epochs", "1", "--steps-per-epoch", "2", "--no-attention", "--no-freq-nce",
        "--tiled-discriminator", "16", "--threads", "1",
    ])
    assert result.exit_code == 0, result.output
    assert "finished at step 2 of 2" in result.output
    result = runner.invoke(app, ["export-translator", str(out / "last.pt"), "--name", "usa-to-fi", "--version",
                                 "0.1", "--out-dir", str(tmp_path / "models"), "--tile", "64"])
    assert result.exit_code == 0, result.output
    info = read_model_info(tmp_path / "models" / "usa-to-fi.onnx")
    assert info.task == "translator" and info.extra["attention"] is False
    assert info.extra["source"]["kind"] == "hdf5" and info.extra["target"]["images"] == 2
    card = (tmp_path / "models" / "usa-to-fi.md").read_text()
    assert "Finland_RGBNIR_25cm.h5" in card and "deadtree train translator" in card
    assert "--no-attention" in card and "export-translator" in card


# --- value ranges inside segment_scene ----------------------------------------------------------------------

class ClampToTanhRange(torch.nn.Module):
    """The ideal identity translator: what a generator writes is always within [-1, 1]."""

    def forward(self, x):
        return x.clamp(-1.0, 1.0)


def export_identity_translator(path, output_range=(-1.0, 1.0)):
    info = ModelInfo(name=path.stem, version="0", task="translator", bands=("R", "G", "B", "NIR"), gsd_m=0.6,
                     tile_size=64, overlap=16, input_range=(-1.0, 1.0), output_range=output_range)
    export_onnx(ClampToTanhRange(), info, path, in_bands=4, tile=64, dynamic_size=False)
    return path


def probe_segmenter(path):
    """probability = sigmoid(8 * (band mean - 0.5)): unlike the toy model it sees every value, not only the
    bright discs that both 0..1 and -1..1 leave at 1, so any range mix-up changes its output."""
    nodes = [helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1], keepdims=1),
             helper.make_node("Sub", ["mean", "half"], ["centred"]),
             helper.make_node("Mul", ["centred", "k"], ["logit"]),
             helper.make_node("Sigmoid", ["logit"], ["output"])]
    graph = helper.make_graph(
        nodes, "probe",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 4, "rows", "cols"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1, "rows", "cols"])],
        initializer=[numpy_helper.from_array(np.array(0.5, np.float32), "half"),
                     numpy_helper.from_array(np.array(8.0, np.float32), "k")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    info = ModelInfo(name="probe", version="0", task="segmenter", bands=("R", "G", "B", "NIR"), gsd_m=0.6,
                     tile_size=64, overlap=16)
    import onnx

    onnx.save(attach_info(model, info), str(path))
    return path


def probabilities(tmp_path, scene, segmenter, translator, name):
    import rasterio

    options = SegmentOptions(output=tmp_path / f"{name}.geojson", probabilities=tmp_path / f"{name}.tif",
                             model=str(segmenter), translator=str(translator) if translator else None,
                             device="cpu", min_area=0.0)
    result = segment_scene(scene, options)
    with rasterio.open(tmp_path / f"{name}.tif") as src:
        return result, src.read(1).astype(np.float64) / 254


def test_identity_translator_leaves_the_segmentation_unchanged(tmp_path):
    scene = tmp_path / "scene.tif"
    # enough bright discs (~4 % of pixels) that the 99th percentile is the disc value: the stretch maps the
    # imagery onto 0..1 almost exactly, so clamping to the translator's range changes (nearly) nothing
    discs = [Disc(20 + 36 * (i // 6), 20 + 36 * (i % 6), 6.0) for i in range(36)]
    write_scene(scene, height=224, width=224, discs=discs)
    translator = export_identity_translator(tmp_path / "identity.onnx")
    toy = toy_model(tmp_path / "toy.onnx")

    plain, p_plain = probabilities(tmp_path, scene, toy, None, "plain")
    translated, p_translated = probabilities(tmp_path, scene, toy, translator, "translated")
    assert translated.translator == "identity" and plain.polygons >= 30
    assert "(identity -> " in translated.summary() and "->" not in plain.summary().split("(")[-1]
    assert translated.polygons == plain.polygons
    assert np.abs(p_plain - p_translated).max() <= 2 / 254

    probe = probe_segmenter(tmp_path / "probe.onnx")
    _, q_plain = probabilities(tmp_path, scene, probe, None, "probe_plain")
    _, q_translated = probabilities(tmp_path, scene, probe, translator, "probe_translated")
    assert np.abs(q_plain - q_translated).max() <= 2 / 254
    # the check has teeth: a translator whose [-1, 1] output is read as 0..1 shifts the probabilities a lot
    wrong = export_identity_translator(tmp_path / "wrong-range.onnx", output_range=(0.0, 1.0))
    _, q_wrong = probabilities(tmp_path, scene, probe, wrong, "probe_wrong")
    assert np.abs(q_plain - q_wrong).max() > 0.2


def test_budget_fitted_run_sets_its_epochs_and_still_decays(tmp_path, monkeypatch):
    import functools

    from deadtree.training import translator_trainer
    from deadtree.training.time_budget import StepBudget

    # a short probe, so that a slow test machine still fits the run well inside its budget
    monkeypatch.setattr(translator_trainer, "StepBudget", functools.partial(StepBudget, probe_start=2, probe_steps=5))
    root = write_kaggle_layout(tmp_path / "data")
    config = config_from_preset("cpu", source=str(root), target=str(root), source_filter=("wa",),
                                target_filter=("ar", "mo"), steps_per_epoch=4, epochs=1000, decay_epochs=500,
                                out_dir=str(tmp_path / "fit"), fit_minutes=0.1, **TINY)
    summary = train_translator(config)
    ckpt = torch.load(tmp_path / "fit" / "last.pt", weights_only=False)
    epochs, decay = ckpt["config"]["epochs"], ckpt["config"]["decay_epochs"]
    assert epochs < 1000 and decay == max(1, round(epochs / 2))  # the asked-for share of decay is kept
    assert summary["total_steps"] == epochs * 4
    if summary["finished"]:
        assert summary["final_lr"] < 2e-4  # the decay happened inside the budget

    # the slim copy keeps what export needs, in half precision
    from deadtree.training.slim import write_slim_checkpoint

    slim = write_slim_checkpoint(tmp_path / "fit" / "last.pt", tmp_path / "slim.pt")
    kept = torch.load(slim, weights_only=False)
    assert set(kept) == {"generator", "config", "state", "data", "scaling"}
    assert all(v.dtype == torch.float16 for v in kept["generator"].values() if v.is_floating_point())
    info, difference, _ = export_translator_checkpoint(slim, tmp_path / "s.onnx", "s", "0.1", tile=64)
    assert difference <= 1e-4


def write_segmenter_checkpoint(path, bands=("R", "G", "B", "NIR"), arch="unet-r18-d4"):
    """A checkpoint in the layout `train segmenter` writes (weights, config), with fresh weights."""
    from deadtree.nets.segmenter import build_segmenter

    torch.manual_seed(0)
    net = build_segmenter(arch, len(bands))
    torch.save({"model": net.state_dict(), "config": {"arch": arch, "bands": list(bands)}}, path)
    return path


def test_task_consistency_is_lowest_when_the_translation_keeps_the_evidence(tmp_path):
    from deadtree.training.nce import TaskConsistency
    from deadtree.training.translator_trainer import load_task_consistency

    config = config_from_preset("cpu", source="s", target="t", out_dir=str(tmp_path), bands=("NIR", "R", "G", "B"),
                                task_segmenter=str(write_segmenter_checkpoint(tmp_path / "seg.pt")))
    task = load_task_consistency(config, torch.device("cpu"))
    assert isinstance(task, TaskConsistency) and task.channels.tolist() == [1, 2, 3, 0]  # R,G,B,NIR from NIR,R,G,B
    task.train()
    assert not task.segmenter.training  # batch-norm statistics stay frozen
    x = torch.rand(2, 4, 32, 32) * 2 - 1
    fake = (x + 0.5 * torch.randn_like(x)).clamp(-1, 1).requires_grad_(True)
    same, changed = task(x, x.clone()), task(x, fake)
    assert torch.isfinite(changed) and changed > same
    changed.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0  # the gradient reaches the generator's output
    assert all(p.grad is None for p in task.segmenter.parameters())  # the segmenter itself never learns


class _BrightnessSegmenter(torch.nn.Module):
    """A hand-made 'segmenter': a pixel is dead where its first band is bright."""

    def forward(self, unit: torch.Tensor) -> torch.Tensor:
        return 12 * (unit[:, :1] - 0.5)


def test_task_consistency_punishes_erasing_a_small_dead_crown():
    from deadtree.training.nce import TaskConsistency

    task = TaskConsistency(_BrightnessSegmenter(), channels=[0, 1, 2, 3])
    real = -torch.ones(1, 4, 50, 50)
    real[:, 0, 20:27, 20:27] = 1  # a crown on 2% of the pixels
    erased = -torch.ones(1, 4, 50, 50)
    # In a mean over pixels a lost 2% weighs little; the loss must still see the crown go.
    assert task(real, erased) - task(real, real) > 0.5


def test_translator_trains_with_the_task_term_and_refuses_wrong_checkpoints(tmp_path):
    root = write_kaggle_layout(tmp_path / "data")
    seg = write_segmenter_checkpoint(tmp_path / "seg.pt")
    common = dict(source=str(root), target=str(root), source_filter=("wa",), target_filter=("ar", "mo"),
                  steps_per_epoch=2, epochs=1, decay_epochs=1, **TINY)
    summary = train_translator(config_from_preset("cpu", out_dir=str(tmp_path / "run"), task_segmenter=str(seg),
                                                  **common))
    assert summary["finished"]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert math.isfinite(history[-1]["task"])
    from deadtree.training.translator_export import write_translator_card
    info, parity, ckpt = export_translator_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "t.onnx", "t", "0.1",
                                                      tile=64)
    write_translator_card(tmp_path / "t.md", info, ckpt, "deadtree export-translator ...", parity, 1)
    card = (tmp_path / "t.md").read_text()
    # the card's command reproduces the run, task term included, and reports the term's last value
    assert f"--task-segmenter {seg} --task-weight 1" in card and "task " in card.split("Losses in the last epoch")[1]
    assert info.extra["task_weight"] == 1.0
    with pytest.raises(InputError, match="not a segmenter checkpoint"):
        torch.save({"generator": {}}, tmp_path / "gen.pt")
        train_translator(config_from_preset("cpu", out_dir=str(tmp_path / "bad"), task_segmenter=str(tmp_path / "gen.pt"),
                                            **common))
    # a translator of R,G,B cannot feed a segmenter that reads NIR
    with pytest.raises(InputError, match="does not write"):
        train_translator(config_from_preset("cpu", out_dir=str(tmp_path / "bad2"), bands=("R", "G", "B"),
                                            task_segmenter=str(seg), **common))


@pytest.mark.parametrize("change,words", [
    ({"epochs": 0}, "--epochs, --batch-size"), ({"batch_size": 0}, "--epochs, --batch-size"),
    ({"width": 0}, "--width"), ({"lr": -1.0}, "--lr and --gsd must be above 0"), ({"gsd_m": 0.0}, "--gsd"),
])
def test_bad_translator_options_are_refused_before_any_patch_is_read(tmp_path, change, words):
    config = config_from_preset("cpu", source=str(tmp_path / "none"), target=str(tmp_path / "none"),
                                out_dir=str(tmp_path / "run"), **change)
    with pytest.raises(InputError, match=words):
        train_translator(config)
