"""Float models on an x86 CPU: the decoder kept in ONNX Runtime's blocked layout (constant-scale upsampling, skip
concatenations as sums of convolutions), used only where it answers as ONNX Runtime's own graph does."""
import collections

import numpy as np
import onnx
import pytest

from deadtree.runtime import blocked_float, channels_last, tidied_cache
from deadtree.runtime.registry import resolve_model
from deadtree.runtime.session import OnnxModel, Plan, graph_optimization


@pytest.fixture
def fp32(monkeypatch):
    monkeypatch.setattr(channels_last, "_OUTCOMES", {})
    monkeypatch.setenv("DEADTREE_GRAPH_OPTIMIZATION", "tidied")
    return resolve_model("deadtree-rgbn", "segmenter")


def own_graph(path, monkeypatch) -> OnnxModel:
    monkeypatch.setenv("DEADTREE_GRAPH_OPTIMIZATION", "all")
    return OnnxModel(path, "cpu")


def test_float_models_on_x86_cpus_are_tidied_and_nowhere_else(monkeypatch):
    import onnxruntime as ort

    monkeypatch.delenv("DEADTREE_GRAPH_OPTIMIZATION", raising=False)
    full = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    for extensions in ("AVX2", "AVX-512 VNNI, AVX-512, AVX2"):
        assert graph_optimization(ort, False, True, extensions) == Plan(full, tidied=True)
    assert graph_optimization(ort, False, True, "no AVX2") == Plan(full)  # "AVX2" is in that text, not the list
    assert graph_optimization(ort, False, False, "AVX-512 VNNI, AVX-512, AVX2") == Plan(full)  # GPUs


def test_the_rewrite_keeps_the_arithmetic_and_drops_the_decoder_joins(fp32):
    model = onnx.load(fp32)
    before = collections.Counter(n.op_type for n in model.graph.node)
    sized = sum(n.op_type == "Resize" and len(n.input) > 3 and bool(n.input[3]) for n in model.graph.node)
    assert blocked_float.rewrite_float(model) == sized + 3
    after = collections.Counter(n.op_type for n in model.graph.node)
    # the decoder's three upsamplings have constant scales now; the head's bilinear one is left as it was
    assert sized == 3 and after["Resize"] == before["Resize"] == 4
    assert not [n for n in model.graph.node if n.op_type == "Resize" and len(n.input) > 3 and n.input[3]]
    # the three skip concatenations read by a convolution: each a convolution more, and an addition
    assert after["Conv"] == before["Conv"] + 3 and after["Add"] == before["Add"] + 3
    assert after["Concat"] < before["Concat"]
    kernels = {t.name: t for t in model.graph.initializer}
    weights_before = sum(np.prod(t.dims) for t in onnx.load(fp32).graph.initializer if len(t.dims) == 4)
    assert sum(np.prod(t.dims) for t in kernels.values() if len(t.dims) == 4) == weights_before
    onnx.checker.check_model(model)


def test_the_blocked_graph_answers_as_onnx_runtime_own_does(fp32, monkeypatch):
    tidied = OnnxModel(fp32, "cpu")
    assert channels_last.runs_tidied(tidied.session)
    plain = own_graph(fp32, monkeypatch)
    assert not channels_last.runs_tidied(plain.session)
    tile = np.random.default_rng(1).random((2, 4, 512, 384), dtype=np.float32)
    got, expected = tidied.run(tile), plain.run(tile)
    assert np.abs(got - expected).max() <= blocked_float.FLOAT_TOLERANCE
    assert np.array_equal(got > 0.5, expected > 0.5)
    # sides off the multiple of 32 that constant doubling needs go to ONNX Runtime's own graph
    odd = np.random.default_rng(2).random((1, 4, 50, 70), dtype=np.float32)
    assert np.array_equal(tidied.run(odd), plain.run(odd))


