"""ONNX Runtime's channels-last int8 graph, tidied where it wastes time on a CPU with VNNI.

There ONNX Runtime runs a quantized network channels-last (its NhwcTransformer), and in the U-Net's graph six
things cost over a third of the model's time for nothing (benchmarks/op_profile.py, docs/history/performance-log-2026-11.md; the
passes are in graph_rewrites.py beside it):

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
  inverse is dropped;
- the encoder's MaxPool runs on dequantized floats, channels-first, behind reorders of its own (19 ms a
  tile); it runs on the uint8 values channels-last instead (2 ms), requantized;
- the one-channel segmentation head is a channels-last QLinearConv, which ONNX Runtime runs 3-4x slower with
  fewer than 16 filters (40-60 ms a tile); zero filters make it 16 wide (14 ms) and its one channel is
  gathered from the result (2 ms);
- its QLinearConcat along the channels of channels-last tensors requantizes pixel by pixel, twice as slow as
  requantizing each input whole (a one-input QLinearConcat) and copying with a plain Concat; an upsampled
  input is requantized before its upsampling, on a quarter of the values.

ONNX Runtime's optimised graph is saved, rewritten, and the result kept only where it answers a test tile
bit for bit as the session it replaces does; anything else keeps that session.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from deadtree.runtime.vnni_int8.graph_rewrites import (cancel_transpose_pairs, channels_last_joins, drop_unread_nodes,
                                             pool_channels_last, read_shapes_before_dequantizing, replace_resizes,
                                             requantize_before_upsampling, sort_nodes, split_requantizing_concats,
                                             widen_narrow_convs)
from deadtree.runtime.metadata import file_version
from deadtree.runtime.vnni_int8.graph_cache import MISSING, save_outcome, saved_outcome

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
    # pooling first: the additions and concatenations that read its result can then move channels-last too
    done = pool_channels_last(graph) + widen_narrow_convs(graph) + requantize_before_upsampling(graph)
    sort_nodes(graph)
    done += replace_resizes(graph) + channels_last_joins(graph) + cancel_transpose_pairs(graph)
    # after the joins, which move QLinearConcats (not plain Concats) channels-last
    done += split_requantizing_concats(graph) + read_shapes_before_dequantizing(graph)
    if done:
        drop_unread_nodes(graph)
        sort_nodes(graph)
    return done


# (model file, its size and time, ONNX Runtime's version, optimisers left out) -> the tidied graph that passed
# its check, or None where ONNX Runtime's own is used: later sessions of the same model in this process (the
# service, `validate`, `segment-many` workers) open the outcome directly, and later processes find it on disk
# (graph_cache.py).
_OUTCOMES: dict[tuple, bytes | None] = {}


def runs_tidied(session) -> bool:
    """Whether `session` runs a tidied graph (for the log line a bug report quotes)."""
    return isinstance(session, TidiedSession)


def open_tidied(ort, model: str | bytes, options, providers: list, disabled: tuple):
    """A session of int8 `model` with its channels-last graph tidied, where that answers exactly as ONNX
    Runtime's own session of it (same options) does; ONNX Runtime's own otherwise."""
    def own():
        return ort.InferenceSession(model, sess_options=options, providers=providers,
                                    disabled_optimizers=list(disabled))

    key = _outcome_key(ort, model, disabled)
    if key is not None and key not in _OUTCOMES:
        saved = saved_outcome(key)  # a later process of the same model, ONNX Runtime and CPU
        if saved is not MISSING:
            _OUTCOMES[key] = saved
    if key in _OUTCOMES:
        tidied = _OUTCOMES[key]
        session = ort.InferenceSession(tidied, sess_options=options, providers=providers,
                                       disabled_optimizers=list(disabled)) if tidied else own()
    else:
        session = own()
        checked = _checked(ort, model, options, providers, disabled, session)
        tidied, session = checked or (None, session)  # the checked session is the one to run: not opened again
        if key is not None:
            _OUTCOMES[key] = tidied
            save_outcome(key, tidied)
    return session if tidied is None else TidiedSession(session, own)


SIDE_MULTIPLE = 32  # the tidied graph's sides: five halvings of a U-Net undone by exact doublings


class TidiedSession:
    """A tidied session that hands an input whose sides are not multiples of SIDE_MULTIPLE to ONNX Runtime's
    own session of the model, opened at the first such input. The tidied upsampling doubles each side
    exactly, where the model's own Resize takes the skip connection's size, which differs for such sides (the
    tidied graph would fail there). `segment` and the validation code only send such sides by mistake."""

    def __init__(self, tidied, open_own):
        self._tidied, self._open_own, self._own = tidied, open_own, None

    def run(self, output_names, input_feed: dict, *args, **kwargs):
        if all(s % SIDE_MULTIPLE == 0 for x in input_feed.values() for s in np.shape(x)[2:]):
            return self._tidied.run(output_names, input_feed, *args, **kwargs)
        if self._own is None:
            self._own = self._open_own()
        return self._own.run(output_names, input_feed, *args, **kwargs)

    def __getattr__(self, name: str):  # everything else (inputs, providers, options, profiling) is the tidied one's
        return getattr(self._tidied, name)


def _checked(ort, model: str | bytes, options, providers: list, disabled: tuple, session) -> tuple | None:
    """The int8 model's channels-last graph tidied and a session of it, where that answers a test tile bit for
    bit as `session` does. None otherwise (and for a float model)."""
    kind = "tidied channels-last"
    try:
        graph = _tidied_bytes(ort, model, options, providers, disabled) if is_int8(model) else None
        if graph is None:
            return None
        candidate = ort.InferenceSession(graph, sess_options=options, providers=providers,
                                         disabled_optimizers=list(disabled))
        if not same_answers(session, candidate):
            log.debug("the %s graph changed the answers: kept ONNX Runtime's own", kind)
            return None
    except Exception as exc:  # a graph that looks otherwise (another ONNX Runtime, another network): its own is fine
        log.debug("the %s graph could not be made (%s): kept ONNX Runtime's own", kind, exc)
        return None
    return graph, candidate


def _tidied_bytes(ort, model: str | bytes, options, providers: list, disabled: tuple) -> bytes | None:
    """ONNX Runtime's optimised graph of an int8 model, tidied and serialised; None where nothing was tidied."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="deadtree-ort-") as tmp:
        saved = Path(tmp) / "optimised.onnx"
        options.optimized_model_filepath = str(saved)
        try:
            ort.InferenceSession(model, sess_options=options, providers=providers,
                                 disabled_optimizers=[*disabled, NCHWC_PASS])
        finally:
            options.optimized_model_filepath = ""
        optimised = onnx.load(saved)
    return optimised.SerializeToString() if tidy(optimised) else None


def _outcome_key(ort, model: str | bytes, disabled: tuple) -> tuple | None:
    if isinstance(model, bytes):
        return None
    return (*file_version(model), ort.__version__, tuple(disabled))


def same_answers(reference, candidate, tolerance: float = 0.0) -> bool:
    """Whether `candidate` answers a random test tile as `reference` does: bit for bit, or within `tolerance`."""
    import onnxruntime as ort

    spec = reference.get_inputs()[0]
    bands = spec.shape[1] if isinstance(spec.shape[1], int) else 3
    tile = np.random.default_rng(0).random((1, bands, CHECK_SIDE, CHECK_SIDE), dtype=np.float32)
    expected = reference.run(None, {spec.name: tile})[0]
    quiet = ort.RunOptions()
    quiet.log_severity_level = 4  # a candidate that fails is refused here, not reported to the user
    got = candidate.run(None, {candidate.get_inputs()[0].name: tile}, quiet)[0]
    if expected.shape != got.shape:
        return False
    return bool(np.array_equal(expected, got) if tolerance == 0 else np.allclose(expected, got, rtol=0, atol=tolerance))
