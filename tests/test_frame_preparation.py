"""Training must see a frame exactly as `segment` sees the same pixels as a scene: the fill at its edges left
out of the stretch and shown to the model as the valid pixels' median."""
import numpy as np

from deadtree.evaluation.domain_study import write_frame_scene
from deadtree.raster.reader import overview
from deadtree.raster.scene import open_scene
from deadtree.raster.normalise import band_percentiles, stretch_and_medians
from deadtree.training.frames import Frame, as_scene, frame_input
from deadtree.training.sampling import CropSampler

BANDS = ("R", "G", "B", "NIR")


def _rimmed_frame(rows=70, cols=60, seed=3) -> Frame:
    """A frame with the USA set's black rims: the first and last row and the first column all zero, and a
    dark but real pixel inside (zero in one band only, so not fill)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(40, 220, size=(rows, cols, 4), dtype=np.uint8)
    image[0], image[-1], image[:, 0] = 0, 0, 0
    image[30, 30, 0] = 0
    return Frame("ar001_x", "ar001", image, np.zeros((rows, cols), bool))


def test_fill_is_left_out_of_the_stretch_and_set_to_the_valid_median():
    frame = _rimmed_frame()
    image, stretch = as_scene(frame)
    fill = np.zeros(frame.mask.shape, bool)
    fill[0], fill[-1], fill[:, 0] = True, True, True
    inner = frame.image[~fill].T[:, :, None]
    expected = band_percentiles(inner)
    np.testing.assert_allclose(stretch.low, expected.low)
    np.testing.assert_allclose(stretch.high, expected.high)
    assert stretch.low != band_percentiles(frame.image.transpose(2, 0, 1)).low  # the rim would pull it down
    medians = np.median(frame.image[~fill], axis=0)
    np.testing.assert_array_equal(image[0, 5], np.round(medians).astype(np.uint8))
    assert image[30, 30, 0] == 0  # a dark pixel inside the frame is image, not fill
    np.testing.assert_array_equal(image[~fill], frame.image[~fill])
    assert frame.image[0].max() == 0  # the frame itself is left as it was


def test_training_input_matches_what_segment_reads_from_the_same_pixels(tmp_path):
    frame = _rimmed_frame()
    scene = open_scene(write_frame_scene(frame.image, BANDS, tmp_path / "frame.tif"), BANDS)
    try:
        pixels, valid, _ = overview(scene, BANDS)
    finally:
        scene.close()
    stretch, medians = stretch_and_medians(pixels, valid)
    expected = stretch.apply(pixels)
    expected[:, ~valid] = stretch.apply(medians[:, None, None].astype(np.float32))[:, :, 0]
    rows, cols = frame.mask.shape
    got = frame_input(frame)[0, :, :rows, :cols]
    # the fill holds the median rounded to the image's integers; segment uses it unrounded
    np.testing.assert_allclose(got, expected, atol=0.5 / (np.array(stretch.high) - stretch.low).min())
    np.testing.assert_array_equal(got[:, valid], expected[:, valid])


def test_training_crops_come_from_the_prepared_frames():
    frame = _rimmed_frame()
    sampler = CropSampler([frame], crop=frame.mask.shape[1], positive_fraction=0.0, augment=None)
    crop, _ = sampler.sample(1)
    prepared, stretch = as_scene(frame)
    assert crop.shape[1:] == (4, frame.mask.shape[1], frame.mask.shape[1])
    # the whole width is cropped, so column 0 of the crop is the frame's rim, now the median, never black
    assert (crop[0, :, :, 0] > stretch.apply(np.zeros((4, 1, 1), np.uint8)).reshape(4, 1)).all()
