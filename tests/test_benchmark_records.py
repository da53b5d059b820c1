import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from common import RESULTS, result_path  # noqa: E402


def test_a_host_without_vnni_does_not_overwrite_the_reference_record():
    assert result_path("throughput", "AVX-512 VNNI, AVX-512 BF16, AVX-512, AVX2") == RESULTS / "throughput.json"
    assert result_path("throughput", "AVX2") == RESULTS / "throughput-avx2.json"
    assert result_path("floor", "AVX-512, AVX2") == RESULTS / "floor-avx512.json"


def test_gpu_benchmark_reports_each_device_s_provider_or_error_and_checks_parity(tmp_path):
    """benchmarks/gpu_onnx.py runs only where a GPU is lent; its parts must still work on the CPU build."""
    import dataclasses

    from deadtree.runtime.metadata import read_model_info, rewrite_model_info
    from deadtree.training.frames import load_frames
    from gpu_onnx import parity, provider_choice
    from tests.scenes import toy_model
    from tests.test_training import write_kaggle_layout

    model = toy_model(tmp_path / "toy-rgbn.onnx")
    choice = provider_choice(model)
    assert choice["cpu"] == choice["auto"] == "CPUExecutionProvider"
    assert choice["cuda"].startswith("error: --device cuda") and choice["tensorrt"].startswith("error:")
    info = read_model_info(model)
    rewrite_model_info(model, dataclasses.replace(info, extra={**info.extra, "validation_groups": ["ar003"]}))
    frames = [f for f in load_frames(write_kaggle_layout(tmp_path / "data", size=96), info.bands)
              if f.group == "ar003"]
    rows = parity(model, {"cpu again": (model, "cpu")}, frames, info.threshold)
    assert rows[0]["max_abs_probability_difference"] == 0.0 and rows[0]["passes_1e-2_and_0.99"]


def test_floor_reads_the_same_model_s_model_alone_figure_from_this_host_s_record(tmp_path, monkeypatch):
    import json

    import floor

    record = tmp_path / "throughput-avx2.json"
    rows = [{"model": "other-int8", "tile_px": 1024, "model_alone_MP_per_s": 9.0},
            {"model": "deadtree-x", "tile_px": 1024, "model_alone_MP_per_s": 0.5},
            {"model": "deadtree-x-int8", "tile_px": 512, "model_alone_MP_per_s": 2.0},
            {"model": "deadtree-x-int8", "tile_px": 1024, "model_alone_MP_per_s": 1.0}]
    record.write_text(json.dumps({"rows": rows}))
    monkeypatch.setattr(floor, "result_path", lambda name: record)
    assert floor._measured_model_alone("deadtree-x", 1024)["model_alone_MP_per_s"] == 1.0  # int8, same tile
    assert floor._measured_model_alone("deadtree-x", 256) is None
    record.unlink()
    assert floor._measured_model_alone("deadtree-x", 1024) is None


def test_op_profile_times_each_operator_of_one_call():
    import onnxruntime as ort
    from op_profile import CONVOLUTIONS, kernel_times

    from deadtree.runtime.registry import resolve_model
    from deadtree.runtime.session import Plan

    plan = Plan(ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ("NhwcTransformer",))
    times, counts = kernel_times(resolve_model("deadtree-rgbn-int8", "segmenter"), 128, 1, 1, plan)
    # 0.6.0: six residual convolutions and two shortcuts in the encoder, six in the decoder, the head; its
    # float stem is a Conv. Three decoder Resizes and the head's. Per call: the first one is left out
    assert counts["QLinearConv"] == 15 and counts["Resize"] == 4
    assert all(ms > 0 for ms in times.values())
    # a tidied graph's session has run a check call before the benchmark's: still one call's kernels
    tidied = Plan(ort.GraphOptimizationLevel.ORT_ENABLE_ALL, tidied=True)
    times, counts = kernel_times(resolve_model("deadtree-rgbn-int8", "segmenter"), 128, 2, 1, tidied)
    assert counts["QLinearConv"] == 15 and counts["Resize"] == 1  # the decoder's became copies
    times, counts = kernel_times(resolve_model("deadtree-rgbn", "segmenter"), 128, 1, 1, plan)
    assert "QLinearConv" not in counts and sum(counts.get(op, 0) for op in CONVOLUTIONS) == 16  # some fused with ReLU


def test_a_table_whose_rows_differ_prints_every_column(tmp_path, monkeypatch, capsys):
    """floor.py's rows differ when one model has a throughput record and another has none."""
    import json

    import common

    monkeypatch.setattr(common, "result_path", lambda name: tmp_path / f"{name}.json")
    common.report("demo", [{"model": "a", "floor": 1.0}, {"model": "b", "floor": 2.0, "measured": 0.5}])
    header, first, second = capsys.readouterr().out.splitlines()[:3]
    assert header.split() == ["model", "floor", "measured"]
    assert first.split() == ["a", "1.000"] and second.split() == ["b", "2.000", "0.500"]
    assert json.loads((tmp_path / "demo.json").read_text())["rows"][0] == {"model": "a", "floor": 1.0}


def test_engine_rows_pool_every_process_s_rounds_against_torch_eager_in_the_same_round():
    import engines

    def worker(eager, ort, ceiling):
        return {"seconds": {"ORT": ort, "int8": [0.5, 0.5], "torch eager": eager, engines.CEILING: ceiling},
                "flops": 2e9, "int8_engine": "int8"}

    # the second process's torch eager is slower: its rounds' speed-ups are larger
    workers = [worker([2.0, 2.0], [1.0, 1.0], [1.0, 1.0]), worker([3.0, 3.3], [1.0, 1.1], [0.9, 1.0])]
    rows = {r["engine"]: r for r in engines.engine_rows(workers, tiles=8, same_net_int8=False)}
    ort = rows["ORT"]
    assert ort["vs_torch_eager"] == 2.5  # median of 2, 2, 3, 3
    assert ort["vs_torch_eager_rounds"] == "2.00-3.00" and ort["vs_torch_eager_processes"] == "2.00 3.00"
    assert abs(ort["GFLOP_per_s"] - 2.0) < 1e-9  # 2e9 operations in the median round of 1.0 s
    assert abs(ort["of_matmul_rate"] - (1 + 1 / 1.1) / 2) < 1e-9  # the ceiling's seconds over its own: 1 1 0.9 0.91
    assert abs(rows["torch eager"]["MP_per_s"] - 8 * 65536 / 1e6 / 2.5) < 1e-9
    assert "GFLOP_per_s" not in rows["int8"]  # the shipped int8 model is another network here


def test_the_matmul_call_does_the_operations_it_claims():
    import floor

    run, flops = floor.matmul_run(64)
    (product,) = run()
    assert flops == 2 * 64**3 and product.shape == (64, 64)
    assert floor.matmul_gflops(64, repeat=2) > 0


def test_multiply_adds_are_counted_through_weights_behind_an_identity(tmp_path):
    """Fresh exports pass convolution weights through Identity nodes; their shape is then an inferred one."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import floor

    weight = numpy_helper.from_array(np.ones((8, 4, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Identity", ["w"], ["w_out"]),
             helper.make_node("Conv", ["x", "w_out"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, "h", "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8, "h", "w"])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "m.onnx")
    assert floor.count_macs(tmp_path / "m.onnx", 4, 16) == 16 * 16 * 8 * 4 * 3 * 3
