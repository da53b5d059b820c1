"""Blank the GPU code for other architectures in a CUDA shared library, so that it compresses to what one card needs.

onnxruntime-gpu's CUDA provider (284 MB) carries every kernel for six GPU generations; the lent machine can
receive 64 MiB per call. This keeps the file's layout (offsets, sizes, every fatbin and entry header) and only
overwrites with zeros the payloads of machine-code entries built for other architectures. The CUDA driver
picks an entry by its header, so it never reads a blanked payload on the kept architecture's card; on any
other card the library is broken, which is why this is a transfer aid and never shipped.

    python3 scripts/device/prune_fatbin.py LIBRARY --keep 90    # H100 / H200 (sm_90, sm_90a)
"""
from __future__ import annotations

import argparse
import mmap
import struct
from collections import Counter
from pathlib import Path

FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)
ELF_KIND = 2


def entries(data) -> list[tuple[int, int, int, int]]:
    """(payload offset, payload size, kind, arch) of every entry of every fatbin in the file."""
    found, pos = [], 0
    while (start := data.find(FATBIN_MAGIC, pos)) >= 0:
        _, header_size, body = struct.unpack_from("<HHQ", data, start + 4)
        if header_size != 16 or start + 16 + body > len(data):
            pos = start + 4  # the magic's bytes by chance, not a fatbin
            continue
        entry, end = start + 16, start + 16 + body
        while entry < end:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            arch = struct.unpack_from("<I", data, entry + 28)[0]
            found.append((entry + entry_header, payload, kind, arch))
            entry += entry_header + payload
        pos = end
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library", type=Path)
    parser.add_argument("--keep", type=int, required=True, help="SM architecture to keep, e.g. 90")
    args = parser.parse_args()
    kept, blanked = Counter(), Counter()
    with open(args.library, "r+b") as f, mmap.mmap(f.fileno(), 0) as data:
        for offset, size, kind, arch in entries(data):
            if kind == ELF_KIND and arch != args.keep:
                data[offset:offset + size] = bytes(size)
                blanked[arch] += size
            else:
                kept[arch] += size
    mb = lambda c: {a: round(s / 1e6, 1) for a, s in sorted(c.items())}  # noqa: E731
    print(f"kept MB by arch {mb(kept)}; blanked {mb(blanked)}")
    if not kept:
        raise SystemExit(f"no entry for sm_{args.keep}: the library would not run anywhere")


if __name__ == "__main__":
    main()