def test_a_float_rewrite_that_changes_the_answers_is_not_used(fp32, monkeypatch):
    real = blocked_float.split_concatenated_convs

    def parts_swapped(model):  # where two parts are the same size, the filters meet the wrong tensors
        done = real(model)
        dims = {t.name: list(t.dims) for t in model.graph.initializer}
        convs = {n.name: n for n in model.graph.node if n.op_type == "Conv"}
        for name, second in convs.items():
            first = convs.get(name[:-len("/part1")] + "/part0") if name.endswith("/part1") else None
            if first is not None and dims[first.input[1]] == dims[second.input[1]]:
                first.input[0], second.input[0] = second.input[0], first.input[0]
        return done

    monkeypatch.setattr(blocked_float, "split_concatenated_convs", parts_swapped)
    checked = []
    real_check = channels_last.same_answers
    monkeypatch.setattr(channels_last, "same_answers",
                        lambda a, b, tolerance=0.0: checked.append(real_check(a, b, tolerance)) or checked[-1])
    model = OnnxModel(fp32, "cpu")
    assert not channels_last.runs_tidied(model.session)
    assert checked == [False]
    assert len(list(tidied_cache.cache_folder().glob("*.refused"))) == 1


def test_a_later_process_opens_the_saved_float_graph(fp32, monkeypatch):
    first = OnnxModel(fp32, "cpu")
    assert len(list(tidied_cache.cache_folder().glob("*.onnx"))) == 1
    monkeypatch.setattr(channels_last, "_OUTCOMES", {})

    def no_rewriting(model):
        raise AssertionError("rewritten again although the outcome was on disk")

    monkeypatch.setattr(blocked_float, "rewrite_float", no_rewriting)
    later = OnnxModel(fp32, "cpu")
    assert channels_last.runs_tidied(later.session)
    tile = np.random.default_rng(3).random((1, 4, 256, 192), dtype=np.float32)
    assert np.array_equal(later.run(tile), first.run(tile))


def _small_unet() -> onnx.ModelProto:
    """A one-level U-Net as exporters write it: the upsampling's size read from the skip connection at run
    time, an Identity between the concatenation and its convolution, and that convolution's weights stored as
    float16 behind a Cast (deadtree.training.half_weights)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)

    def weights(name, *shape, dtype=np.float32):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(dtype), name)

    nodes = [
        helper.make_node("Conv", ["x", "w_skip"], ["skip_conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["skip_conv"], ["skip"]),
        helper.make_node("MaxPool", ["skip"], ["down"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["down", "w_deep"], ["deep_conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["deep_conv"], ["deep"]),
        helper.make_node("Shape", ["skip"], ["skip_shape"]),
        helper.make_node("Resize", ["deep", "", "", "skip_shape"], ["up"], mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Concat", ["up", "skip"], ["joined"], axis=1),
        helper.make_node("Identity", ["joined"], ["attended"]),
        helper.make_node("Cast", ["w_out_half"], ["w_out"], to=TensorProto.FLOAT),
        helper.make_node("Conv", ["attended", "w_out", "b_out"], ["logit"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes, "small-unet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, "rows", "cols"])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1, "rows", "cols"])],
        [weights("w_skip", 16, 4, 3, 3), weights("w_deep", 16, 16, 3, 3),
         weights("w_out_half", 1, 32, 3, 3, dtype=np.float16), weights("b_out", 1)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_weights_behind_casts_and_identities_are_split_too():
    import onnxruntime as ort

    model = _small_unet()
    original = model.SerializeToString()
    assert blocked_float.rewrite_float(model) == 2  # the upsampling, and the convolution over the concatenation
    ops = collections.Counter(n.op_type for n in model.graph.node)
    assert ops["Concat"] == 0 and ops["Identity"] == 0 and ops["Conv"] == 4 and ops["Add"] == 1
    onnx.checker.check_model(model)
    tile = np.random.default_rng(6).random((2, 4, 64, 96), dtype=np.float32)
    answers = [ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, {"x": tile})[0]
               for m in (original, model.SerializeToString())]
    assert np.abs(answers[0] - answers[1]).max() <= blocked_float.FLOAT_TOLERANCE
