"""--preview: a decimated, stretched quicklook PNG with the polygon outlines drawn in yellow."""
import numpy as np
import pyogrio
import pytest
import shapely
from PIL import Image
from typer.testing import CliRunner

from deadtree.cli import app
from deadtree.errors import InputError
from deadtree.pipeline import SegmentOptions, segment_scene
from deadtree.preview import OUTLINE_RGBA, write_preview
from deadtree.raster.scene import open_scene
from tests.scenes import write_scene

YELLOW = np.array(OUTLINE_RGBA)


def test_preview_outlines_the_polygons_on_the_scene(tmp_path, toy_models):
    scene = tmp_path / "scene.tif"
    write_scene(scene, height=300, width=260)
    result = segment_scene(scene, SegmentOptions(output=tmp_path / "o.geojson", gpkg=tmp_path / "o.gpkg",
                                                 preview=tmp_path / "p.png"))
    assert result.outputs["preview"] == tmp_path / "p.png"
    image = np.asarray(Image.open(tmp_path / "p.png"))
    assert image.shape == (300, 260, 4)  # small scenes are not enlarged
    is_outline = (image == YELLOW).all(axis=-1)
    polygons = pyogrio.read_dataframe(tmp_path / "o.gpkg", layer="dead_trees")
    assert len(polygons) == result.polygons >= 3
    to_pixel = ~result_transform(scene)
    hits = total = 0
    for geom in polygons.geometry:
        cols, rows = to_pixel @ tuple(shapely.get_coordinates(geom).T)
        for c, r in zip(cols, rows):
            # vertices lie on pixel corners: the 1-px line covers one of the four pixels around each
            total += 1
            hits += is_outline[int(r) - 1:int(r) + 1, int(c) - 1:int(c) + 1].any()
        centre = geom.representative_point()
        c, r = to_pixel @ (centre.x, centre.y)
        assert not is_outline[int(r), int(c)]  # outlines only, no fill
    assert hits == total > 0
    assert image[..., 3].min() == 255  # no nodata in this scene


def result_transform(path):
    import rasterio

    with rasterio.open(path) as ds:
        return ds.transform


def test_preview_of_a_large_scene_is_decimated_to_the_longest_side(tmp_path):
    scene_path = tmp_path / "scene.tif"
    write_scene(scene_path, height=300, width=260, nodata=0, border=10)
    scene = open_scene(scene_path)
    try:
        size = write_preview(tmp_path / "p.png", scene, None, "nir", max_side=100)
    finally:
        scene.close()
    image = np.asarray(Image.open(tmp_path / "p.png"))
    assert size == (87, 100) and image.shape == (100, 87, 4)
    assert image[0, 0, 3] == 0 and image[50, 43, 3] == 255  # the nodata border is transparent
    assert np.ptp(image[20:80, 20:60, :3]) > 100  # stretched, not a flat grey


def test_nir_preview_of_an_rgb_scene_fails_before_the_model_runs(tmp_path, toy_models):
    scene = tmp_path / "rgb.tif"
    write_scene(scene, bands=3)
    with pytest.raises(InputError, match="NIR"):
        segment_scene(scene, SegmentOptions(output=tmp_path / "o.geojson", preview=tmp_path / "p.png",
                                            preview_bands="nir"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "rgb.tif"]


def test_cli_writes_preview_and_qml(tmp_path, toy_models):
    scene = tmp_path / "scene.tif"
    write_scene(scene)
    result = CliRunner().invoke(app, ["segment", str(scene), "-o", str(tmp_path / "o.geojson"), "--qml",
                                      "--preview", str(tmp_path / "p.png"), "--preview-bands", "nir", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o.qml").is_file() and Image.open(tmp_path / "p.png").size == (260, 300)
