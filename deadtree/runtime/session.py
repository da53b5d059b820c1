"""ONNX Runtime sessions with an explicit, logged choice of execution provider."""
from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from deadtree.errors import ModelError
from deadtree.runtime.model_sessions import ModelSessions, OpenedSession
from deadtree.runtime.metadata import ModelInfo, file_version, read_model_info

log = logging.getLogger("deadtree")

PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
AUTO_ORDER = ("tensorrt", "cuda", "cpu")
GPU_PROVIDERS = (PROVIDERS["tensorrt"], PROVIDERS["cuda"])
TENSORRT_LIBRARY = "libnvinfer.so.10"  # what ONNX Runtime's TensorRT provider loads (TensorRT 10)
# How ONNX Runtime's CUDA provider picks each convolution's cuDNN algorithm: EXHAUSTIVE (its own default) times
# them all for every new input shape, HEURISTIC asks cuDNN's rules, DEFAULT takes the first. `segment` meets a
# handful of shapes a few times each (edge tiles are cut short), so the search never pays back: on an H100 a 4096
# px scene took 8.6 s with EXHAUSTIVE and 2.1 s with HEURISTIC (fp16; benchmarks/results/gpu_onnx-h100.json).
ENV_CUDNN_SEARCH = "DEADTREE_CUDNN_SEARCH"
# Overrides graph_optimization's choice (auto): all, tidied, extended or keep-layout, for a host where the
# rule measures wrong.
ENV_GRAPH_OPTIMIZATION = "DEADTREE_GRAPH_OPTIMIZATION"


def choose_providers(device: str, available: list[str], tensorrt_loads: bool | None = None) -> list[str]:
    """Providers to ask for, best first; asking for a GPU that is not there is an error, not a silent fallback.

    onnxruntime-gpu lists TensorRT among its providers whether or not TensorRT itself is installed; without it,
    asking for that provider costs a screen of loader errors before ONNX Runtime falls back. So TensorRT is
    offered only where its library loads (`tensorrt_loads`, probed when not given)."""
    if device not in PROVIDERS and device != "auto":
        raise ModelError(f"unknown device {device!r}: use auto, cpu, cuda or tensorrt")
    if PROVIDERS["tensorrt"] in available and device in ("auto", "tensorrt"):
        if not (tensorrt_library_loads() if tensorrt_loads is None else tensorrt_loads):
            if device == "tensorrt":
                raise ModelError(
                    f"--device tensorrt: this ONNX Runtime has the TensorRT provider, but TensorRT itself "
                    f"({TENSORRT_LIBRARY}) is not installed. Install TensorRT 10 for your CUDA, or use --device cuda")
            available = [p for p in available if p != PROVIDERS["tensorrt"]]
    if device == "auto":
        return [PROVIDERS[d] for d in AUTO_ORDER if PROVIDERS[d] in available]
    wanted = PROVIDERS[device]
    if wanted not in available:
        raise ModelError(
            f"--device {device} asked for {wanted}, but this ONNX Runtime offers only {', '.join(available)}. "
            "Install onnxruntime-gpu with a matching CUDA, or use --device cpu"
        )
    return [wanted] + ([PROVIDERS["cpu"]] if device != "cpu" else [])


def cuda_options() -> dict:
    search = os.environ.get(ENV_CUDNN_SEARCH, "HEURISTIC").upper()
    if search not in ("EXHAUSTIVE", "HEURISTIC", "DEFAULT"):
        raise ModelError(f"{ENV_CUDNN_SEARCH}={search}: use EXHAUSTIVE, HEURISTIC or DEFAULT")
    return {"cudnn_conv_algo_search": search}


def tensorrt_library_loads() -> bool:
    try:
        ctypes.CDLL(TENSORRT_LIBRARY)
    except OSError:
        return False
    return True


def preload_gpu_libraries(ort) -> None:
    """Load CUDA and cuDNN from the nvidia-* pip packages (PyTorch's, or onnxruntime-gpu[cuda]'s) when they are
    installed, so that a GPU provider finds them without LD_LIBRARY_PATH; elsewhere the system's are used."""
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime >= 1.21
    if preload is None:
        return
    said = io.StringIO()
    try:
        # preload_dlls prints each library it cannot load to stdout, where the CLI's own answer goes; what
        # matters reaches the user as one line if the provider then fails to start (OnnxModel)
        with contextlib.redirect_stdout(said):
            preload()
    except Exception as exc:  # a missing optional library must not stop the session
        log.debug("preloading CUDA libraries: %s", exc)
    if said.getvalue().strip():
        log.debug("preloading CUDA libraries: %s", said.getvalue().strip())


