import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from deadtree.runtime.metadata import ModelInfo
from deadtree.training import half_weights
from deadtree.training.export import export_onnx
from deadtree.training.half_weights import expand_half_weights


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(4, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 1, 3, padding=1), nn.Sigmoid())


def info():
    return ModelInfo(name="t", version="0", task="segmenter", bands=("R", "G", "B", "NIR"), gsd_m=0.6,
                     tile_size=32, overlap=8, threshold=0.5, scaling={}, input_range=(0.0, 1.0))


def run(model_or_path, x):
    data = model_or_path.SerializeToString() if isinstance(model_or_path, onnx.ModelProto) else str(model_or_path)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_models_over_the_size_limit_store_half_weights_and_compute_the_same(tmp_path, monkeypatch):
    x = np.random.default_rng(0).random((1, 4, 32, 32), dtype=np.float32)
    full = tmp_path / "full.onnx"
    assert export_onnx(small_net(), info(), full, 4, 32) <= 1e-4

    monkeypatch.setattr(half_weights, "MAX_MODEL_BYTES", 2_000)  # the net: 1473 floats, 5.9 kB
    half = tmp_path / "half.onnx"
    assert export_onnx(small_net(), info(), half, 4, 32) <= 1e-4  # parity against the rounded torch weights
    assert half.stat().st_size < 0.7 * full.stat().st_size
    stored = onnx.load(str(half))
    kinds = {i.name: i.data_type for i in stored.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in kinds.values()
    # rounding the weights to half precision moves the answers a little, not a lot
    difference = np.abs(run(half, x) - run(full, x)).max()
    assert 0 < difference < 1e-2

    expanded = expand_half_weights(stored)
    assert all(i.data_type == onnx.TensorProto.FLOAT for i in expanded.graph.initializer)
    assert not any(n.op_type == "Cast" for n in expanded.graph.node)
    np.testing.assert_allclose(run(expanded, x), run(half, x), atol=1e-6)


def test_small_models_keep_float32_weights(tmp_path):
    path = tmp_path / "m.onnx"
    export_onnx(small_net(), info(), path, 4, 32)
    model = onnx.load(str(path))
    assert all(i.data_type == onnx.TensorProto.FLOAT for i in model.graph.initializer)
    assert expand_half_weights(model) is model


@pytest.mark.parametrize("limit,expected", [(None, False), (1000, True)])
def test_the_limit_decides(limit, expected):
    assert half_weights.needs_half_storage(small_net(), limit) is expected


def test_weights_from_a_slim_checkpoint_are_stored_half_without_loss(tmp_path):
    x = np.random.default_rng(1).random((1, 4, 32, 32), dtype=np.float32)
    net = small_net()
    half_weights.round_weights_to_half(net)  # what a slim checkpoint's weights are
    plain = tmp_path / "plain.onnx"
    assert export_onnx(net, info(), plain, 4, 32) <= 1e-4
    stored = onnx.load(str(plain))
    assert onnx.TensorProto.FLOAT16 in {i.data_type for i in stored.graph.initializer}
    expanded = expand_half_weights(stored)
    torch_out = net(torch.from_numpy(x)).detach().numpy()
    # nothing was rounded: the half-stored file computes what the torch module does
    np.testing.assert_allclose(run(plain, x), torch_out, atol=1e-6)
    np.testing.assert_allclose(run(expanded, x), run(plain, x), atol=0)
    # a tensor off the float16 grid keeps the whole model in float32
    model = expanded
    assert half_weights.exact_in_half(model)
    big = next(i for i in model.graph.initializer if np.prod(i.dims) >= half_weights.MIN_ELEMENTS)
    values = onnx.numpy_helper.to_array(big).copy()
    values.flat[0] += 1e-4
    big.CopyFrom(onnx.numpy_helper.from_array(values, big.name))
    assert not half_weights.exact_in_half(model)
