"""Execution-provider choice, as onnxruntime-gpu presents it, on machines with and without TensorRT."""
import pytest

from deadtree.errors import ModelError
from deadtree.runtime.session import choose_providers

GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
CPU_BUILD = ["CPUExecutionProvider"]


def test_auto_prefers_tensorrt_then_cuda_where_tensorrt_is_installed():
    assert choose_providers("auto", GPU_BUILD, tensorrt_loads=True) == GPU_BUILD


def test_auto_skips_a_listed_tensorrt_whose_library_is_missing():
    assert choose_providers("auto", GPU_BUILD, tensorrt_loads=False) == GPU_BUILD[1:]


def test_tensorrt_asked_for_without_its_library_names_what_is_missing():
    with pytest.raises(ModelError, match="libnvinfer.*--device cuda"):
        choose_providers("tensorrt", GPU_BUILD, tensorrt_loads=False)


def test_tensorrt_asked_for_with_its_library_keeps_the_cpu_for_unsupported_nodes():
    assert choose_providers("tensorrt", GPU_BUILD, tensorrt_loads=True) == [GPU_BUILD[0], GPU_BUILD[2]]


@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_a_gpu_asked_of_the_cpu_build_is_an_error_not_a_fallback(device):
    with pytest.raises(ModelError, match="onnxruntime-gpu"):
        choose_providers(device, CPU_BUILD, tensorrt_loads=False)


def test_auto_on_the_cpu_build_and_unknown_devices():
    assert choose_providers("auto", CPU_BUILD) == CPU_BUILD
    with pytest.raises(ModelError, match="unknown device"):
        choose_providers("gpu", GPU_BUILD, tensorrt_loads=True)


def test_cudnn_search_defaults_to_heuristic_and_rejects_unknown_values(monkeypatch):
    from deadtree.runtime.session import ENV_CUDNN_SEARCH, cuda_options

    monkeypatch.delenv(ENV_CUDNN_SEARCH, raising=False)
    assert cuda_options() == {"cudnn_conv_algo_search": "HEURISTIC"}
    monkeypatch.setenv(ENV_CUDNN_SEARCH, "exhaustive")
    assert cuda_options() == {"cudnn_conv_algo_search": "EXHAUSTIVE"}
    monkeypatch.setenv(ENV_CUDNN_SEARCH, "fastest")
    with pytest.raises(ModelError, match="EXHAUSTIVE, HEURISTIC or DEFAULT"):
        cuda_options()


def test_gpu_library_preloading_never_stops_a_session_nor_prints(capsys):
    from types import SimpleNamespace

    from deadtree.runtime.session import preload_gpu_libraries

    calls = []

    def failing():
        calls.append(1)
        raise OSError("libcudnn.so.9: cannot open shared object file")

    def chatty():  # as onnxruntime's own, which prints every library it cannot load
        calls.append(2)
        print("Failed to load libcublasLt.so.13: cannot open shared object file")

    preload_gpu_libraries(SimpleNamespace(preload_dlls=failing))
    preload_gpu_libraries(SimpleNamespace())  # onnxruntime before 1.21 has no preload_dlls
    preload_gpu_libraries(SimpleNamespace(preload_dlls=chatty))
    assert calls == [1, 2]
    assert capsys.readouterr().out == ""  # stdout carries the CLI's answer, not loader noise


def test_auto_says_so_when_a_listed_gpu_provider_falls_back_to_the_cpu(monkeypatch, caplog, tmp_path):
    """onnxruntime-gpu without its CUDA libraries falls back to the CPU by itself; that must not pass unnoticed."""
    import logging

    import onnxruntime

    from tests.scenes import toy_model
    from deadtree.runtime.session import OnnxModel

    path = toy_model(tmp_path / "toy.onnx")
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with caplog.at_level(logging.WARNING, logger="deadtree"):
        model = OnnxModel(path, "auto")
    assert model.provider == "CPUExecutionProvider"
    assert "could not start it" in caplog.text and "CUDAExecutionProvider" in caplog.text
    with pytest.raises(ModelError, match="could not start CUDAExecutionProvider and fell back"):
        OnnxModel(path, "cuda")