def runs_on_gpu(device: str) -> bool:
    """Whether a model opened for `device` will run on a GPU provider (errors for missing ones come later,
    from OnnxModel, with the full message)."""
    import onnxruntime as ort

    try:
        providers = choose_providers(device, ort.get_available_providers())
    except ModelError:
        return False
    return bool(providers) and providers[0] in GPU_PROVIDERS


def cpu_threads() -> int:
    """ONNX Runtime's threads on a CPU: every core this process may use."""
    from deadtree.machine import usable_cores

    return usable_cores()


KEEP_LAYOUT = ("NhwcTransformer",)  # ONNX Runtime's pass that turns quantized convolutions channels-last
GRAPH_OPTIMIZATIONS = ("auto", "all", "tidied", "extended", "keep-layout")


class Plan(NamedTuple):
    """How ONNX Runtime optimises a graph: its level, the optimisers left out, and whether an int8 graph is
    tidied for a VNNI CPU (deadtree.runtime.vnni_int8)."""

    level: object
    disabled: tuple[str, ...] = ()
    tidied: bool = False

    @property
    def name(self) -> str:
        return self.level.name + "".join(f" without {n}" for n in self.disabled) + \
            (", graph tidied for this CPU" if self.tidied else "")


def graph_optimization(ort, quantized: bool, on_cpu: bool, extensions: str | None = None) -> Plan:
    """The graph optimisation plan for a model: ONNX Runtime's full optimisation, except for int8 models on a
    CPU:

    - with VNNI, ONNX Runtime's channels-last int8 network, tidied (deadtree.runtime.vnni_int8): 211 against
      ONNX Runtime's own 350 ms of kernel time per 1024 px tile, with the same answers bit for bit;
    - without VNNI, the channels-first layout (the NHWC pass left out): the channels-last network was 12-15%
      slower there alone, `segment` 12-23%, with bit-identical outputs (docs/history/performance-log-2026-11.md)."""
    chosen = os.environ.get(ENV_GRAPH_OPTIMIZATION, "auto").lower()
    if chosen not in GRAPH_OPTIMIZATIONS:
        raise ModelError(f"{ENV_GRAPH_OPTIMIZATION}={chosen}: use {', '.join(GRAPH_OPTIMIZATIONS)}")
    if chosen == "auto":
        if extensions is None:
            from deadtree.machine import vector_extensions

            extensions = vector_extensions()
        if not on_cpu or not quantized:
            chosen = "all"
        else:
            chosen = "tidied" if "VNNI" in extensions else "keep-layout"
    level = ort.GraphOptimizationLevel
    if chosen == "extended":
        return Plan(level.ORT_ENABLE_EXTENDED)
    if chosen == "keep-layout":
        return Plan(level.ORT_ENABLE_ALL, KEEP_LAYOUT)
    return Plan(level.ORT_ENABLE_ALL, tidied=chosen == "tidied")


def open_session(ort, model, options, providers: list, plan: Plan):
    """An ONNX Runtime session with a graph_optimization plan applied whole: its level and the optimisers it
    leaves out travel together, since the level alone would quietly keep the pass the plan removes."""
    options.graph_optimization_level = plan.level
    if plan.tidied and providers == [PROVIDERS["cpu"]]:
        from deadtree.runtime.vnni_int8 import open_tidied

        return open_tidied(ort, model, options, providers, plan.disabled)
    return ort.InferenceSession(model, sess_options=options, providers=providers,
                                disabled_optimizers=list(plan.disabled))


def session_key(path: Path, device: str, threads: int) -> tuple:
    """What a session depends on: the model file as it is now (a rewritten file is a new model), the device
    asked for, the threads, and the environment's overrides of graph optimisation and cuDNN search."""
    return (*file_version(path), device, threads,
            os.environ.get(ENV_GRAPH_OPTIMIZATION), os.environ.get(ENV_CUDNN_SEARCH))


