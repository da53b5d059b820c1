"""The rewrites of ONNX Runtime's optimised channels-last int8 graph (channels_last.py beside it says why),
each a pass over a GraphProto that returns how many places it changed, and the graph bookkeeping they share.

Every pass keeps the arithmetic: it moves data differently, or runs the same integer operation in another
layout, so that the rewritten graph answers bit for bit as the one it came from (which is checked before a
rewritten graph is used)."""
from __future__ import annotations

import numpy as np


def replace_resizes(graph) -> int:
    """Replace each nearest-neighbour Resize that follows a quantized operator (there, channels-last uint8) and
    gives its output size, by copies; returns how many."""
    from onnx import helper

    producers = _producers(graph)
    nodes, replaced = [], 0
    for node in graph.node:
        producer = producers.get(node.input[0]) if node.input else None
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Resize" or attributes.get("mode", b"nearest") != b"nearest"
                or producer is None or not producer.op_type.startswith("QLinear")
                or len(node.input) < 4 or not node.input[3]):
            nodes.append(node)
            continue
        x, sizes, y = node.input[0], node.input[3], node.output[0]
        axis = _constant(graph, f"{y}/copies_axis", [3])
        # (N, H, W, 2, C) read as (N, H, 1, 2W, C): 0 keeps the input's size at that place
        row_shape = _constant(graph, f"{y}/copies_shape", [0, 0, 1, -1, 0])
        nodes += [
            helper.make_node("Unsqueeze", [x, axis], [f"{y}/copies_pixel"]),
            helper.make_node("Concat", [f"{y}/copies_pixel"] * 2, [f"{y}/copies_columns"], axis=3),
            helper.make_node("Reshape", [f"{y}/copies_columns", row_shape], [f"{y}/copies_row"]),
            helper.make_node("Concat", [f"{y}/copies_row"] * 2, [f"{y}/copies_rows"], axis=2),
            helper.make_node("Reshape", [f"{y}/copies_rows", sizes], [y]),
        ]
        replaced += 1
    _set_nodes(graph, nodes)
    return replaced


TO_FIRST, TO_LAST = [0, 3, 1, 2], [0, 2, 3, 1]  # Transpose perms: channels-last to first, and back
JOIN_INPUTS = {"QLinearAdd": (0, 3)}  # where the data inputs are; QLinearConcat's: 2, 5, 8, ...


def channels_last_joins(graph) -> int:
    """Run each channels-first QLinearAdd, and QLinearConcat along the channels, on channels-last inputs where
    every data input has a channels-last form already (it is a Transpose of one, or is transposed to one); the
    channels-first output becomes a Transpose of the new one. Returns how many."""
    from onnx import helper

    producers = _producers(graph)
    to_last = {n.input[0]: n.output[0] for n in graph.node if n.op_type == "Transpose" and _perm(n) == TO_LAST}
    nodes, moved = [], 0
    for node in graph.node:
        positions = _join_inputs(node)
        last = [_channels_last_form(node.input[i], producers, to_last) for i in positions]
        if not positions or None in last:
            nodes.append(node)
            continue
        inputs = list(node.input)
        for i, name in zip(positions, last):
            inputs[i] = name
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "QLinearConcat":
            attributes["axis"] = 3
        out = node.output[0]
        joined = helper.make_node(node.op_type, inputs, [f"{out}/channels_last"], domain=node.domain, **attributes)
        back = helper.make_node("Transpose", [f"{out}/channels_last"], [out], perm=TO_FIRST)
        nodes += [joined, back]
        producers[out] = back
        to_last[out] = f"{out}/channels_last"
        moved += 1
    _set_nodes(graph, nodes)
    return moved


