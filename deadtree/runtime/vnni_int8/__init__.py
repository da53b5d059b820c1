"""CPU tuning kept apart from the product: int8 models on CPUs with AVX-512 VNNI (or AVX-VNNI) run ONNX
Runtime's channels-last graph with its waste rewritten away (channels_last.py lists what, graph_rewrites.py
holds the passes, graph_cache.py keeps checked outcomes on disk for later processes). The one entry point is `open_tidied`, which session.graph_optimization chooses only on such
CPUs, where it was measured to pay (docs/performance.md); every rewritten graph must answer a test tile bit for
bit as ONNX Runtime's own does, or ONNX Runtime's own is used."""
from deadtree.runtime.vnni_int8.channels_last import open_tidied, runs_tidied

__all__ = ["open_tidied", "runs_tidied"]