def _open(path: Path, info: ModelInfo, device: str, threads: int) -> OpenedSession:
    import onnxruntime as ort

    providers = choose_providers(device, ort.get_available_providers())
    wanted = providers[0] if providers else None
    if wanted in GPU_PROVIDERS:
        preload_gpu_libraries(ort)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    plan = graph_optimization(ort, info.quantized, wanted not in GPU_PROVIDERS)
    # Idle ONNX Runtime threads otherwise spin for a while after each batch, taking the cores that the read
    # and finish stages of the pipeline need in exactly those moments.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # keep provider probing quiet on machines without a GPU
    specs = [(p, cuda_options()) if p == PROVIDERS["cuda"] else p for p in providers]
    try:
        session = open_session(ort, str(path), options, specs, plan)
    except Exception as exc:  # ORT raises its own opaque types
        raise ModelError(f"could not load {path.name} on {device}: {exc}") from exc
    provider = session.get_providers()[0]
    if device != "auto" and provider != PROVIDERS[device]:
        raise ModelError(f"--device {device}: ONNX Runtime could not start {PROVIDERS[device]} and fell back to "
                         f"{provider}; its CUDA, cuDNN (or TensorRT) libraries are missing or do not match "
                         "this onnxruntime-gpu (ONNX Runtime's own message, if any, is above)")
    if wanted in GPU_PROVIDERS and provider not in GPU_PROVIDERS:
        # ONNX Runtime falls back to the CPU when the GPU's libraries do not load; say so, and how to find out
        log.warning("ONNX Runtime offers %s but could not start it (CUDA or cuDNN libraries missing or "
                    "mismatched?): running on %s", wanted, provider)
    return OpenedSession(session, provider, plan, session.get_inputs()[0].name, session.get_outputs()[0].name)


class OnnxModel:
    """One model for one run: its metadata and a session that runs batches of tiles. The session comes from
    `sessions` where an earlier run of its owner handed one back (release())."""

    def __init__(self, path: Path, device: str = "auto", threads: int | None = None,
                 sessions: ModelSessions | None = None):
        self.path = Path(path)
        self.info: ModelInfo = read_model_info(self.path)
        threads = threads or cpu_threads()
        self._key = session_key(self.path, device, threads)
        self._sessions = sessions
        opened = sessions.take(self._key) if sessions is not None else None
        self._opened = opened or _open(self.path, self.info, device, threads)
        self.session = self._opened.session
        self.provider = self._opened.provider
        self.graph_optimization = self._opened.graph_optimization
        self.input_name = self._opened.input_name
        self.output_name = self._opened.output_name
        self._released = False
        if self.provider == "CPUExecutionProvider":
            from deadtree.machine import vector_extensions

            from deadtree.runtime.vnni_int8 import runs_tidied

            # the same model runs about four times faster with AVX-512 VNNI than with AVX2 alone
            log.info("%s %s runs on %s (%d thread%s; %s%s%s)", self.info.name, self.info.version, self.provider,
                     threads, "" if threads == 1 else "s", vector_extensions(),
                     "; channels-last int8 graph, tidied" if runs_tidied(self.session) else "",
                     "; session of an earlier run" if opened else "")
        else:
            log.info("%s %s runs on %s%s", self.info.name, self.info.version, self.provider,
                     " (session of an earlier run)" if opened else "")

        self.seconds = 0.0  # time spent inside ONNX Runtime, for overhead accounting
        # perf_counter() at the start of the first call and at the end of the last: what a run did before and
        # after the model, for the throughput benchmark's breakdown of the overhead
        self.first_call: float | None = None
        self.last_return: float | None = None

    def release(self) -> None:
        """Hand the session back to its owner's ModelSessions (if any) for the next run of this model with these
        settings; this object runs nothing more."""
        if not self._released:
            self._released = True
            if self._sessions is not None:
                self._sessions.give_back(self._key, self._opened)

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self._released:
            raise RuntimeError(f"{self.path.name}: run() after release()")
        started = time.perf_counter()
        if self.first_call is None:
            self.first_call = started
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        out = self.session.run(None, {self.input_name: batch})[0]
        self.last_return = time.perf_counter()
        self.seconds += self.last_return - started
        return out