def cancel_transpose_pairs(graph) -> int:
    """Readers of Transpose(TO_LAST) of Transpose(TO_FIRST) of x read x; returns how many pairs."""
    producers = _producers(graph)
    same = {}
    for node in graph.node:
        inner = producers.get(node.input[0]) if node.op_type == "Transpose" and _perm(node) == TO_LAST else None
        if inner is not None and inner.op_type == "Transpose" and _perm(inner) == TO_FIRST:
            same[node.output[0]] = inner.input[0]
    if not same:
        return 0
    outputs = {o.name for o in graph.output}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in same and name not in outputs:
                node.input[i] = same[name]
    return len(same)


def _join_inputs(node) -> tuple[int, ...]:
    if node.op_type in JOIN_INPUTS:
        return JOIN_INPUTS[node.op_type]
    return _concat_inputs(node) if _attribute(node, "axis") == 1 else ()  # along the channels-first channels


def _channels_last_form(name: str, producers: dict, to_last: dict) -> str | None:
    producer = producers.get(name)
    if producer is not None and producer.op_type == "Transpose" and _perm(producer) == TO_FIRST:
        return producer.input[0]
    return to_last.get(name)


def _perm(node) -> list[int]:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), [])


def read_shapes_before_dequantizing(graph) -> int:
    """Shape(DequantizeLinear(x)) becomes Shape(x), and Shape(Transpose(x)) the Shape of x permuted (its start
    and end kept); returns how many Shapes were rewired (the dequantized and transposed copies may then be
    unread)."""
    from onnx import helper

    producers = _producers(graph)
    nodes, rewired = [], 0
    for node in graph.node:
        source = producers.get(node.input[0]) if node.op_type == "Shape" else None
        if source is None or source.op_type not in ("DequantizeLinear", "Transpose"):
            nodes.append(node)
            continue
        quantized = source.input[0] if source.op_type == "DequantizeLinear" else node.input[0]
        transpose = producers.get(quantized)
        span = {a.name: a.i for a in node.attribute}
        if transpose is not None and transpose.op_type == "Transpose":
            perm = _perm(transpose)
            picked = perm[slice(span.get("start"), span.get("end"))]  # Shape's start and end slice as Python's do
            permutation = _constant(graph, f"{node.output[0]}/perm", picked)
            nodes += [helper.make_node("Shape", [transpose.input[0]], [f"{node.output[0]}/untransposed"]),
                      helper.make_node("Gather", [f"{node.output[0]}/untransposed", permutation], [node.output[0]],
                                       axis=0)]
        else:
            nodes.append(helper.make_node("Shape", [quantized], [node.output[0]], **span))
        rewired += 1
    _set_nodes(graph, nodes)
    return rewired


def sort_nodes(graph) -> None:
    """Put every node after the nodes it reads from, as ONNX asks: a join may now read a Transpose that came
    after it in the list."""
    producers = {out: i for i, node in enumerate(graph.node) for out in node.output}
    order, placed, visiting = [], set(), set()

    def place(i: int) -> None:
        if i in placed:
            return
        if i in visiting:
            raise ValueError("the rewritten graph has a cycle")
        visiting.add(i)
        for name in graph.node[i].input:
            if name in producers:
                place(producers[name])
        placed.add(i)
        order.append(graph.node[i])

    for i in range(len(graph.node)):
        place(i)
    _set_nodes(graph, order)


def drop_unread_nodes(graph) -> None:
    """Nodes whose outputs nothing reads go, and then the weights nothing reads (ONNX Runtime warns of each)."""
    outputs = {o.name for o in graph.output}
    while True:
        read = {i for node in graph.node for i in node.input} | outputs
        kept = [node for node in graph.node if any(o in read for o in node.output)]
        if len(kept) == len(graph.node):
            break
        _set_nodes(graph, kept)
    unread = [t for t in graph.initializer if t.name not in read]
    for tensor in unread:
        graph.initializer.remove(tensor)


def _producers(graph) -> dict:
    return {out: node for node in graph.node for out in node.output}


def _constant(graph, name: str, values: list[int]) -> str:
    from onnx import numpy_helper

    graph.initializer.append(numpy_helper.from_array(np.array(values, np.int64), name))
    return name


