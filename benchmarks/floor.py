"""Benchmark 4: the arithmetic floor. The model's multiply-adds per megapixel (counted from the ONNX graph,
with the tile overlap the pipeline uses) against this machine's measured fp32 matrix-multiply rate in ONNX
Runtime, so the throughput of benchmark 1 can be read as a fraction of what the CPU can do.

    python benchmarks/floor.py [--model models/deadtree-rgbn.onnx] [--model ...]

Each row is read beside this host's own throughput record (benchmark 1, run first): the model-alone figure of
the same model (or its int8 variant) as a fraction of the floor at that precision.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from common import report, result_path
from onnx import TensorProto, helper, shape_inference

from deadtree.runtime.metadata import read_model_info
from deadtree.runtime.registry import list_models


def count_macs(path: Path, bands: int, tile: int) -> int:
    model = onnx.load(str(path))
    graph = model.graph
    graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    for axis in (2, 3):
        graph.input[0].type.tensor_type.shape.dim[axis].dim_value = tile
    # data_prop: the last decoder block reads a Resize whose output size is computed in the graph; without
    # propagating those values its shapes stay unknown (zeros), and its convolutions would count for nothing.
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in
              list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    weights = {i.name: list(i.dims) for i in inferred.graph.initializer}
    macs = 0
    for node in inferred.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            if not all(shapes[node.output[0]]):
                raise ValueError(f"the shape of {node.output[0]} could not be inferred: its multiply-adds are unknown")
            # Conv weights are (out, in / groups, kh, kw), ConvTranspose ones (in, out / groups, kh, kw): w[1] is
            # already divided by the groups, and counts the MACs per output (Conv) or input (ConvTranspose) value.
            # a fresh export may pass the weights through an Identity or Cast node: their shape is inferred
            w = weights.get(node.input[1]) or shapes.get(node.input[1])
            if not w or not all(w):
                raise ValueError(f"the weights of {node.name or node.output[0]} have no known shape")
            if node.op_type == "Conv":
                out = shapes[node.output[0]]
                macs += int(np.prod(out)) * w[1] * w[2] * w[3]
            else:
                inp = shapes[node.input[0]]
                macs += int(np.prod(inp)) * w[1] * w[2] * w[3]
        elif node.op_type in ("MatMul", "Gemm"):
            a, b = shapes.get(node.input[0]), weights.get(node.input[1]) or shapes.get(node.input[1])
            if a and b:
                macs += int(np.prod(a)) * b[-1]
    return macs


def matmul_gflops(n: int = 2048, repeat: int = 10, int8: bool = False) -> float:
    """ONNX Runtime's own matrix-multiply rate on this CPU: fp32 MatMul, or uint8 x int8 MatMulInteger (what
    the int8 model's convolutions become; AVX-512 VNNI where the CPU has it)."""
    run, flops = matmul_run(n, int8)
    run()
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return flops / best / 1e9


def matmul_run(n: int = 2048, int8: bool = False) -> tuple[Callable[[], object], int]:
    """One n x n x n matrix multiply in ONNX Runtime, as a call, and the operations (2 n^3) it does."""
    import onnxruntime as ort

    if int8:
        node = helper.make_node("MatMulInteger", ["a", "b"], ["c"])
        types, out_type = (TensorProto.UINT8, TensorProto.INT8), TensorProto.INT32
        a = np.random.randint(0, 255, (n, n), dtype=np.uint8)
        b = np.random.randint(-127, 127, (n, n), dtype=np.int8)
    else:
        node = helper.make_node("MatMul", ["a", "b"], ["c"])
        types, out_type = (TensorProto.FLOAT, TensorProto.FLOAT), TensorProto.FLOAT
        a = b = np.random.rand(n, n).astype(np.float32)
    graph = helper.make_graph([node], "mm",
                              [helper.make_tensor_value_info("a", types[0], [n, n]),
                               helper.make_tensor_value_info("b", types[1], [n, n])],
                              [helper.make_tensor_value_info("c", out_type, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return (lambda: session.run(None, {"a": a, "b": b})), 2 * n**3


def floor_row(path: Path, gflops: float, gops_int8: float) -> dict:
    info = read_model_info(path)
    tile, overlap = info.tile_size, info.overlap
    stride = tile - overlap
    macs_tile = count_macs(path, len(info.bands), tile)
    macs_per_mp = macs_tile / (stride * stride) * 1e6  # each scene pixel is covered (tile/stride)^2 times
    floor_mp_s = gflops * 1e9 / (2 * macs_per_mp)
    floor_int8_mp_s = gops_int8 * 1e9 / (2 * macs_per_mp)
    row = {"model": info.name, "tile_px": tile, "overlap_px": overlap, "GMACs_per_tile": macs_tile / 1e9,
           "GMACs_per_scene_MP": macs_per_mp / 1e9, "matmul_GFLOP_per_s": gflops, "floor_MP_per_s": floor_mp_s,
           "int8_matmul_GOP_per_s": gops_int8, "int8_floor_MP_per_s": floor_int8_mp_s}
    measured = _measured_model_alone(info.name, tile)
    if measured:
        row["measured_model"] = measured["model"]
        row["measured_model_alone_MP_per_s"] = measured["model_alone_MP_per_s"]
        floor = floor_int8_mp_s if measured["model"].endswith("-int8") else floor_mp_s
        row["fraction_of_floor"] = measured["model_alone_MP_per_s"] / floor
    return row


def _measured_model_alone(name: str, tile: int) -> dict | None:
    """This host's throughput row for the model or its int8 variant at the same tile size, if recorded."""
    record = result_path("throughput")
    if not record.exists():
        return None
    rows = [r for r in json.loads(record.read_text())["rows"]
            if r["model"] in (name, f"{name}-int8") and r.get("tile_px") == tile and "model_alone_MP_per_s" in r]
    return max(rows, key=lambda r: r["model"].endswith("-int8"), default=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, action="append", default=None, help="repeat to compare")
    args = parser.parse_args()
    defaults = [m for m in list_models() if m.info.task == "segmenter" and m.info.extra.get("default")]
    paths = args.model or [max(defaults, key=lambda m: len(m.info.bands)).path]  # the 4-band default, as in (1)
    gflops, gops_int8 = matmul_gflops(), matmul_gflops(int8=True)
    rows = [floor_row(path, gflops, gops_int8) for path in paths]
    report("floor", rows, {"note": "each scene pixel is computed (tile / (tile - overlap))^2 times; "
                                   "measured: the model alone in this host's throughput record"})


if __name__ == "__main__":
    main()
