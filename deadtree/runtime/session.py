"""ONNX Runtime sessions with an explicit, logged choice of execution provider."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from deadtree.errors import ModelError
from deadtree.runtime.metadata import ModelInfo, read_model_info

log = logging.getLogger("deadtree")

PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
AUTO_ORDER = ("tensorrt", "cuda", "cpu")
GPU_PROVIDERS = (PROVIDERS["tensorrt"], PROVIDERS["cuda"])


def choose_providers(device: str, available: list[str]) -> list[str]:
    """Providers to ask for, best first; asking for a GPU that is not there is an error, not a silent fallback."""
    if device == "auto":
        return [PROVIDERS[d] for d in AUTO_ORDER if PROVIDERS[d] in available]
    if device not in PROVIDERS:
        raise ModelError(f"unknown device {device!r}: use auto, cpu, cuda or tensorrt")
    wanted = PROVIDERS[device]
    if wanted not in available:
        raise ModelError(
            f"--device {device} asked for {wanted}, but this ONNX Runtime offers only {', '.join(available)}. "
            "Install onnxruntime-gpu with a matching CUDA, or use --device cpu"
        )
    return [wanted] + ([PROVIDERS["cpu"]] if device != "cpu" else [])


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
    """Cores this process may use (respects taskset / container CPU sets, unlike os.cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class OnnxModel:
    """One model: its metadata and a session that runs batches of tiles."""

    def __init__(self, path: Path, device: str = "auto", threads: int | None = None,
                 io_binding: bool | None = None, spin: bool = False):
        import onnxruntime as ort

        self.path = Path(path)
        self.info: ModelInfo = read_model_info(self.path)
        providers = choose_providers(device, ort.get_available_providers())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not spin:
            # Idle ONNX Runtime threads otherwise spin for a while after each batch, taking the cores that the
            # read and finish stages of the pipeline need in exactly those moments.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # keep provider probing quiet on machines without a GPU
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # ORT raises its own opaque types
            raise ModelError(f"could not load {self.path.name} on {device}: {exc}") from exc
        self.provider = self.session.get_providers()[0]
        if device != "auto" and self.provider != PROVIDERS[device]:
            raise ModelError(f"asked for {device}, but ONNX Runtime gave {self.provider}")
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        # On a GPU, binding the input to device memory and the output to host memory spares ONNX Runtime a
        # staging copy each way per batch; on the CPU there is nothing to spare, but the path works the same.
        self.io_binding = self.provider in GPU_PROVIDERS if io_binding is None else io_binding
        self._device = "cuda" if self.provider in GPU_PROVIDERS else "cpu"
        if self.provider == "CPUExecutionProvider":
            from deadtree.machine import vector_extensions

            # the same model runs about four times faster with AVX-512 VNNI than with AVX2 alone
            threads = options.intra_op_num_threads
            log.info("%s %s runs on %s (%d thread%s; %s)", self.info.name, self.info.version, self.provider,
                     threads, "" if threads == 1 else "s", vector_extensions())
        else:
            log.info("%s %s runs on %s", self.info.name, self.info.version, self.provider)

        self.seconds = 0.0  # time spent inside ONNX Runtime, for overhead accounting

    def run(self, batch: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.io_binding:
            out = self._run_bound(batch)
        else:
            out = self.session.run(None, {self.input_name: batch})[0]
        self.seconds += time.perf_counter() - started
        return out

    def _run_bound(self, batch: np.ndarray) -> np.ndarray:
        import onnxruntime as ort

        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.input_name, ort.OrtValue.ortvalue_from_numpy(batch, self._device, 0))
        binding.bind_output(self.output_name, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]