def _set_nodes(graph, nodes: list) -> None:
    if list(graph.node) != nodes:
        del graph.node[:]
        graph.node.extend(nodes)


def pool_channels_last(graph) -> int:
    """A MaxPool between a DequantizeLinear and a QuantizeLinear (ONNX Runtime pools int8 values in float,
    channels-first, with two reorders of their own) becomes ONNX Runtime's uint8 NhwcMaxPool on the
    transposed values, requantized where the two quantizations differ; the channels-first result becomes a
    Transpose of it, which later passes cancel. Exact: the largest of a window's dequantized values is the
    dequantized largest value, since dequantizing keeps the order. Returns how many."""
    from onnx import helper

    producers = _producers(graph)
    sizes = {t.name: int(np.prod(t.dims)) for t in graph.initializer}

    def per_tensor(node) -> bool:  # one scale for the whole tensor: the same whatever its layout
        return all(sizes.get(name) == 1 for name in node.input[1:3] if name)

    nodes, moved = [], 0
    for node in graph.node:
        pool = producers.get(node.input[0]) if node.op_type == "QuantizeLinear" else None
        dequantized = (producers.get(pool.input[0]) if pool is not None and pool.op_type == "MaxPool"
                       and len(pool.output) == 1 else None)
        attributes = {a.name: helper.get_attribute_value(a) for a in pool.attribute} if dequantized else {}
        if (dequantized is None or dequantized.op_type != "DequantizeLinear" or attributes.get("storage_order", 0)
                or len(attributes.get("kernel_shape", ())) != 2 or not (per_tensor(node) and per_tensor(dequantized))):
            nodes.append(node)
            continue
        attributes.pop("storage_order", None)
        values, out = dequantized.input[0], node.output[0]
        nodes += [
            helper.make_node("Transpose", [values], [f"{out}/pool_input"], perm=TO_LAST),
            helper.make_node("NhwcMaxPool", [f"{out}/pool_input"], [f"{out}/pooled"], domain="com.microsoft",
                             **attributes),
            helper.make_node("DequantizeLinear", [f"{out}/pooled", *dequantized.input[1:]], [f"{out}/pooled_float"]),
            helper.make_node("QuantizeLinear", [f"{out}/pooled_float", *node.input[1:]], [f"{out}/channels_last"]),
            helper.make_node("Transpose", [f"{out}/channels_last"], [out], perm=TO_FIRST),
        ]
        moved += 1
    _set_nodes(graph, nodes)
    return moved


WIDE_CONV_CHANNELS = 16  # ONNX Runtime's channels-last QLinearConv is 3-4x slower with fewer output channels


def widen_narrow_convs(graph) -> int:
    """A channels-last QLinearConv with fewer than WIDE_CONV_CHANNELS output channels (the one-channel
    segmentation head: 16% of the int8 model's time) gets zero filters up to that many, and its real channels
    are gathered from the wide result. Each output channel is computed on its own, so the real ones are
    unchanged. Returns how many."""
    from onnx import helper, numpy_helper

    weights = {t.name: t for t in graph.initializer}
    nodes, widened = [], 0
    for node in graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        filters = weights.get(node.input[3]) if node.op_type == "QLinearConv" and len(node.input) > 3 else None
        if (filters is None or not attributes.get("channels_last") or attributes.get("group", 1) != 1
                or filters.dims[0] >= WIDE_CONV_CHANNELS):
            nodes.append(node)
            continue
        count, out = filters.dims[0], node.output[0]
        inputs = list(node.input)
        for i in (3, 4, 5, 8):  # weights, their scales and zero points, and the bias: one entry per filter
            if i < len(inputs) and inputs[i] in weights:
                values = numpy_helper.to_array(weights[inputs[i]])
                if values.ndim and values.shape[0] == count:
                    padding = np.zeros((WIDE_CONV_CHANNELS - count, *values.shape[1:]), values.dtype)
                    if i == 4:  # a scale must stay positive; the extra filters are zero whatever it is
                        padding += values[:1]
                    inputs[i] = f"{out}/wide_{i}"
                    graph.initializer.append(numpy_helper.from_array(np.concatenate([values, padding]), inputs[i]))
        nodes += [
            helper.make_node("QLinearConv", inputs, [f"{out}/wide"], domain=node.domain, **attributes),
            helper.make_node("Gather", [f"{out}/wide", _constant(graph, f"{out}/real", list(range(count)))], [out],
                             axis=3),
        ]
        widened += 1
    _set_nodes(graph, nodes)
    return widened