def test_int8_models_keep_their_layout_on_cpus_without_vnni_and_run_a_tidied_channels_last_graph_with_it(monkeypatch):
    import numpy as np
    import onnxruntime as ort

    from deadtree.runtime.registry import resolve_model
    from deadtree.runtime.session import OnnxModel, Plan, graph_optimization

    level = ort.GraphOptimizationLevel
    full = Plan(level.ORT_ENABLE_ALL)
    assert graph_optimization(ort, True, True, "AVX2") == Plan(level.ORT_ENABLE_ALL, ("NhwcTransformer",))
    for extensions in ("AVX-512 VNNI, AVX-512, AVX2", "AVX-VNNI, AVX2"):
        assert graph_optimization(ort, True, True, extensions) == Plan(level.ORT_ENABLE_ALL, tidied=True)
    assert graph_optimization(ort, True, False, "AVX2") == full
    assert graph_optimization(ort, True, False, "AVX-512 VNNI") == full
    # what `segment` opens follows the rule for this host, for the int8 variant and its float parent alike
    for name, quantized in (("deadtree-rgbn-int8", True), ("deadtree-rgbn", False)):
        model = OnnxModel(resolve_model(name, "segmenter"), "cpu")
        assert model.graph_optimization == graph_optimization(ort, quantized, True)
        assert model.session.get_session_options().graph_optimization_level == level.ORT_ENABLE_ALL
    # keeping the layout changes the speed, not the answer: the same probabilities as the full optimisation
    tile = np.random.default_rng(0).random((1, 4, 256, 256), dtype=np.float32)
    int8 = str(resolve_model("deadtree-rgbn-int8", "segmenter"))
    answers = [ort.InferenceSession(int8, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
               .run(None, {"image": tile})[0] for disabled in ([], ["NhwcTransformer"])]
    assert np.abs(answers[0] - answers[1]).max() <= 1e-6
    # the environment overrides the rule, and a wrong value is a clear error
    monkeypatch.setenv("DEADTREE_GRAPH_OPTIMIZATION", "all")
    assert graph_optimization(ort, True, True, "AVX2") == full
    monkeypatch.setenv("DEADTREE_GRAPH_OPTIMIZATION", "tidied")
    assert graph_optimization(ort, True, True, "AVX2") == Plan(level.ORT_ENABLE_ALL, tidied=True)
    monkeypatch.setenv("DEADTREE_GRAPH_OPTIMIZATION", "extended")
    assert graph_optimization(ort, True, True, "AVX2") == Plan(level.ORT_ENABLE_EXTENDED)
    monkeypatch.setenv("DEADTREE_GRAPH_OPTIMIZATION", "fast")
    with pytest.raises(ModelError, match="auto, all, tidied, extended, keep-layout"):
        graph_optimization(ort, True, True, "AVX2")


def test_the_tidied_channels_last_graph_drops_its_waste_and_answers_bit_for_bit(monkeypatch):
    """ONNX Runtime's channels-last int8 graph with its decoder Resizes done as copies, its shapes read
    without dequantized copies, its stem pooled in uint8 channels-last, its five-filter head widened and its
    skip concatenations split into requantizations and copies: the
    same probabilities to the bit as ONNX Runtime's own full optimisation, on
    a tile of the pipeline's shape."""
    import collections

    import numpy as np

    from deadtree.runtime.vnni_int8 import channels_last
    from deadtree.runtime.registry import resolve_model
    from deadtree.runtime.session import OnnxModel

    int8 = resolve_model("deadtree-rgbn-int8", "segmenter")
    before, after = [], []
    real = channels_last.tidy

    narrow_convs, joins = [], []

    def counting(model):
        before.append(collections.Counter(n.op_type for n in model.graph.node))
        narrow_convs.append(_narrow_convs(model.graph))
        done = real(model)
        after.append(collections.Counter(n.op_type for n in model.graph.node))
        narrow_convs.append(_narrow_convs(model.graph))
        joins.extend(len(n.input) for n in model.graph.node if n.op_type == "QLinearConcat")
        known = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer} | {""}
        for node in model.graph.node:  # in the order ONNX asks for: each node after what it reads
            assert set(node.input) <= known, node.op_type
            known.update(node.output)
        return done

    monkeypatch.setattr(channels_last, "tidy", counting)
    monkeypatch.setattr(channels_last, "_OUTCOMES", {})
    monkeypatch.setenv("DEADTREE_GRAPH_OPTIMIZATION", "tidied")
    tidied = OnnxModel(int8, "cpu")
    again = OnnxModel(int8, "cpu")  # the second session of the model in this process reuses the checked graph
    assert len(before) == 1
    # one per decoder block, replaced; the head's bilinear upsampling of its logit stays (0.6.0's head reads
    # half-resolution features and adds four sub-pixel corrections through a pixel shuffle)
    assert before[0]["Resize"] == 4 and after[0]["Resize"] == 1 and after[0]["DepthToSpace"] == 1
    assert after[0]["DequantizeLinear"] < before[0]["DequantizeLinear"]
    assert after[0]["Transpose"] < before[0]["Transpose"]
    assert after[0]["QLinearConv"] == before[0]["QLinearConv"]  # the arithmetic is all still there
    assert before[0]["MaxPool"] == 1 and after[0]["MaxPool"] == 0 and after[0]["NhwcMaxPool"] == 1  # the stem's
    assert narrow_convs[0] == 1 and narrow_convs[1] == 0  # the one-channel segmentation head, widened
    # each skip concatenation: its inputs requantized one by one (the upsampled one before upsampling), then
    # copied by a plain Concat
    assert before[0]["QLinearConcat"] == 3 and joins and set(joins) == {5}
    monkeypatch.setenv("DEADTREE_GRAPH_OPTIMIZATION", "all")
    plain = OnnxModel(int8, "cpu")
    tile = np.random.default_rng(1).random((1, 4, 512, 384), dtype=np.float32)
    assert np.array_equal(tidied.run(tile), plain.run(tile))
    assert np.array_equal(again.run(tile), plain.run(tile))
    # sides off the multiple of 32 that the tidied upsampling needs go to ONNX Runtime's own graph, not to an error
    odd = np.random.default_rng(2).random((1, 4, 50, 70), dtype=np.float32)
    assert np.array_equal(tidied.run(odd), plain.run(odd))
    assert channels_last.runs_tidied(tidied.session) and channels_last.runs_tidied(again.session)
    assert not channels_last.runs_tidied(plain.session)
    # float models run ONNX Runtime's own graph
    assert not channels_last.is_int8(str(resolve_model("deadtree-rgbn", "segmenter")))
    assert channels_last.is_int8(str(int8))


