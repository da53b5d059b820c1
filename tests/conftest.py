from __future__ import annotations

import pytest

from tests.scenes import GEOTIFF_DIR, USA_DIR, toy_model


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Each test starts with an empty deadtree cache of its own, never the user's (~/.cache/deadtree)."""
    monkeypatch.setenv("DEADTREE_CACHE_DIR", str(tmp_path_factory.mktemp("deadtree-cache")))


@pytest.fixture
def toy_models(tmp_path, monkeypatch):
    """A model folder with toy RGB+NIR and RGB segmenters, used instead of the shipped models."""
    folder = tmp_path / "models"
    folder.mkdir()
    toy_model(folder / "toy-rgbn.onnx")
    toy_model(folder / "toy-rgb.onnx", bands=("R", "G", "B"), name="toy-rgb")
    monkeypatch.setenv("DEADTREE_MODELS", str(folder))
    return folder


@pytest.fixture
def geotiff_dir():
    if not GEOTIFF_DIR.is_dir():
        pytest.skip(f"real GeoTIFFs not found at {GEOTIFF_DIR} (../shared is beside the clone only in CI)")
    return GEOTIFF_DIR


@pytest.fixture
def usa_dir():
    if not USA_DIR.is_dir():
        pytest.skip(f"USA dead-tree data not found at {USA_DIR} (../shared is beside the clone only in CI)")
    return USA_DIR
