"""Small georeferenced scenes with known 'dead trees' (bright discs), and a toy ONNX model that finds them.

The toy model is built with the onnx helper, not torch, so inference tests need only the inference stack.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import rasterio
from affine import Affine
from onnx import TensorProto, helper, numpy_helper

from deadtree.runtime.metadata import ModelInfo, attach_info

SHARED = Path(__file__).resolve().parents[2] / "shared"
if not SHARED.is_dir():
    SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GEOTIFF_DIR = SHARED / "data" / "geotiff"
USA_DIR = SHARED / "data" / "usa_deadtree"


def toy_model(path: Path, bands=("R", "G", "B", "NIR"), name="toy-rgbn", gsd=0.6, tile=64, overlap=16,
              default=True, min_peak=0.0) -> Path:
    """logit = 30 * (3x3 mean of the band mean - 0.95): bright discs are 'dead', the textured background not."""
    c = len(bands)
    weight = np.full((1, c, 3, 3), 1.0 / (9 * c), dtype=np.float32)
    nodes = [
        helper.make_node("Conv", ["image", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["conv", "k"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", c, "rows", "cols"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1, "rows", "cols"])],
        initializer=[numpy_helper.from_array(weight, "w"),
                     numpy_helper.from_array(np.array([-0.95], dtype=np.float32), "b"),
                     numpy_helper.from_array(np.array(30.0, dtype=np.float32), "k")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    info = ModelInfo(name=name, version="1.0", task="segmenter", bands=tuple(bands), gsd_m=gsd, tile_size=tile,
                     overlap=overlap, threshold=0.5, min_peak=min_peak, extra={"default": default})
    onnx.save(attach_info(model, info), str(path))
    return path


@dataclass
class Disc:
    row: int
    col: int
    radius: float


def disc_mask(height: int, width: int, discs: list[Disc]) -> np.ndarray:
    rr, cc = np.mgrid[:height, :width]
    mask = np.zeros((height, width), dtype=bool)
    for d in discs:
        mask |= (rr - d.row) ** 2 + (cc - d.col) ** 2 <= d.radius**2
    return mask


def write_scene(path: Path, height=300, width=260, bands=4, dtype="uint8", crs="EPSG:32633",
                transform: Affine | None = None, discs: list[Disc] | None = None, seed=0, nodata=None,
                border=0, border_value=0, colorinterp=None, tiled=False, alpha_mask=False) -> np.ndarray:
    """Write a textured scene with bright discs; returns the true disc mask (border cells excluded)."""
    rng = np.random.default_rng(seed)
    scale = 200 if dtype == "uint16" else 1
    data = rng.integers(40, 111, size=(bands, height, width)).astype(np.float64)
    if discs is None:
        discs = default_discs(height, width)
    truth = disc_mask(height, width, discs)
    data[:, truth] = 240
    data *= scale
    if border:
        edge = np.zeros((height, width), dtype=bool)
        edge[:border] = edge[-border:] = True
        edge[:, :border] = edge[:, -border:] = True
        data[:, edge] = border_value
        truth &= ~edge
    if dtype.startswith("float"):
        data = data / (255.0 * scale)
    if transform is None:
        transform = Affine(0.6, 0, 500000, 0, -0.6, 6700000)
    count = bands + (1 if alpha_mask else 0)
    profile = dict(driver="GTiff", height=height, width=width, count=count, dtype=dtype, crs=crs,
                   transform=transform, nodata=nodata)
    if tiled:
        profile.update(tiled=True, blockxsize=64, blockysize=64)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(dtype), indexes=list(range(1, bands + 1)))
        if alpha_mask:
            alpha = np.full((height, width), 255, dtype=dtype)
            alpha[:, : width // 4] = 0
            dst.write(alpha, bands + 1)
            truth[:, : width // 4] = False
        if colorinterp is not None:
            dst.colorinterp = colorinterp
    return truth


def dim_disc(path: Path, disc: Disc, value: int) -> None:
    """Repaint one disc of a written scene in a value just above the background's (40-110): the toy model then
    sees it with a peak probability well below 1 (about 0.65 at 108)."""
    with rasterio.open(path, "r+") as ds:
        data = ds.read()
        data[:, disc_mask(ds.height, ds.width, [disc])] = value
        ds.write(data)


def default_discs(height: int, width: int) -> list[Disc]:
    rng = np.random.default_rng(42)
    discs = []
    for _ in range(max(3, height * width // 9000)):
        discs.append(Disc(int(rng.integers(20, height - 20)), int(rng.integers(20, width - 20)),
                          float(rng.uniform(3.5, 6.0))))
    return discs
