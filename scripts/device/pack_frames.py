"""Split the USA frames into tar chunks small enough for the lent GPU machine's per-call transfer limit.

Each chunk is a valid Kaggle-layout subset (RGB_images/, NIR_images/, masks/ of whole frames), so the first
one alone can smoke-test training there. Unpack them all into one folder on that machine.

    python3 scripts/device/pack_frames.py ../shared/data/usa_deadtree .devdata --chunk-mb 54,60
"""
from __future__ import annotations

import argparse
import tarfile
from pathlib import Path


def frame_files(root: Path) -> list[list[Path]]:
    frames = []
    for rgb in sorted((root / "RGB_images").glob("RGB_*.png")):
        sample = rgb.stem[len("RGB_"):]
        files = [rgb, root / "NIR_images" / f"NIR_{sample}.png", root / "masks" / f"mask_{sample}.png"]
        frames.append([f for f in files if f.exists()])
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--chunk-mb", default="48", help="chunk sizes in MB, comma-separated; the last repeats")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    limits = [float(x) * 1e6 for x in args.chunk_mb.split(",")]
    chunks: list[list[Path]] = [[]]
    size = 0
    # Interleave the frames so that every chunk holds every state and county.
    frames = frame_files(args.data)
    order = [frames[i] for offset in range(3) for i in range(offset, len(frames), 3)]
    for files in order:
        frame_bytes = sum(f.stat().st_size for f in files)
        if size + frame_bytes > limits[min(len(chunks), len(limits)) - 1] and chunks[-1]:
            chunks.append([])
            size = 0
        chunks[-1].extend(files)
        size += frame_bytes
    for index, files in enumerate(chunks):
        path = args.out / f"frames_{index}.tar"
        with tarfile.open(path, "w") as tar:
            for f in files:
                tar.add(f, arcname=f"{f.parent.name}/{f.name}")
        print(f"{path}: {len(files) // 3} frames, {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
