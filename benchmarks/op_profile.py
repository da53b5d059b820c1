"""Where a model's time goes, operator by operator, from ONNX Runtime's own profiler: the companion of
benchmark 4 (floor.py). The floor counts only convolutions; this shows how much of the measured time is the
convolutions at all, and how much is data movement around them (Resize, Transpose, layout reorders,
quantize / dequantize), which no cut in multiply-adds would remove.

    python benchmarks/op_profile.py [--model deadtree-rgbn-int8] [--model ...] [--tile 1024] [--runs 3]

Runs on the CPU with the threads `segment` would use, one tile per call at the pipeline's tile size, with the
graph optimisation `segment` chooses for the model on this host and, where that is not ONNX Runtime's full
optimisation, with the full optimisation too.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from common import report

from deadtree.runtime.metadata import read_model_info
from deadtree.runtime.registry import resolve_model
from deadtree.runtime.session import Plan, cpu_threads, graph_optimization, open_session

CONVOLUTIONS = {"Conv", "QLinearConv", "ConvInteger", "FusedConv", "NhwcFusedConv"}


def kernel_times(path: Path, tile: int, runs: int, threads: int, plan: Plan) -> tuple[dict[str, float], dict[str, int]]:
    """Milliseconds per call spent in each operator type, and how many nodes of each type ran, with the graph
    optimisation plan of deadtree.runtime.session.graph_optimization."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = os.path.join(folder, "profile")
        session = open_session(ort, str(path), options, ["CPUExecutionProvider"], plan)
        spec = session.get_inputs()[0]
        image = np.random.default_rng(0).random((1, spec.shape[1], tile, tile), dtype=np.float32)
        for _ in range(runs + 1):  # the first call also plans memory: it is left out below
            session.run(None, {spec.name: image})
        events = json.loads(Path(session.end_profiling()).read_text())
    # the last `runs` calls only: the first plans memory, and opening a tidied graph adds a check call before it
    calls = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[-runs:]
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
               and any(start <= e["ts"] <= end for start, end in calls)]
    times: dict[str, float] = collections.defaultdict(float)
    counts: dict[str, int] = collections.Counter()
    for event in kernels:
        times[event["args"]["op_name"]] += event["dur"] / 1000 / runs
        counts[event["args"]["op_name"]] += 1
    return dict(times), {op: n // runs for op, n in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", action="append", default=None, help="name or path; repeat to compare")
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for name in args.model or ["deadtree-rgbn-int8", "deadtree-rgbn"]:
        path = resolve_model(name, "segmenter")
        chosen = graph_optimization(ort, read_model_info(path).quantized, on_cpu=True)
        for plan in dict.fromkeys([chosen, Plan(ort.GraphOptimizationLevel.ORT_ENABLE_ALL)]):
            times, counts = kernel_times(path, args.tile, args.runs, cpu_threads(), plan)
            total = sum(times.values())
            conv = sum(t for op, t in times.items() if op in CONVOLUTIONS)
            common = {"model": path.stem, "graph_optimization": plan.name}
            for op, ms in sorted(times.items(), key=lambda kv: -kv[1]):
                if ms / total >= 0.005:
                    rows.append({**common, "operator": op, "nodes": counts[op], "ms_per_tile": ms, "share": ms / total})
            rows.append({**common, "operator": "(all convolutions)", "nodes": sum(
                n for op, n in counts.items() if op in CONVOLUTIONS), "ms_per_tile": conv, "share": conv / total})
            rows.append({**common, "operator": "(all)", "nodes": sum(counts.values()), "ms_per_tile": total,
                         "share": 1.0})
    report("op_profile", rows, {"tile_px": args.tile, "threads": cpu_threads(), "runs": args.runs,
                                "note": "kernel time per operator type from ONNX Runtime's profiler, first call "
                                        "left out; operators under 0.5% of the time are not listed"})


if __name__ == "__main__":
    main()
