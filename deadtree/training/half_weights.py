"""Half-precision storage for float32 weights: the file halves, the model still computes in float32.

A shipped model must stay under 30 MB (it lives in git). A network over that in float32, or one whose weights
are float16 values already (exported from a slim checkpoint), keeps its weights as float16 in the file, each
behind a Cast to float32; ONNX Runtime folds those casts when it loads the model, so inference runs exactly as
before on weights rounded to half precision. The torch module is rounded the same
way before export, so the parity check and the validation scores are those of the weights that ship.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MAX_MODEL_BYTES = 30_000_000
HALF_SUFFIX = "__half"
MIN_ELEMENTS = 1024  # small tensors (biases) stay float32: they save nothing worth a node


def float_bytes(module) -> int:
    """Bytes of the module's float32 parameters and buffers, as they would be stored in float32."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * 4 for t in tensors if t.is_floating_point())


def needs_half_storage(module, limit: int | None = None) -> bool:
    # 2% headroom for the graph itself and the metadata
    return float_bytes(module) > 0.98 * (limit or MAX_MODEL_BYTES)


def round_weights_to_half(module) -> None:
    """Round every float parameter and buffer to the nearest float16 value, in place (kept as float32)."""
    import torch

    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())


def exact_in_half(model: onnx.ModelProto, min_elements: int = MIN_ELEMENTS) -> bool:
    """True when every float32 initializer that half storage would convert already holds float16 values, as
    a network exported from a slim (half-precision) checkpoint does: storing them half then loses nothing.
    Batch norm folded into a convolution at export breaks this, so the test is on the graph, not the module."""
    for init in model.graph.initializer:
        if init.data_type == TensorProto.FLOAT and np.prod(init.dims, dtype=np.int64) >= min_elements:
            values = numpy_helper.to_array(init)
            if not np.array_equal(values.astype(np.float16).astype(np.float32), values):
                return False
    return True


def store_weights_half(model: onnx.ModelProto, min_elements: int = MIN_ELEMENTS) -> int:
    """Turn the float32 initializers of `model` into float16 ones behind Cast nodes; returns how many."""
    graph = model.graph
    casts, kept = [], []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or np.prod(init.dims, dtype=np.int64) < min_elements:
            kept.append(init)
            continue
        values = numpy_helper.to_array(init)
        half = numpy_helper.from_array(values.astype(np.float16), init.name + HALF_SUFFIX)
        kept.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "_to_float"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)  # the casts first: the graph stays topologically sorted
    del graph.node[:]
    graph.node.extend(nodes)
    return len(casts)


def expand_half_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same model with its half-stored weights as float32 initializers again (for tools such as the
    int8 quantizer, which look for weights among the initializers)."""
    graph = model.graph
    halves = {i.name: i for i in graph.initializer if i.name.endswith(HALF_SUFFIX)}
    if not halves:
        return model
    expanded = onnx.ModelProto()
    expanded.CopyFrom(model)
    graph = expanded.graph
    restored, nodes = [], []
    for node in graph.node:
        if node.op_type == "Cast" and len(node.input) == 1 and node.input[0] in halves:
            values = numpy_helper.to_array(halves[node.input[0]]).astype(np.float32)
            restored.append(numpy_helper.from_array(values, node.output[0]))
        else:
            nodes.append(node)
    kept = [i for i in graph.initializer if i.name not in halves] + restored
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.node[:]
    graph.node.extend(nodes)
    return expanded
