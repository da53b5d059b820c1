"""A one-line description of this machine, for model cards and benchmark records."""
from __future__ import annotations

import functools
import os
import platform
from pathlib import Path


# Widest first: the figures of int8 and fp32 models differ about fourfold between hosts that share the name
# "AMD EPYC" but not these (2026-11-26: int8 1024 px tiles at 1.26 tile-MP/s on an AVX2-only host, 4.7 with VNNI).
VECTOR_EXTENSIONS = (
    ("amx_tile", "AMX"), ("avx512_vnni", "AVX-512 VNNI"), ("avx512_bf16", "AVX-512 BF16"),
    ("avx512f", "AVX-512"), ("avx_vnni", "AVX-VNNI"), ("avx2", "AVX2"),
)


@functools.lru_cache(maxsize=None)  # read once a process: every model load logs the extensions
def _cpuinfo_field(name: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def vector_extensions(flags: str | None = None) -> str:
    """The SIMD extensions that decide model speed, e.g. "AVX-512 VNNI, AVX-512 BF16, AVX-512, AVX2"."""
    present = set((flags if flags is not None else _cpuinfo_field("flags") or "").split())
    found = [label for flag, label in VECTOR_EXTENSIONS if flag in present]
    return ", ".join(found) or "no AVX2"


def usable_cores() -> int:
    """Cores this process may use (respects taskset / container CPU sets, unlike os.cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def machine_description() -> str:
    return f"{cpu_name()} ({vector_extensions()}), {usable_cores()} cores, {platform.system()} {platform.release()}"
