"""Nearest-neighbour upsampling as plain copies in ONNX Runtime's channels-last int8 graphs.

On a CPU with VNNI, ONNX Runtime runs a quantized network channels-last (its NhwcTransformer), and there the
U-Net decoder's 2x nearest-neighbour Resize falls to a generic per-element kernel: 64 ms of a 358 ms 1024 px
tile on the 2-core VNNI host, against 6 ms for the channels-first kernel (benchmarks/op_profile.py). The same
result, for a channels-last tensor (N, H, W, C), is the tensor concatenated with itself along a new axis in
front of the channels (each pixel twice: the columns doubled), then with itself along a new axis in front of
the columns (each row twice), with two reshapes that move no data: block copies instead of index arithmetic.

ONNX Runtime's optimised graph is saved, each such Resize replaced, and the result kept only where it gives
exactly the answers of the session it replaces on a test tile; anything else keeps that session.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger("deadtree")

NCHWC_PASS = "NchwcTransformer"  # its blocked layouts depend on the CPU: kept out of a graph that is saved
CHECK_SIDE = 64  # the test tile: the smallest a five-level U-Net takes, and quick


def quantized_with_resize(model: str | bytes) -> bool:
    """Whether a model has the int8 nodes and the Resize that the rewrite is for (read without its weights)."""
    import onnx

    graph = (onnx.load_model_from_string(model, load_external_data=False) if isinstance(model, bytes)
             else onnx.load(model, load_external_data=False)).graph
    ops = {node.op_type for node in graph.node}
    return "Resize" in ops and bool(ops & {"QuantizeLinear", "QLinearConv"})


def replace_channels_last_resizes(model) -> int:
    """Replace, in an ONNX Runtime-optimised ModelProto, each nearest-neighbour Resize that follows a quantized
    operator (there, channels-last uint8) and gives its output size by copies; returns how many."""
    from onnx import helper, numpy_helper

    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    nodes, constants, replaced = [], [], 0
    for node in graph.node:
        producer = producers.get(node.input[0]) if node.input else None
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Resize" or attributes.get("mode", b"nearest") != b"nearest"
                or producer is None or not producer.op_type.startswith("QLinear")
                or len(node.input) < 4 or not node.input[3]):
            nodes.append(node)
            continue
        x, sizes, y = node.input[0], node.input[3], node.output[0]
        axis, shape = f"{y}/copies_axis", f"{y}/copies_shape"
        constants += [numpy_helper.from_array(np.array([3], np.int64), axis),
                      # (N, H, W, 2, C) read as (N, H, 1, 2W, C): 0 keeps the input's size at that place
                      numpy_helper.from_array(np.array([0, 0, 1, -1, 0], np.int64), shape)]
        nodes += [
            helper.make_node("Unsqueeze", [x, axis], [f"{y}/copies_pixel"]),
            helper.make_node("Concat", [f"{y}/copies_pixel"] * 2, [f"{y}/copies_columns"], axis=3),
            helper.make_node("Reshape", [f"{y}/copies_columns", shape], [f"{y}/copies_row"]),
            helper.make_node("Concat", [f"{y}/copies_row"] * 2, [f"{y}/copies_rows"], axis=2),
            helper.make_node("Reshape", [f"{y}/copies_rows", sizes], [y]),
        ]
        replaced += 1
    if replaced:
        del graph.node[:]
        graph.node.extend(nodes)
        graph.initializer.extend(constants)
    return replaced


def with_upsampling_as_copies(ort, model: str | bytes, options, providers: list, disabled: tuple, session):
    """A session of `model` whose channels-last Resizes are copies, where that answers exactly as `session`
    (opened from `model` with the same options); `session` itself otherwise."""
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
        if not replace_channels_last_resizes(optimised):
            return session
        candidate = ort.InferenceSession(optimised.SerializeToString(), sess_options=options, providers=providers,
                                         disabled_optimizers=list(disabled))
        if not same_answers(session, candidate):
            log.debug("upsampling as copies changed the answers: kept ONNX Runtime's Resize")
            return session
    except Exception as exc:  # an ONNX Runtime whose optimised graph looks otherwise: its own session is fine
        log.debug("upsampling as copies not possible (%s): kept ONNX Runtime's Resize", exc)
        return session
    return candidate


def same_answers(reference, candidate) -> bool:
    spec = reference.get_inputs()[0]
    bands = spec.shape[1] if isinstance(spec.shape[1], int) else 3
    tile = np.random.default_rng(0).random((1, bands, CHECK_SIDE, CHECK_SIDE), dtype=np.float32)
    expected = reference.run(None, {spec.name: tile})[0]
    got = candidate.run(None, {candidate.get_inputs()[0].name: tile})[0]
    return expected.shape == got.shape and bool(np.array_equal(expected, got))
