"""ONNX Runtime's channels-last int8 graph, tidied where it wastes time on a CPU with VNNI.

There ONNX Runtime runs a quantized network channels-last (its NhwcTransformer), and in the U-Net's graph three
things cost about a quarter of the model's time for nothing (benchmarks/op_profile.py, docs/performance.md):

- the decoder's 2x nearest-neighbour Resize falls to a generic kernel that computes a source index for every
  byte: 64 ms of a 358 ms 1024 px tile, against 6 ms channels-first. For a channels-last tensor (N, H, W, C)
  the same result is the tensor concatenated with itself along a new axis in front of the channels (each
  pixel twice), then along a new axis in front of the columns (each row twice), with two reshapes that move
  no data: block copies;
- each decoder block reads the size of its skip connection from a copy of that activation transposed back to
  channels-first and dequantized to float, only to take its Shape. The shape is read from the activation
  itself (a transpose's shape is its input's, permuted) and the copies are dropped;
- ONNX Runtime leaves its int8 additions and concatenations channels-first, between Transposes of their
  inputs and outputs. Both work element by element (a concatenation along the channels is one along the last
  axis channels-last), so they run on the channels-last tensors, and each Transpose that then meets its
  inverse is dropped.

ONNX Runtime's optimised graph is saved, rewritten, and the result kept only where it answers a test tile
bit for bit as the session it replaces does; anything else keeps that session.
"""
from __future__ import annotations

import logging
import tempfile
import weakref
from pathlib import Path

import numpy as np

log = logging.getLogger("deadtree")

NCHWC_PASS = "NchwcTransformer"  # its blocked layouts depend on the CPU: kept out of a graph that is saved
CHECK_SIDE = 64  # the test tile: the smallest a five-level U-Net takes, and quick


def is_int8(model: str | bytes) -> bool:
    """Whether a model has int8 nodes (read without its weights)."""
    import onnx

    graph = (onnx.load_model_from_string(model) if isinstance(model, bytes)
             else onnx.load(model, load_external_data=False)).graph
    return any(node.op_type in ("QuantizeLinear", "QLinearConv") for node in graph.node)


def tidy(model) -> int:
    """Rewrite an ONNX Runtime-optimised channels-last int8 ModelProto in place; returns how many nodes
    were rewritten (0: nothing to do)."""
    graph = model.graph
    done = replace_resizes(graph) + channels_last_joins(graph)
    done += cancel_transpose_pairs(graph) + read_shapes_before_dequantizing(graph)
    if done:
        drop_unread_nodes(graph)
        sort_nodes(graph)
    return done


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
    if node.op_type == "QLinearConcat" and any(a.name == "axis" and a.i == 1 for a in node.attribute):
        return tuple(range(2, len(node.input), 3))
    return ()


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
    outputs = {o.name for o in graph.output}
    while True:
        read = {i for node in graph.node for i in node.input} | outputs
        kept = [node for node in graph.node if any(o in read for o in node.output)]
        if len(kept) == len(graph.node):
            return
        _set_nodes(graph, kept)


# (model file, its size and time, ONNX Runtime's version, optimisers left out) -> the tidied graph that passed
# its check, or None where ONNX Runtime's own is used: later sessions of the same model in this process (the
# service, `validate`, `segment-many` workers) open the outcome directly.
_OUTCOMES: dict[tuple, bytes | None] = {}
_TIDIED_SESSIONS: "weakref.WeakSet" = weakref.WeakSet()


def runs_tidied(session) -> bool:
    """Whether `session` runs a tidied graph (for the log line a bug report quotes)."""
    return session in _TIDIED_SESSIONS


def open_tidied(ort, model: str | bytes, options, providers: list, disabled: tuple):
    """A session of `model` with its channels-last int8 graph tidied, where that answers exactly as ONNX
    Runtime's own session of it (same options) does; ONNX Runtime's own otherwise."""
    key = _outcome_key(ort, model, disabled)
    if key in _OUTCOMES:
        tidied = _OUTCOMES[key]
        session = ort.InferenceSession(tidied or model, sess_options=options, providers=providers,
                                       disabled_optimizers=list(disabled))
    else:
        session = ort.InferenceSession(model, sess_options=options, providers=providers,
                                       disabled_optimizers=list(disabled))
        checked = _tidied_graph(ort, model, options, providers, disabled, session) if is_int8(model) else None
        tidied, session = checked or (None, session)  # the checked session is the one to run: not opened again
        if key is not None:
            _OUTCOMES[key] = tidied
    if tidied is not None:
        _TIDIED_SESSIONS.add(session)
    return session


def _tidied_graph(ort, model: str | bytes, options, providers: list, disabled: tuple, session) -> tuple | None:
    """The serialised tidied graph and a session of it, if it answers a test tile exactly as `session` does."""
    import onnx

    try:
        with tempfile.TemporaryDirectory(prefix="deadtree-ort-") as tmp:
            saved = Path(tmp) / "optimised.onnx"
            options.optimized_model_filepath = str(saved)
            try:
                ort.InferenceSession(model, sess_options=options, providers=providers,
                                     disabled_optimizers=[*disabled, NCHWC_PASS])
            finally:
                options.optimized_model_filepath = ""
            optimised = onnx.load(saved)
        if not tidy(optimised):
            return None
        tidied = optimised.SerializeToString()
        candidate = ort.InferenceSession(tidied, sess_options=options, providers=providers,
                                         disabled_optimizers=list(disabled))
        if not same_answers(session, candidate):
            log.debug("the tidied channels-last graph changed the answers: kept ONNX Runtime's own")
            return None
    except Exception as exc:  # an ONNX Runtime whose optimised graph looks otherwise: its own session is fine
        log.debug("the channels-last graph could not be tidied (%s): kept ONNX Runtime's own", exc)
        return None
    return tidied, candidate


def _outcome_key(ort, model: str | bytes, disabled: tuple) -> tuple | None:
    if isinstance(model, bytes):
        return None
    stat = Path(model).stat()
    return str(Path(model).resolve()), stat.st_size, stat.st_mtime_ns, ort.__version__, tuple(disabled)


def same_answers(reference, candidate) -> bool:
    spec = reference.get_inputs()[0]
    bands = spec.shape[1] if isinstance(spec.shape[1], int) else 3
    tile = np.random.default_rng(0).random((1, bands, CHECK_SIDE, CHECK_SIDE), dtype=np.float32)
    expected = reference.run(None, {spec.name: tile})[0]
    got = candidate.run(None, {candidate.get_inputs()[0].name: tile})[0]
    return expected.shape == got.shape and bool(np.array_equal(expected, got))


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