def _narrow_convs(graph) -> int:
    """How many int8 convolutions have fewer than 16 filters."""
    sizes = {t.name: t.dims[0] for t in graph.initializer if t.dims}
    return sum(node.op_type == "QLinearConv" and sizes[node.input[3]] < 16 for node in graph.node)


def test_a_rewrite_that_changes_the_answers_is_not_used(monkeypatch):
    import numpy as np

    from deadtree.runtime.vnni_int8 import channels_last
    from deadtree.runtime.registry import resolve_model
    from deadtree.runtime.session import OnnxModel

    from tests.rewrites import answer_changing

    # doubles the rows where the columns should be doubled: the right sizes, wrong pixels
    monkeypatch.setattr(channels_last, "tidy", answer_changing(channels_last.tidy))
    monkeypatch.setattr(channels_last, "_OUTCOMES", {})
    monkeypatch.setenv("DEADTREE_GRAPH_OPTIMIZATION", "tidied")
    int8 = resolve_model("deadtree-rgbn-int8", "segmenter")
    checked = []
    real_check = channels_last.same_answers
    monkeypatch.setattr(channels_last, "same_answers",
                        lambda a, b, tolerance=0.0: checked.append(real_check(a, b, tolerance)) or checked[-1])
    model = OnnxModel(int8, "cpu")
    assert not channels_last.runs_tidied(OnnxModel(int8, "cpu").session)
    assert checked == [False]  # once: the refusal is remembered too
    monkeypatch.setenv("DEADTREE_GRAPH_OPTIMIZATION", "all")
    tile = np.random.default_rng(2).random((1, 4, 256, 256), dtype=np.float32)
    assert np.array_equal(model.run(tile), OnnxModel(int8, "cpu").run(tile))


def test_variant_checks_run_each_variant_as_segment_will(monkeypatch):
    import numpy as np
    import onnx

    from deadtree.training import variants
    from deadtree.training.frames import Frame

    asked = []

    def probabilities(model, frames, flips=False, scales=(), quantized=False):
        asked.append(quantized)
        return [np.full(f.mask.shape, 0.9, np.float32) for f in frames]

    monkeypatch.setattr(variants, "onnx_probabilities", probabilities)
    frame = Frame("mo001_2020_n_01_01_0", "mo001", np.zeros((8, 8, 4), np.uint8), np.ones((8, 8), bool))
    for precision, optimised_as_int8 in (("int8", True), ("fp16", False)):
        asked.clear()
        checks = variants.compare_on_frames("parent.onnx", onnx.ModelProto(), [frame], 0.5, precision)
        assert asked == [False, optimised_as_int8]  # the fp32 parent, then the variant
        assert checks["mask_iou_vs_fp32"] == 1.0
