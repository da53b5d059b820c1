"""A float U-Net's graph rewritten so that ONNX Runtime keeps its decoder in the CPU's blocked layout.

On a CPU ONNX Runtime runs float convolutions in a channels-blocked layout (NCHWc, 16 channels a block with
AVX-512) and converts a tensor back to plain NCHW wherever the next operator cannot take the blocked one. In
the exported U-Net two things force that in every decoder block (benchmarks/op_profile.py; docs/performance.md):

- the upsampling is a Resize whose output size is read from the skip connection's shape at run time. ONNX
  Runtime's blocked Upsample takes constant integer scales only, so each Resize, the concatenation after it
  and the skip connection it joins run channels-first, behind reorders out of and back into the blocked layout.
  In a U-Net each upsampling doubles the sides exactly wherever they are multiples of 32 (the five halvings of
  the encoder undone), which is what constant scales of 2 compute;
- the skip connection is concatenated to the upsampled tensor and the next convolution reads the two. A
  convolution of a concatenation along the channels is the sum of two convolutions, one over each part with
  its share of the filters, so the concatenation's copy of both tensors goes. Sums are rounded in another order,
  so answers move by about 1e-7.

Together 1.06-1.13x on 256 px tiles of the default network (docs/performance.md). A rewritten graph is used
only where it answers a test tile within FLOAT_TOLERANCE of ONNX Runtime's own session of the model
(deadtree.runtime.channels_last.open_tidied, which also keeps the outcome, and hands sides that are not
multiples of 32 to the model's own graph).
"""
from __future__ import annotations

import numpy as np

from deadtree.runtime.graph_rewrites import _attribute, _producers, _readers, _set_nodes, drop_unread_nodes

FLOAT_TOLERANCE = 1e-5  # on probabilities; the rewritten sums differ by about 1e-7
DOUBLING = "deadtree_doubling_scales"


def rewrite_float(model) -> int:
    """Rewrite a float ModelProto (as exported, before ONNX Runtime optimises it) in place; returns how many
    places changed (0: nothing to do)."""
    done = constant_scale_upsampling(model.graph) + split_concatenated_convs(model)
    if done:
        drop_unread_nodes(model.graph)
    return done


def constant_scale_upsampling(graph) -> int:
    """Each nearest-neighbour Resize (asymmetric coordinates, floor rounding: the form ONNX Runtime's blocked
    Upsample runs) whose output size is computed at run time takes constant scales of 2 instead; returns how
    many."""
    from onnx import numpy_helper

    changed = 0
    for node in graph.node:
        if (node.op_type != "Resize" or len(node.input) < 4 or not node.input[3]
                or _attribute(node, "mode", b"nearest") != b"nearest"
                or _attribute(node, "coordinate_transformation_mode") != b"asymmetric"
                or _attribute(node, "nearest_mode", b"round_prefer_floor") != b"floor"):
            continue
        del node.input[3]
        while len(node.input) < 3:
            node.input.append("")
        node.input[2] = DOUBLING
        changed += 1
    if changed:
        graph.initializer.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), DOUBLING))
    return changed


def split_concatenated_convs(model) -> int:
    """Each plain convolution that alone reads a concatenation along the channels becomes one convolution per
    concatenated tensor (the bias with the first) and their sum; returns how many."""
    from onnx import helper, numpy_helper

    graph = model.graph
    channels = _channel_counts(model)
    producers, readers = _producers(graph), _readers(graph)
    constants = _constant_tensors(graph)
    nodes, split = [], 0
    for node in graph.node:
        concat = _source(node.input[0], producers, readers) if node.op_type == "Conv" and node.input else None
        parts = _concatenated_parts(concat, readers, channels)
        kernel = constants.get(node.input[1]) if parts is not None else None
        if kernel is None or _attribute(node, "group", 1) != 1:
            nodes.append(node)
            continue
        kernel = numpy_helper.to_array(kernel)
        if kernel.ndim != 4 or kernel.shape[1] != sum(channels[p] for p in parts):
            nodes.append(node)
            continue
        out, start, summed = node.output[0], 0, None
        for i, part in enumerate(parts):
            share = f"{out}/kernel{i}"
            graph.initializer.append(numpy_helper.from_array(kernel[:, start:start + channels[part]].copy(), share))
            start += channels[part]
            bias = list(node.input[2:3]) if i == 0 else []
            conv = helper.make_node("Conv", [part, share, *bias], [f"{out}/part{i}"], name=f"{node.name}/part{i}")
            conv.attribute.extend(node.attribute)
            nodes.append(conv)
            if summed is not None:
                total = out if i == len(parts) - 1 else f"{out}/sum{i}"
                nodes.append(helper.make_node("Add", [summed, f"{out}/part{i}"], [total], name=f"{node.name}/sum{i}"))
                summed = total
            else:
                summed = f"{out}/part{i}"
        split += 1
    _set_nodes(graph, nodes)
    return split


def _source(name: str, producers: dict, readers: dict):
    """The node that computes `name`, looking through Identity nodes read by nothing else (segmentation-models-
    pytorch exports its decoders' absent attention as one between each concatenation and its convolution)."""
    node = producers.get(name)
    while node is not None and node.op_type == "Identity" and len(readers.get(node.output[0], [])) == 1:
        node = producers.get(node.input[0])
    return node


def _constant_tensors(graph) -> dict:
    """TensorProtos by name: the initializers, and what Constant nodes, and Identity and Cast nodes of
    constants, give. Exports pass weights through such nodes (deadtree.training.half_weights stores large
    models' weights as float16 behind a Cast; torch's exporter adds Identity nodes); ONNX Runtime folds them."""
    from onnx import helper, numpy_helper

    found = {t.name: t for t in graph.initializer}
    for node in graph.node:  # in order: a node's constant inputs are known before it
        source = found.get(node.input[0]) if node.input else None
        if node.op_type == "Constant" and _attribute(node, "value") is not None:
            found[node.output[0]] = _attribute(node, "value")
        elif node.op_type == "Identity" and source is not None:
            found[node.output[0]] = source
        elif node.op_type == "Cast" and source is not None:
            dtype = helper.tensor_dtype_to_np_dtype(_attribute(node, "to"))
            found[node.output[0]] = numpy_helper.from_array(numpy_helper.to_array(source).astype(dtype))
    return found


def _concatenated_parts(concat, readers: dict, channels: dict) -> list[str] | None:
    """The tensors a Concat joins along the channels, where one convolution alone reads it and every part's
    channel count is known; else None."""
    if (concat is None or concat.op_type != "Concat" or _attribute(concat, "axis") != 1
            or len(concat.input) < 2 or len(readers.get(concat.output[0], [])) != 1):
        return None
    parts = list(concat.input)
    return parts if all(channels.get(p) for p in parts) else None


def _channel_counts(model) -> dict[str, int]:
    """Each 4-D tensor's channel count, where ONNX shape inference can tell it."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model).graph
    counts = {}
    for value in [*inferred.value_info, *inferred.input]:
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].dim_value > 0:
            counts[value.name] = dims[1].dim_value
    return counts


def rewritten_float(model: str | bytes) -> bytes | None:
    """A float model's graph (a path or serialised) rewritten and serialised; None where nothing applies."""
    import onnx

    graph = onnx.load_model_from_string(model) if isinstance(model, bytes) else onnx.load(model)
    return graph.SerializeToString() if rewrite_float(graph) else None