def requantize_before_upsampling(graph) -> int:
    """Where a QLinearConcat input is a nearest-neighbour upsampling read by nothing else, the requantization
    to the concatenation's scale moves in front of the upsampling, onto a quarter of the values; the
    concatenation then reads that input at its own scale. Exact: requantizing works value by value, and
    nearest-neighbour upsampling only copies values. Returns how many inputs."""
    producers, readers = _producers(graph), _readers(graph)
    nodes, moved = [], 0
    for node in graph.node:
        for i in _concat_inputs(node):
            resize = producers.get(node.input[i])
            if resize is not None and resize.op_type == "Transpose" and len(readers[resize.output[0]]) == 1:
                resize = producers.get(resize.input[0])
            if (resize is None or resize.op_type != "Resize" or len(readers[resize.output[0]]) != 1
                    or _attribute(resize, "mode", b"nearest") != b"nearest"):
                continue
            source = resize.input[0]
            nodes.append(_requantized(node, source, f"{source}/requantized", node.input[i + 1:i + 3]))
            resize.input[0] = nodes[-1].output[0]
            node.input[i + 1], node.input[i + 2] = node.input[0], node.input[1]
            moved += 1
    if moved:
        _set_nodes(graph, nodes + list(graph.node))  # sort_nodes puts the new nodes in place
    return moved


def split_requantizing_concats(graph) -> int:
    """A QLinearConcat becomes a requantization of each input whose scale or zero point differs from the
    output's, and a plain Concat: ONNX Runtime's QLinearConcat along the channels of channels-last tensors
    requantizes pixel by pixel, twice as slow as requantizing each input whole and copying. Returns how many."""
    from onnx import helper, numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}

    def same(a: str, b: str) -> bool:
        return a == b or (a in values and b in values and np.array_equal(values[a], values[b]))

    nodes, split = [], 0
    for node in graph.node:
        positions = _concat_inputs(node)
        if not positions:
            nodes.append(node)
            continue
        parts = []
        for i in positions:
            if same(node.input[i + 1], node.input[0]) and same(node.input[i + 2], node.input[1]):
                parts.append(node.input[i])
            else:
                nodes.append(_requantized(node, node.input[i], f"{node.output[0]}/part{i}", node.input[i + 1:i + 3]))
                parts.append(nodes[-1].output[0])
        nodes.append(helper.make_node("Concat", parts, list(node.output), axis=_attribute(node, "axis", 1)))
        split += 1
    _set_nodes(graph, nodes)
    return split


def _requantized(concat, source: str, out: str, scale_and_zero_point) -> object:
    """`source` (quantized with scale_and_zero_point) requantized to `concat`'s output scale: ONNX Runtime's
    QLinearConcat of one input, which requantizes it whole."""
    from onnx import helper

    return helper.make_node("QLinearConcat", [concat.input[0], concat.input[1], source, *scale_and_zero_point],
                            [out], domain=concat.domain, axis=_attribute(concat, "axis", 1))


def _concat_inputs(node) -> tuple[int, ...]:
    """Where a QLinearConcat's data inputs are (each followed by its scale and zero point)."""
    return tuple(range(2, len(node.input), 3)) if node.op_type == "QLinearConcat" else ()


def _attribute(node, name: str, default=None):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _readers(graph) -> dict:
    found: dict = {}
    for node in graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found
