"""A tiny end-to-end training run: the loop learns, resumes, exports with ONNX parity, and writes a card."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from deadtree.errors import InputError  # noqa: E402
from deadtree.training.frames import FRAMES_PREPARED, Frame, county_of, held_out, load_frames  # noqa: E402
from deadtree.training.model_card import segmenter_command  # noqa: E402
from deadtree.peak_filter import PEAKS  # noqa: E402
from deadtree.training.segmenter_trainer import SegmenterConfig, train_segmenter  # noqa: E402
from deadtree.training.split import split_groups  # noqa: E402
from tests.scenes import default_discs, disc_mask  # noqa: E402


def write_kaggle_layout(root, counties=("ar001", "ar003", "ar005", "wa009", "wa011", "wa013"), size=96):
    for sub in ("RGB_images", "NRG_images", "masks"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, county in enumerate(counties):
        sid = f"{county}_2020_n_01_0{i}_0"
        img = rng.integers(40, 111, size=(size, size, 4)).astype(np.uint8)
        mask = disc_mask(size, size, default_discs(size, size))
        img[mask] = 235
        Image.fromarray(img[..., :3]).save(root / "RGB_images" / f"RGB_{sid}.png")
        Image.fromarray(np.dstack([img[..., 3], img[..., 0], img[..., 1]])).save(root / "NRG_images" / f"NRG_{sid}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(root / "masks" / f"mask_{sid}.png")
    return root


def test_kaggle_layout_reads_nir_from_nrg(tmp_path):
    root = write_kaggle_layout(tmp_path / "data")
    frames = load_frames(root, ("R", "G", "B", "NIR"))
    assert len(frames) == 6 and frames[0].image.shape == (96, 96, 4)
    nrg = np.asarray(Image.open(sorted((root / "NRG_images").iterdir())[0]))
    assert np.array_equal(frames[0].image[..., 3], nrg[..., 0])
    assert frames[0].group == "ar001"


def test_hdf5_patch_files_are_read_in_their_band_order(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "USA_RGBNIR_60cm_train.h5"
    image = np.zeros((16, 16, 4), np.uint8)
    image[..., 0], image[..., 1], image[..., 2], image[..., 3] = 40, 10, 20, 30  # NIR, R, G, B
    with h5py.File(path, "w") as f:
        g = f.create_group("patch_0")
        g.create_dataset("image", data=image)
        g.create_dataset("label", data=np.eye(16, dtype=np.float32))
        g.attrs["contains_dead_tree"] = True
        g.attrs["source_image"] = "mo109_2020_n_03_05_1.png"
    frame = load_frames(path, ("R", "G", "B", "NIR"))[0]
    assert list(frame.image[0, 0]) == [10, 20, 30, 40]
    assert frame.mask.sum() == 16 and frame.group == "mo109"


def test_split_is_by_whole_county_and_per_state():
    ids = [f"{c}_2020_n_01_01_{k}" for c in ("mo001", "mo003", "mo005", "mo007", "mo009", "wa001", "wa003", "wa005")
           for k in range(4)]
    groups = [county_of(i) for i in ids]
    val = split_groups(groups, 0.2, seed=0)
    assert val and all(g in set(groups) for g in val)
    assert any(g.startswith("mo") for g in val) and any(g.startswith("wa") for g in val)
    assert split_groups(groups, 0.2, seed=0) == val  # recorded split is reproducible


def test_held_out_keeps_the_recorded_validation_counties_in_order():
    frames = [Frame(f"{c}_2020_n_01_01_{k}", c, np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), bool))
              for c in ("mo001", "wa003", "mo005") for k in range(2)]
    kept = held_out(frames, ["wa003", "mo005", "tx999"])
    assert [f.sample_id for f in kept] == ["wa003_2020_n_01_01_0", "wa003_2020_n_01_01_1",
                                           "mo005_2020_n_01_01_0", "mo005_2020_n_01_01_1"]
    assert held_out(frames, []) == []


def test_tiny_run_learns_resumes_and_exports(tmp_path):
    data = write_kaggle_layout(tmp_path / "data")
    config = SegmenterConfig(data=str(data), out_dir=str(tmp_path / "run"), arch="unet-r18-d4", crop=64,
                             batch_size=4, steps=40, lr=3e-3, val_every=10, threads=1, max_minutes=0)
    first = train_segmenter(SegmenterConfig(**{**config.__dict__, "steps": 40}), resume=False)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"]  # the loss falls
    assert first["finished"] and first["step"] == 40
    assert set(first["split"]["validation_groups"]).isdisjoint(
        {f.group for f in load_frames(data, ("R", "G", "B", "NIR"))} - set(first["split"]["validation_groups"]))
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000

    # the weight average is what is validated and exported; the raw weights are kept to resume from
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    key = next(k for k in ckpt["model"] if k.endswith("weight"))
    assert not torch.equal(ckpt["model"][key], ckpt["train_model"][key])

    # resume: a longer schedule continues from step 40 instead of starting again
    resumed = train_segmenter(SegmenterConfig(**{**config.__dict__, "steps": 50}), resume=True)
    assert resumed["step"] == 50
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())) == len(history) + 1

    # warm start: a new run and schedule from the same weights; a different architecture is refused
    warm = train_segmenter(SegmenterConfig(**{**config.__dict__, "steps": 2, "out_dir": str(tmp_path / "warm"),
                                              "init_from": str(tmp_path / "run" / "best.pt")}))
    assert warm["step"] == 2
    start = torch.load(tmp_path / "run" / "best.pt", weights_only=False)["model"][key]
    after = torch.load(tmp_path / "warm" / "last.pt", weights_only=False)["train_model"][key]
    assert (after - start).norm() < 0.2 * start.norm()  # two small steps away, not a fresh initialisation
    # a narrower decoder on the same encoder starts from the wide run's encoder, whole
    half = train_segmenter(SegmenterConfig(**{**config.__dict__, "steps": 1, "lr": 1e-9, "arch": "unet-r18-d4-half",
                                              "out_dir": str(tmp_path / "half"),
                                              "init_from": str(tmp_path / "run" / "best.pt")}))
    assert half["step"] == 1
    stem = "encoder.conv1.weight"
    narrowed = torch.load(tmp_path / "half" / "last.pt", weights_only=False)["train_model"]
    assert narrowed["decoder.blocks.0.conv2.0.weight"].shape[0] == 64
    assert torch.allclose(narrowed[stem], torch.load(tmp_path / "run" / "best.pt", weights_only=False)["model"][stem],
                          atol=1e-6)
    with pytest.raises(InputError, match="neither a unet-regnetx004"):
        train_segmenter(SegmenterConfig(**{**config.__dict__, "arch": "unet-regnetx004",
                                           "out_dir": str(tmp_path / "other"),
                                           "init_from": str(tmp_path / "run" / "best.pt")}))

    # export through the CLI: ONNX with metadata, parity with torch, a model card and warm-start weights
    out = tmp_path / "models"
    proc = subprocess.run(
        [sys.executable, "-m", "deadtree.cli", "export", str(tmp_path / "run" / "best.pt"), "--name", "tiny",
         "--version", "0.0.1", "--out-dir", str(out), "--tile", "64", "--overlap", "16", "--default",
         "--checkpoint-dir", str(out / "checkpoints")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    slim = out / "checkpoints" / "tiny-0.0.1.pt"
    assert slim.stat().st_size < 0.5 * (tmp_path / "run" / "best.pt").stat().st_size
    # the card of a model exported from the slim copy must still know how its frames were prepared
    assert torch.load(slim, weights_only=False)["state"]["frames_prepared"] == FRAMES_PREPARED
    again = train_segmenter(SegmenterConfig(**{**config.__dict__, "steps": 2, "out_dir": str(tmp_path / "again"),
                                               "init_from": str(slim)}))
    assert again["step"] == 2
    from deadtree.runtime.metadata import read_model_info

    info = read_model_info(out / "tiny.onnx")
    assert info.bands == ("R", "G", "B", "NIR") and info.gsd_m == 0.6 and info.tile_size == 64
    assert 0.2 <= info.threshold <= 0.8
    # the peak filter's floor is tuned on the same validation frames and travels with the model
    assert info.min_peak in PEAKS and info.min_peak == info.extra["validation"]["min_peak"]
    assert "peak_held_out_object_f1" in info.extra["validation"]
    # both sides of the split travel with the model, for `deadtree validate`
    training, validation = set(info.extra["training_groups"]), set(info.extra["validation_groups"])
    assert training and validation and training.isdisjoint(validation)
    card = (out / "tiny.md").read_text()
    assert f"| min peak | {info.min_peak:.2f}" in card
    assert "deadtree train segmenter" in card and "pooled dead-class pixel IoU" in card
    assert "prepared as `segment` reads a scene" in card  # the run recorded how its frames were prepared
    assert "Training counties: " + ", ".join(sorted(training)) in card
    assert "parity" not in proc.stdout or "e-0" in proc.stdout

    # faster variants, checked against the fp32 model on the validation frames before they are written
    from deadtree.training.variants import make_variants

    lines = make_variants(out / "tiny.onnx", data, out, max_frames=2)
    assert any(line.startswith("int8: ") for line in lines) and any(line.startswith("fp16: ") for line in lines)
    assert (out / "tiny-fp16.onnx").exists() and (out / "tiny-fp16.md").exists()
    fp16 = read_model_info(out / "tiny-fp16.onnx")
    assert fp16.extra["variant_of"] == "tiny" and fp16.extra["checks"]["max_probability_difference"] <= 1e-2
    assert fp16.tile_size == info.tile_size and not fp16.extra["default"]
    assert fp16.min_peak == info.min_peak


def test_onnx_parity_on_random_input(tmp_path):
    from deadtree.nets.segmenter import build_segmenter
    from deadtree.runtime.metadata import ModelInfo
    from deadtree.training.export import WithSigmoid, export_onnx

    torch.manual_seed(0)
    net = WithSigmoid(build_segmenter("unet-r18-d4", 3))
    info = ModelInfo(name="p", version="0", task="segmenter", bands=("R", "G", "B"), gsd_m=0.6, tile_size=64,
                     overlap=16)
    difference = export_onnx(net, info, tmp_path / "p.onnx", 3, 64)
    assert difference <= 1e-4


def test_state_selection_by_prefix():
    from deadtree.training.frames import name_selected, parse_prefixes

    east = parse_prefixes("AR, MO,TX")
    assert east == ("ar", "mo", "tx")
    assert name_selected("mo109", east) and not name_selected("wa009", east)
    assert name_selected("wa009", parse_prefixes(""))


def test_learning_rate_warms_up_then_decays_to_its_floor():
    from deadtree.training.segmenter_trainer import warmup_cosine

    factors = [warmup_cosine(step, 1000) for step in range(1001)]
    assert factors[0] == pytest.approx(0.1) and max(factors) == pytest.approx(1.0)
    assert factors.index(max(factors)) == 50  # the end of the 5% warm-up
    assert all(a >= b for a, b in zip(factors[50:], factors[51:]))  # then only falls
    assert factors[-1] == pytest.approx(0.01)
    # a schedule lengthened on resume keeps the step's place and just decays more slowly
    assert warmup_cosine(500, 2000) > warmup_cosine(500, 1000)


def test_step_budget_sets_the_schedule_from_the_measured_step_time():
    from deadtree.training.time_budget import StepBudget

    now = [0.0]
    budget = StepBudget(minutes=10, probe_start=10, probe_steps=40, reserve=0.1, clock=lambda: now[0])
    fitted = None
    for step in range(1, 51):
        now[0] += 0.5  # half a second a step
        fitted = budget.fitted_total(step) or fitted
        if step < 50:
            assert fitted is None
    # 600 s * 0.9 = 540 s in all; 25 s gone, 515 s left at 0.5 s a step
    assert fitted == 50 + 1030
    assert budget.fitted_total(51) is None  # fitted once


def test_step_budget_refits_from_the_mean_step_time_since_the_probe():
    from deadtree.training.time_budget import StepBudget

    now = [0.0]
    budget = StepBudget(minutes=10, probe_start=10, probe_steps=40, reserve=0.1, clock=lambda: now[0])
    for step in range(1, 51):
        now[0] += 0.5
        budget.fitted_total(step)
    assert budget.refit(50) is None  # nothing new to time yet
    for step in range(51, 91):
        now[0] += 1.5  # the card got busier after the probe
    # 40 steps since the probe at 0.5 s, 40 at 1.5 s: 1 s a step; 540 - 85 = 455 s left
    assert budget.refit(90) == 90 + 455
    assert StepBudget(minutes=10).refit(500) is None  # no probe, no refit


def _run_on_a_fake_clock(tmp_path, monkeypatch, seconds_at_reading, val_every: int) -> tuple[dict, dict]:
    """A budget-fitted run (a minute) whose budget reads `seconds_at_reading(n)` at its n-th clock reading,
    once a step; the probe times steps 2-7. The real-time stop (110% of the budget) stays far off on a slow
    machine. Returns the summary and the last checkpoint."""
    import functools
    import itertools

    from deadtree.training import segmenter_trainer
    from deadtree.training.time_budget import StepBudget

    readings = itertools.count()
    monkeypatch.setattr(segmenter_trainer, "StepBudget", functools.partial(
        StepBudget, probe_start=2, probe_steps=5, clock=lambda: seconds_at_reading(next(readings))))
    data = write_kaggle_layout(tmp_path / "data")
    config = SegmenterConfig(data=str(data), out_dir=str(tmp_path / "run"), arch="unet-r18-d4", crop=32,
                             batch_size=2, steps=100000, lr=3e-3, val_every=val_every, threads=1, fit_minutes=1.0)
    summary = train_segmenter(config)
    return summary, torch.load(tmp_path / "run" / "last.pt", weights_only=False)


def test_fitted_run_refits_when_its_steps_slow_down_after_the_probe(tmp_path, monkeypatch):
    # a hundredth of a second a step through the probe, then 2 s a step
    summary, ckpt = _run_on_a_fake_clock(tmp_path, monkeypatch, lambda n: n * 0.01 if n <= 7 else 0.07 + (n - 7) * 2.0,
                                         val_every=10)
    refits = ckpt["state"]["refits"]
    planned = 7 + int((60 * 0.88 - 0.07) / 0.01)  # what the probe alone fitted: 5279 steps
    assert refits[0] == {"step": 10, "steps": 10 + int((52.8 - 8.07) / ((8.07 - 0.02) / 8))}  # 54 steps
    assert refits[0]["steps"] < planned / 50
    assert summary["finished"] and summary["step"] == ckpt["config"]["steps"] == refits[-1]["steps"] < 54


def test_fitted_run_is_not_lengthened_once_its_schedule_has_ended(tmp_path, monkeypatch):
    # ten seconds a step through the probe, which alone overruns the budget; quick after it
    summary, ckpt = _run_on_a_fake_clock(tmp_path, monkeypatch, lambda n: n * 10.0 if n <= 7 else 70 + (n - 7) * 0.001,
                                         val_every=0)
    assert summary["finished"] and summary["step"] == 8  # the probe's own fit: one step more, then the end
    assert "refits" not in ckpt["state"]


def test_worker_batches_differ_between_workers_and_match_the_sampler(tmp_path):
    from deadtree.training.sampling import CropBatches

    frames = load_frames(write_kaggle_layout(tmp_path / "data"), ("R", "G", "B"))
    stream = CropBatches(frames, crop=32, positive_fraction=0.5, batch_size=3, seed=[0, 0])
    images, masks = next(iter(stream))
    assert images.shape == (3, 3, 32, 32) and masks.shape == (3, 1, 32, 32)
    assert images.dtype == torch.float32 and bool(torch.isfinite(images).all())
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
    batches = iter(loader)
    first, second = next(batches)[0], next(batches)[0]  # one from each worker
    assert not torch.equal(first, second)
    # distillation's blended targets reach the workers too
    targets = [np.full(f.mask.shape, 0.25, np.float32) for f in frames]
    _, served = next(iter(CropBatches(frames, crop=32, positive_fraction=0.5, batch_size=2, seed=[0, 0],
                                      targets=targets)))
    assert torch.allclose(served, torch.full_like(served, 0.25))


def test_augmented_crops_repeat_with_the_seed_and_change_without_it(tmp_path):
    from deadtree.training.augment import training_augmentation
    from deadtree.training.sampling import CropSampler

    frames = load_frames(write_kaggle_layout(tmp_path / "data"), ("R", "G", "B"))

    def crops(seed):
        return CropSampler(frames, 32, 0.5, training_augmentation("strong"), seed=seed).sample(6)[0]

    assert np.array_equal(crops(3), crops(3))  # a rerun of a training command sees the same crops
    assert not np.array_equal(crops(3), crops(4))


def test_a_training_command_run_twice_gives_the_same_weights(tmp_path):
    data = write_kaggle_layout(tmp_path / "data")
    weights = []
    for name in ("first", "again"):
        train_segmenter(SegmenterConfig(data=str(data), out_dir=str(tmp_path / name), arch="unet-r18-d4", crop=64,
                                        batch_size=2, steps=4, lr=3e-3, val_every=4, threads=1))
        weights.append(torch.load(tmp_path / name / "last.pt", weights_only=False)["train_model"])
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_fitted_run_sets_its_steps_and_records_them(tmp_path, monkeypatch):
    import functools

    from deadtree.training import segmenter_trainer
    from deadtree.training.time_budget import StepBudget

    # a short probe, so that a slow test machine still fits the run well inside its budget
    monkeypatch.setattr(segmenter_trainer, "StepBudget", functools.partial(StepBudget, probe_start=2, probe_steps=5))
    data = write_kaggle_layout(tmp_path / "data")
    config = SegmenterConfig(data=str(data), out_dir=str(tmp_path / "run"), arch="unet-r18-d4", crop=32,
                             batch_size=2, steps=100000, lr=3e-3, val_every=0, threads=1, fit_minutes=0.1,
                             workers=1)
    summary = train_segmenter(config)
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert 7 < ckpt["config"]["steps"] < 100000  # the budget, not the asked-for length, set the schedule
    assert summary["step"] <= ckpt["config"]["steps"]
    assert ckpt["config"]["workers"] == 1 and "GPU" not in ckpt["state"]["machine"]

    assert f"--steps {ckpt['config']['steps']}" in segmenter_command(ckpt["config"])


def test_weight_decay_is_passed_on_and_reproduced(tmp_path):
    from typer.testing import CliRunner

    from deadtree.cli import app

    data = write_kaggle_layout(tmp_path / "data")
    result = CliRunner().invoke(app, ["train", "segmenter", str(data), "--out-dir", str(tmp_path / "run"),
                                      "--steps", "1", "--batch-size", "2", "--crop", "64", "--val-every", "1",
                                      "--threads", "1", "--weight-decay", "0.05"])
    assert result.exit_code == 0, result.output
    config = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["config"]
    assert config["weight_decay"] == 0.05
    assert "--weight-decay 0.05" in segmenter_command(config)
    assert "--weight-decay" not in segmenter_command({**config, "weight_decay": 1e-4})


def test_training_needs_no_geospatial_libraries():
    # A lent GPU machine has torch but not rasterio or shapely: training and its metrics must not import them.
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('rasterio', 'shapely', 'pyproj', 'geopandas', 'pyogrio'):\n"
            "            raise ImportError(name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import deadtree.training.segmenter_trainer, deadtree.training.slim, deadtree.peak_filter\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_strong_augmentation_shifts_bands_apart_and_unknown_kinds_are_refused():
    from deadtree.training.augment import training_augmentation

    image = np.full((32, 32, 4), 120, dtype=np.uint8)
    mask = np.zeros((32, 32), dtype=np.uint8)
    spreads = []
    for seed in range(20):
        np.random.seed(seed)
        out = training_augmentation("strong")(image=image, mask=mask)["image"]
        spreads.append(int(np.ptp(out.reshape(-1, 4).mean(axis=0))))
    assert max(spreads) > 5  # bands moved apart: a gain per band, which "standard" never applies
    with pytest.raises(InputError, match="unknown --augmentation"):
        training_augmentation("wild")


def test_distillation_learns_the_teachers_mean_beside_the_masks(tmp_path):
    from typer.testing import CliRunner

    from deadtree.cli import app
    from deadtree.training.distill import CACHE_NAME, blended_target
    from deadtree.training.sampling import CropSampler

    data = write_kaggle_layout(tmp_path / "data")
    base = SegmenterConfig(data=str(data), out_dir=str(tmp_path / "teacher"), arch="unet-r18-d4", crop=64,
                           batch_size=2, steps=3, val_every=3, threads=1)
    train_segmenter(base)
    teacher = tmp_path / "teacher" / "best.pt"
    rgb = train_segmenter(SegmenterConfig(**{**base.__dict__, "out_dir": str(tmp_path / "rgb"),
                                             "bands": ("R", "G", "B")}))
    assert rgb["step"] == 3

    # two teachers of different bands; each sees the frames in its own bands
    runner = CliRunner()
    args = ["train", "segmenter", str(data), "--out-dir", str(tmp_path / "student"), "--steps", "2",
            "--batch-size", "2", "--crop", "64", "--val-every", "2", "--threads", "1",
            "--teacher", str(teacher), "--teacher", str(tmp_path / "rgb" / "best.pt"), "--distill-weight", "0.4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    config = torch.load(tmp_path / "student" / "last.pt", weights_only=False)["config"]
    assert config["distill_weight"] == 0.4 and len(config["teachers"]) == 2
    assert f"--teacher {teacher}" in segmenter_command(config) and "--distill-weight 0.4" in segmenter_command(config)
    from deadtree.training.model_card import distillation_lines

    assert "0.6 x the expert mask + 0.4 x the mean probability of 2 teacher" in distillation_lines(config)[0]
    assert distillation_lines({**config, "teachers": []}) == []

    # the cached soft targets are the mean of the teachers' probabilities on the training frames only
    stored = np.load(tmp_path / "student" / CACHE_NAME)
    val = set(json.loads((tmp_path / "student" / "split.json").read_text())["validation_groups"])
    ids = [f for f in stored.files if f != "teachers"]
    assert ids and not any(county_of(i) in val for i in ids)
    soft = stored[ids[0]]
    assert soft.dtype == np.uint8 and 0 < soft.mean() < 255

    # the cache answers a resumed run without predicting again, but not a run checked against other counties
    from deadtree.nets import segmenter as nets
    from deadtree.training.distill import teacher_probabilities

    def no_prediction(*_):
        raise AssertionError("predicted again")

    train = [f for f in load_frames(data, ("R", "G", "B", "NIR")) if f.group not in val]
    teachers = [str(teacher), str(tmp_path / "rgb" / "best.pt")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nets, "load_segmenter", no_prediction)
        cached = teacher_probabilities(teachers, train, val, None, tmp_path / "student")
        assert np.array_equal(cached[ids[0]], soft)
        with pytest.raises(AssertionError, match="predicted again"):
            teacher_probabilities(teachers, train, val | {"tx999"}, None, tmp_path / "student")

    # blending: the mask keeps (1 - weight) of the say, and the sampler serves the blend
    mask = np.array([[True, False]])
    assert np.allclose(blended_target(mask, np.array([[0, 255]], np.uint8), 0.4), [[0.6, 0.4]])
    targets = [np.full(f.mask.shape, 0.25, np.float32) for f in train]
    _, served = CropSampler(train, 32, 0.5, None, targets=targets).sample(3)
    assert np.allclose(served, 0.25)

    # a teacher validated on other counties may have trained on this run's validation counties: refused
    ckpt = torch.load(teacher, weights_only=False)
    ckpt["split"]["validation_groups"] = ["ar001"]
    torch.save(ckpt, tmp_path / "leaky.pt")
    result = runner.invoke(app, [*args[:4], str(tmp_path / "leaky"), *args[5:11], "--teacher",
                                 str(tmp_path / "leaky.pt")])
    assert result.exit_code != 0 and "other counties" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("change,words", [
    ({"steps": 0}, "--steps and --batch-size"), ({"batch_size": 0}, "--steps and --batch-size"),
    ({"crop": 50}, "--crop must be a positive multiple of 32"), ({"lr": -1.0}, "--lr must be above 0"),
    ({"arch": "unet-nope"}, "unknown --arch 'unet-nope'"), ({"val_fraction": 1.5}, "--val-fraction"),
    ({"ema_decay": 1.0}, "--ema"), ({"workers": -1}, "cannot be negative"),
])
def test_bad_training_options_are_refused_before_any_frame_is_read(tmp_path, change, words):
    config = SegmenterConfig(**{"data": str(tmp_path / "no-data-here"), "out_dir": str(tmp_path / "run"), **change})
    with pytest.raises(InputError, match=words):
        train_segmenter(config)
    assert not (tmp_path / "run").exists()
