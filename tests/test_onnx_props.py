from pathlib import Path

import onnx
import pytest

from deadtree.errors import ModelError
from deadtree.runtime.metadata import read_model_info
from deadtree.runtime.onnx_props import NotProtobuf, metadata_props

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


@pytest.mark.parametrize("path", sorted(MODELS_DIR.glob("*.onnx")), ids=lambda p: p.name)
def test_every_shipped_models_properties_read_as_onnx_reads_them(path):
    model = onnx.load(str(path), load_external_data=False)
    assert metadata_props(path) == {p.key: p.value for p in model.metadata_props}


def test_properties_after_the_graph_and_unicode_values(tmp_path):
    from tests.scenes import toy_model

    path = toy_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"deadtree": model.metadata_props[0].value, "note": "Totholz – ½ m"})
    model.doc_string = "x" * 300  # a long field of its own, stepped over
    onnx.save(model, str(path))
    assert metadata_props(path)["note"] == "Totholz – ½ m"


@pytest.mark.parametrize("content", [b"", b"\x0a\xff\xff\xff\xff\x0f", b"\x0f", b"\x08\x80\x80"])
def test_damaged_files_raise(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(NotProtobuf):
        metadata_props(path)


def test_a_truncated_model_is_a_model_error(tmp_path):
    good = sorted(MODELS_DIR.glob("*.onnx"))[0].read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelError, match="not a readable ONNX model|has no 'deadtree' metadata"):
        read_model_info(path)
